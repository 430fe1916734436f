"""``realtime eval DATA``: accuracy, per-class precision/recall/F1 and a confusion matrix."""

from __future__ import annotations

import argparse
import json
import logging

from realtime.cli.common import MODEL_HELP, add_config_options, add_log_level, add_model_options, model_overrides, setup_logging
from realtime.config import load_config
from realtime.core.errors import ConfigError

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``eval`` command to ``realtime``'s subcommands."""
    p = subparsers.add_parser(
        "eval", help="measure a model's accuracy on a labelled set of clips",
        description="Classify every clip of a labelled data set and report accuracy, per-class "
                    "precision/recall/F1, top-k accuracy, a confusion matrix and the worst clips. "
                    "Data set labels are matched to the model's ignoring case, spaces, underscores "
                    "and hyphens (arm_wrestling = 'arm wrestling'), or through --labels-map.")
    p.add_argument("data", metavar="DATA",
                   help="a folder with one sub-folder of clips per class (the sub-folder's name is "
                        "the label), or a CSV file of path,label rows (header optional; relative "
                        "paths are read from the CSV's folder)")
    add_model_options(p, MODEL_HELP + " (default: the config's model.name)")
    p.add_argument("--report", metavar="DIR",
                   help="write report.json and confusion.png into DIR (created if needed)")
    p.add_argument("--labels-map", metavar="FILE",
                   help="YAML or JSON mapping {dataset_label: model_label} for labels that do not "
                        "match by name")
    p.add_argument("--stride", type=float, metavar="SECONDS",
                   help="time between classified windows in each clip (default: "
                        "window.stride_seconds); larger is faster")
    p.add_argument("--top-k", type=int, default=5, metavar="K",
                   help="top-k accuracy and labels kept per clip (default 5)")
    p.add_argument("--worst", type=int, default=10, metavar="N",
                   help="worst-classified clips to list (default 10; 0 = none)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_options(p, "model.precision=float32")
    add_log_level(p, "warning")
    p.set_defaults(func=cmd_eval)
    return p


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 whenever it ran, whatever the accuracy."""
    from realtime.tools.evaluate import evaluate, prepare_report_dir, write_report

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if args.stride is not None and not args.stride > 0:
        raise ConfigError(f"--stride must be > 0, got {args.stride}")
    if args.worst < 0:
        raise ConfigError(f"--worst must be >= 0, got {args.worst}")
    config = load_config(args.config, model_overrides(args))
    setup_logging(args.log_level)
    if args.report is not None:
        prepare_report_dir(args.report)   # fail now rather than after the clips
    report = evaluate(args.data, config, labels_map=args.labels_map, stride=args.stride,
                      k=args.top_k, progress=not args.no_progress)
    if args.report is not None:
        json_path, png_path = write_report(report, args.report)
        log.info("wrote %s and %s", json_path, png_path)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print(report.format_table(args.worst))
        if args.report is not None:
            print(f"\nreport: {json_path}, {png_path}")
    return 0
