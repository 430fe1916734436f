"""``realtime models list|pull|quantize``: what models there are, and getting them ready ahead of time."""

from __future__ import annotations

import argparse
import json

from realtime.cli.common import add_log_level, setup_logging
from realtime.core.errors import ConfigError

SUGGESTED_HF = {
    "MCG-NJU/videomae-base-finetuned-kinetics": "VideoMAE-base, Kinetics-400: the recommended choice",
    "MCG-NJU/videomae-small-finetuned-kinetics": "VideoMAE-small, Kinetics-400: faster, for CPUs",
    "MCG-NJU/videomae-large-finetuned-kinetics": "VideoMAE-large, Kinetics-400: most accurate, needs a GPU",
    "facebook/timesformer-base-finetuned-k400": "TimeSformer-base, Kinetics-400, 8 frames",
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``models`` command to ``realtime``'s subcommands."""
    from realtime.tools.quantize import DEFAULT_WINDOWS

    p = sub.add_parser("models", help="list models, fetch or convert them ahead of time, make INT8 models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    lp = msub.add_parser("list", help="built-in models and suggested transformers checkpoints")
    lp.set_defaults(func=cmd_models_list)
    pp = msub.add_parser("pull", help="download a built-in model's weights now; with --engine openvino, "
                                      "also convert the model (any model) for OpenVINO now")
    pp.add_argument("name", help="i3d-kinetics400; with --engine openvino also a transformers directory or hub id")
    pp.add_argument("--force", action="store_true", help="fetch the I3D weights again even if cached")
    pp.add_argument("--engine", choices=["torch", "openvino"], default="torch",
                    help="openvino: convert the model now (cached under ~/.cache/realtime/openvino), so the "
                         "first run does not wait for it")
    add_log_level(pp, "info")
    pp.set_defaults(func=cmd_models_pull)
    qp = msub.add_parser("quantize", help="make an INT8 OpenVINO model from a folder of clips "
                                          "(then run with --set model.precision=int8)")
    qp.add_argument("--model", "-m", default="i3d-kinetics400", metavar="MODEL",
                    help="i3d-kinetics400 (default), a local transformers directory or a hub id")
    qp.add_argument("--calibration", required=True, metavar="DIR",
                    help="a folder of clips like those the model will see (sub-folders too)")
    qp.add_argument("--windows", type=int, default=DEFAULT_WINDOWS,
                    help=f"calibration windows, spread evenly over the clips (default {DEFAULT_WINDOWS})")
    qp.add_argument("--num-frames", type=int, metavar="N",
                    help="i3d-kinetics400: the window length the runs use (model.num_frames; default 32)")
    qp.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    add_log_level(qp, "warning")
    qp.set_defaults(func=cmd_models_quantize)
    return p


def cmd_models_list(args: argparse.Namespace) -> int:
    from realtime.models import BUILTIN_MODELS
    print("built in (offline):")
    for name, about in BUILTIN_MODELS.items():
        print(f"  {name:<44} {about}")
    print("transformers checkpoints (hub id, or a local directory with the same files):")
    for name, about in SUGGESTED_HF.items():
        print(f"  {name:<44} {about}")
    return 0


def cmd_models_pull(args: argparse.Namespace) -> int:
    from realtime.models import BUILTIN_MODELS, I3D_NAME, create_classifier
    setup_logging(args.log_level)
    if args.engine == "openvino":
        clf = create_classifier(args.name, device="cpu", engine="openvino")
        clf.load()
        runner = getattr(clf, "runner", None)
        if getattr(clf, "engine", "") != "openvino":
            raise ConfigError(f"{args.name} does not convert to OpenVINO (see the warning above); it runs on torch")
        print(f"{args.name}: OpenVINO model {getattr(runner, 'path', '?')}")
        return 0
    if args.name != I3D_NAME:
        raise ConfigError(f"unknown built-in model {args.name!r} (built in: {', '.join(BUILTIN_MODELS)}); "
                          f"transformers models are fetched on first use")
    from realtime.models.i3d_weights import pull
    path = pull(force=args.force)
    print(f"{I3D_NAME}: {path}")
    return 0


def cmd_models_quantize(args: argparse.Namespace) -> int:
    from realtime.tools.quantize import format_report, quantize_model
    setup_logging(args.log_level)
    report = quantize_model(args.model, args.calibration, windows=args.windows, num_frames=args.num_frames)
    print(format_report(report), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}", flush=True)
    return 0
