"""Small pieces every command shares: logging set-up and config overrides from flags."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from realtime.core.redact import RedactingFilter
from realtime.core.types import ENGINES, MODEL_DEVICES


def setup_logging(level: str) -> None:
    """Log lines on stderr (stdout stays clean for --json and jsonl:-)."""
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper()))   # a second call changes the level
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())     # stream passwords never reach a log line


LOG_LEVELS = ("debug", "info", "warning", "error")


def add_log_level(p: argparse.ArgumentParser, default: Optional[str], when_unset: str = "") -> None:
    """The ``--log-level`` option every command takes (``default`` None: ``when_unset`` says
    what decides)."""
    shown = default or when_unset
    p.add_argument("--log-level", choices=LOG_LEVELS, default=default,
                   help=f"how much to log on stderr (default: {shown})" if shown else None)


MODEL_HELP = "i3d-kinetics400 (offline), a local transformers directory, or a hub id"


def add_config_options(p: argparse.ArgumentParser, example: str = "window.stride_seconds=0.25") -> None:
    """``--config`` and ``--set``, for the commands that run a configuration (run, classify, eval)."""
    p.add_argument("--config", "-c", metavar="FILE",
                   help="YAML config file, or a preset name from configs/ (default, fitness, ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override one config value, e.g. --set {example} (repeatable)")


def add_model_options(p: argparse.ArgumentParser, model_help: str = MODEL_HELP) -> None:
    """``--model``, ``--device`` and ``--engine``: shorthands for ``--set model.name=...``,
    ``model.device`` and ``model.engine`` (see :func:`model_overrides`)."""
    p.add_argument("--model", "-m", metavar="MODEL", help=model_help)
    p.add_argument("--device", choices=MODEL_DEVICES, help="where the model runs")
    p.add_argument("--engine", choices=ENGINES,
                   help="what runs the model: auto (OpenVINO on a CPU where it is installed, else torch), "
                        "torch or openvino")


def quote(value: str) -> str:
    """Keep a CLI value a plain string through the YAML parsing of --set values."""
    return "'" + value.replace("'", "''") + "'"


def model_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides plus those that ``--model`` and ``--device`` stand for."""
    overrides = list(getattr(args, "overrides", []) or [])
    if getattr(args, "model", None) is not None:
        overrides.append(f"model.name={quote(args.model)}")
    if getattr(args, "device", None) is not None:
        overrides.append(f"model.device={args.device}")
    if getattr(args, "engine", None) is not None:
        overrides.append(f"model.engine={args.engine}")
    return overrides
