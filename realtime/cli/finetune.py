"""``realtime finetune``: teach the recognizer your own activities from a folder of clips."""

from __future__ import annotations

import argparse

from realtime.cli.common import add_log_level, setup_logging
from realtime.core.errors import ConfigError
from realtime.core.types import ENGINES

DEFAULT_BASE = "i3d-kinetics400"  # realtime.tools.finetune.options.I3D_BASE, not imported so the parser stays light


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``finetune`` command to ``realtime``'s subcommands."""
    p = subparsers.add_parser(
        "finetune", help="train a model on your own activities (one folder of clips per class)",
        description="Fine-tune a video classifier on DATA, a folder with one sub-folder of clips per class "
                    "(the folder names become the labels), and save it to DIR for `realtime run/classify "
                    "--model DIR`. With the I3D base and no GPU, the frozen I3D runs once per clip view and "
                    "only a new head is trained, on the cached features; the head sees what moves where and in "
                    "which direction of time, so left/right and clockwise/anticlockwise are learnt from a "
                    "handful of clips.")
    p.add_argument("data", metavar="DATA", help="dataset folder: DATA/<class name>/<clips>")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="where to write the fine-tuned model")
    p.add_argument("--base", "-b", default=DEFAULT_BASE, metavar="M",
                   help=f"{DEFAULT_BASE} (default) or a local transformers video-classifier folder (e.g. VideoMAE)")
    p.add_argument("--epochs", type=int, default=40, metavar="N", help="most epochs to train (default 40)")
    p.add_argument("--patience", type=int, default=8, metavar="N",
                   help="stop after N epochs without a better validation result (default 8)")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="train only a new head; the pretrained network stays as it is (fastest)")
    p.add_argument("--val-split", type=float, default=0.2, metavar="F",
                   help="fraction of each class's clips held out for validation (default 0.2; 0 = none)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="split, augmentation and init seed (default 0)")
    p.add_argument("--flip", action="store_true",
                   help="also train on mirrored clips; only if mirroring keeps the meaning (not for left/right)")
    p.add_argument("--reverse", action="store_true",
                   help="also train on time-reversed clips; only if reversing keeps the meaning "
                        "(not for clockwise/anticlockwise, up/down, sitting down/standing up)")
    adv = p.add_argument_group("advanced")
    adv.add_argument("--mode", choices=["auto", "cached", "full"], default="auto",
                     help="I3D base: cached = frozen lower layers, features computed once (default without a GPU); "
                          "full = train every layer (default with a GPU)")
    adv.add_argument("--split", choices=["Mixed_4f", "Mixed_5b", "Mixed_5c"], default="Mixed_5c",
                     help="cached mode: the last frozen I3D block (default Mixed_5c: only the head is trained; "
                          "Mixed_4f: Mixed_5b and Mixed_5c are trained too, about 10x slower per epoch)")
    adv.add_argument("--views", type=int, default=4, metavar="N",
                     help="cached mode: augmented views cached per training clip (default 4)")
    adv.add_argument("--val-views", type=int, default=3, metavar="N",
                     help="windows per validation clip, start to end, averaged (default 3)")
    adv.add_argument("--batch-size", type=int, default=8, metavar="N")
    adv.add_argument("--lr", type=float, default=1e-3, help="head learning rate; pretrained layers get 0.1x")
    adv.add_argument("--num-frames", type=int, metavar="N", help="I3D: frames per window (default 32)")
    adv.add_argument("--window-seconds", type=float, metavar="S",
                     help="time one window spans (I3D default: num-frames / 25)")
    adv.add_argument("--size", type=int, metavar="PX",
                     help="I3D: crop side in pixels (default 224; 160 is about 2x faster on a CPU)")
    adv.add_argument("--head", choices=["motion", "conv", "linear"], default="motion",
                     help="I3D: motion = pooled time-antisymmetric Mixed_3c map + pooled Mixed_5c at 0.3 weight, "
                          "linear (default); conv = 3-D convs over the Mixed_5c map; linear = pooled Mixed_5c, linear")
    adv.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    adv.add_argument("--engine", choices=ENGINES, default="auto",
                     help="I3D cached mode: what extracts the frozen features (auto: OpenVINO on a CPU where it "
                          "is installed, else torch)")
    adv.add_argument("--workers", type=int, default=0, metavar="N",
                     help="full/transformers modes: processes decoding clips (default 0: in the main process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_log_level(p, "info")
    p.set_defaults(func=cmd_finetune)
    return p


def cmd_finetune(args: argparse.Namespace) -> int:
    """Run the fine-tuning and print where the model is and how well it did."""
    setup_logging(args.log_level)
    if args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    from realtime.tools.finetune import FineTuneOptions, finetune

    options = FineTuneOptions(
        base=args.base, epochs=args.epochs, patience=args.patience, val_split=args.val_split, seed=args.seed,
        flip=args.flip, reverse=args.reverse, freeze_backbone=args.freeze_backbone, mode=args.mode,
        split=args.split, views=args.views, val_views=args.val_views, batch_size=args.batch_size, lr=args.lr,
        num_frames=args.num_frames, window_seconds=args.window_seconds, size=args.size, head=args.head,
        device=args.device, engine=args.engine, workers=args.workers, progress=not args.no_progress)
    result = finetune(args.data, args.out, options)
    acc = "no validation clips" if result.val is None else (
        f"validation accuracy {result.val.clip_accuracy:.1%} ({result.val_clips} clips; "
        f"{result.val.window_accuracy:.1%} of windows)")
    print(f"fine-tuned {len(result.labels)} classes on {result.train_clips} clips in {result.seconds_total:.0f} s "
          f"({result.mode} mode, trained: {', '.join(result.trained)}): {acc}, best epoch {result.best_epoch} "
          f"of {result.epochs_run}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable clip(s), e.g. {result.skipped[0][0]}")
    if result.val is not None and result.val_clips:
        width = max(len(label) for label in result.labels)
        for i, label in enumerate(result.labels):
            row = result.val.confusion[i]
            total = sum(row)
            wrong = {result.labels[j]: n for j, n in enumerate(row) if j != i and n}
            note = ("  mistaken for " + ", ".join(f"{k} ({n})" for k, n in wrong.items())) if wrong else ""
            print(f"  {label:<{width}}  {row[i]}/{total}{note}")
    print(f"saved to {result.out_dir}; try: realtime run --model {result.out_dir} --source 0")
    return 0
