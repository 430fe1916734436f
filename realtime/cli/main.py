"""Command line: ``realtime run|models ...`` (``python -m realtime`` and run_camera.py too)."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
from typing import Callable, NoReturn, Optional, Sequence

from realtime import __version__
from realtime.cli.common import add_config_options, add_log_level, add_model_options, model_overrides, quote as _quote, setup_logging as _setup_logging
from realtime.config import Config, dump_config, load_config
from realtime.core.errors import ConfigError, RealtimeError
from realtime.cli.bench import add_parser as _add_bench
from realtime.cli.eval import add_parser as _add_eval
from realtime.cli.finetune import add_parser as _add_finetune
from realtime.cli.listen import add_parser as _add_listen
from realtime.cli.say_now import add_parser as _add_say_now
from realtime.cli.models import add_parser as _add_models
from realtime.cli.gallery import add_parsers as _add_gallery
from realtime.sinks import sinks_from_specs
from realtime.core.redact import redact_text
from realtime.threads import live_threads

EXIT_SINK_LOST = 3     # the run finished, but a sink failed to write some of its events

log = logging.getLogger("realtime")


def _add_common(p: argparse.ArgumentParser) -> None:
    add_config_options(p)
    add_log_level(p, None, "run: the config's run.log_level (info); classify: warning")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="recognize activities in a live source continuously",
                       description="Watch a webcam, stream or file and report activities continuously.")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("--source", "-s", metavar="SRC", action="append", default=[],
                   help="camera index (0), rtsp://, http(s):// URL, or a video file; "
                        "repeat for several streams")
    add_model_options(p)
    p.add_argument("--sink", dest="sinks", action="append", default=[], metavar="SPEC",
                   help="output: console, jsonl:PATH (- for stdout), zmq[:ENDPOINT], overlay[:FILE], "
                        "speech; repeatable; replaces the config's sinks")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def resolve_run_config(args: argparse.Namespace) -> Config:
    """The config file, then ``--sink`` (which picks the sinks), then ``--set``, then the flags."""
    overrides = list(args.overrides)
    if len(args.source) == 1:
        overrides.append(f"source.uri={_quote(args.source[0])}")
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

    def pick_sinks(data: dict) -> None:
        if args.sinks:
            data["sinks"] = sinks_from_specs(args.sinks, data.get("sinks"))

    config = load_config(args.config, overrides, prepare=pick_sinks)
    if len(args.source) > 1:   # each stream: the config's source settings with its own uri
        from realtime.config import build_config
        data = config.model_dump(mode="json")
        data["streams"] = [{**data["source"], "uri": uri, "name": None} for uri in args.source]
        config = build_config(data, "command line")
    return config


def _install_stop_handlers(stop: Callable[[], None], force: Callable[[], None]) -> None:
    """Ctrl-C or SIGTERM stops cleanly (every emitted event written); a second one quits at once."""
    signals_seen = 0

    def handler(signum: int, _frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.info("%s received: stopping (again to quit at once)", name)
            stop()
        else:
            log.warning("%s received again: quitting now", name)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            force()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def cmd_run(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "info")      # what resolving the config says is shown too
    config = resolve_run_config(args)
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    _setup_logging(config.run.log_level)
    from realtime.stream.pipeline import Pipeline

    pipeline = Pipeline(config)
    _install_stop_handlers(pipeline.stop_event.set, pipeline.force_stop)
    pipeline.run(config.run.duration)
    if pipeline.forced:
        return 130
    lost = pipeline.lost_events()
    for name, (count, last) in lost.items():
        print(f"realtime: error: sink {redact_text(name)} failed to write {count} event"
              f"{'s' if count != 1 else ''} ({redact_text(last)})", file=sys.stderr)
    return EXIT_SINK_LOST if lost else 0


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="one label for a whole video file",
                       description="Classify every window of a video file and average them.")
    _add_common(p)
    p.add_argument("file", help="video file")
    add_model_options(p)
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="labels to show (default 5)")
    p.add_argument("--stride", type=float, metavar="SECONDS",
                   help="time between windows (default: window.stride_seconds)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--timeline", action="store_true", help="also list each window's label and times")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args: argparse.Namespace) -> int:
    import json

    from realtime.tools.classify import classify_file

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if args.stride is not None and args.stride <= 0:
        raise ConfigError(f"--stride must be > 0, got {args.stride}")
    config = load_config(args.config, model_overrides(args))
    _setup_logging(args.log_level or "warning")
    result = classify_file(args.file, config, stride=args.stride, progress=not args.no_progress)
    if args.json:
        print(json.dumps(result.to_json(args.top_k, args.timeline), ensure_ascii=False))
        return 0
    best = result.top_k(1)[0]
    verdict = (f"uncertain (best guess {best['label']}: {best['score']:.2f} < {result.min_score:.2f}; "
               f"maybe an activity the model does not know)" if result.uncertain else best["label"])
    print(f"{args.file}: {verdict}  ({len(result.windows)} windows, {result.model})")
    for i, item in enumerate(result.top_k(args.top_k), 1):
        print(f"  {i}. {item['label']:<40} {item['score']:.3f}")
    if args.timeline:
        print("timeline:")
        for w in result.windows:
            mark = "  (uncertain)" if w.score < result.min_score else ""
            print(f"  {w.media_start:8.2f}-{w.media_end:8.2f} s  {w.label} ({w.score:.2f}){mark}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime", description="Streaming real-time activity recognizer.")
    parser.add_argument("--version", action="version", version=f"realtime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run(sub)
    _add_classify(sub)
    _add_models(sub)
    _add_listen(sub)
    _add_say_now(sub)
    _add_eval(sub)
    _add_bench(sub)
    _add_finetune(sub)
    _add_gallery(sub)
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


def exit_process(code: int) -> NoReturn:
    """End the process with ``code`` once a command has finished its work.

    By then every event is written and every sink closed, so the process leaves through
    ``os._exit`` after the ``atexit`` handlers and a flush of stdout, stderr and the log:
    tearing down the interpreter with torch and transformers loaded takes a second or more and
    writes nothing. Where one of our threads is still inside a
    forward pass (or a camera read), interpreter shutdown can end in ``terminate called`` and
    SIGABRT; then the ``atexit`` handlers are skipped too, since they may wait on that thread."""
    stuck = live_threads()
    if stuck:
        logging.getLogger("realtime").debug("exiting with %s still running",
                                            ", ".join(t.name for t in stuck))
    else:
        run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
        if run_exitfuncs is None:      # not CPython: leave the ordinary way
            sys.exit(code)
        run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def console_main() -> NoReturn:
    """The ``realtime`` command (and ``python -m realtime``)."""
    exit_process(main())


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
