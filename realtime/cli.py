"""Command line: ``realtime run|models ...`` (``python -m realtime`` and run_camera.py too)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Callable, Optional, Sequence

from . import __version__
from .config import Config, dump_config, load_config
from .errors import ConfigError, RealtimeError
from .sinks import parse_sink_spec
from .sources import redact_text

log = logging.getLogger("realtime")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE",
                   help="YAML config file, or a preset name from configs/ (default, fitness, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set window.stride_seconds=0.25 (repeatable)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="recognize activities in a live source continuously",
                       description="Watch a webcam, stream or file and report activities continuously.")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--source", "-s", metavar="SRC",
                   help="camera index (0), rtsp://, http(s):// URL, or a video file")
    p.add_argument("--model", "-m", metavar="MODEL",
                   help="i3d-kinetics400 (offline), a local transformers directory, or a hub id")
    p.add_argument("--sink", dest="sinks", action="append", default=[], metavar="SPEC",
                   help="output: console, jsonl:PATH (- for stdout); repeatable; replaces the config's sinks")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def resolve_run_config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if args.source is not None:
        overrides.append(f"source.uri={_quote(args.source)}")
    if args.model is not None:
        overrides.append(f"model.name={_quote(args.model)}")
    if args.device is not None:
        overrides.append(f"model.device={args.device}")
    if args.duration is not None:
        if args.duration <= 0:
            raise ConfigError(f"--duration must be > 0, got {args.duration}")
        overrides.append(f"run.duration={args.duration}")
    if args.log_level is not None:
        overrides.append(f"run.log_level={args.log_level}")
    config = load_config(args.config, overrides)
    if args.sinks:
        from .config import build_config
        data = config.model_dump(mode="json")
        data["sinks"] = [parse_sink_spec(s) for s in args.sinks]
        config = build_config(data, "--sink")
    return config


def _quote(value: str) -> str:
    """Keep a CLI value a plain string through the YAML parsing of --set values."""
    return "'" + value.replace("'", "''") + "'"


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _install_stop_handlers(stop: Callable[[], None]) -> None:
    def handler(signum: int, _frame: object) -> None:
        log.info("%s received: stopping (again to force)", signal.Signals(signum).name)
        signal.signal(signum, signal.SIG_DFL)
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_run(args: argparse.Namespace) -> int:
    config = resolve_run_config(args)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    _setup_logging(config.run.log_level)
    from .pipeline import Pipeline

    pipeline = Pipeline(config)
    _install_stop_handlers(pipeline.stop_event.set)
    pipeline.run(config.run.duration)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime", description="Streaming real-time activity recognizer.")
    parser.add_argument("--version", action="version", version=f"realtime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RealtimeError as exc:
        print(f"realtime: error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("realtime: interrupted", file=sys.stderr)
        return 130


def run_camera_main(argv: Optional[Sequence[str]] = None) -> int:
    """``python run_camera.py [run flags]``: the same as ``realtime run``."""
    parser = argparse.ArgumentParser(prog="run_camera.py", description="Same as `realtime run`.")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_run(args)
    except RealtimeError as exc:
        print(f"run_camera.py: error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
