"""Output sinks: a registry from config to sink objects, and ``--sink`` spec parsing."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import ConfigError
from .base import DropOldestQueue, Sink, SinkRunner
from .console import ConsoleSink
from .jsonl import JsonlSink

# name -> (factory from a sink config model, key that the ``name:ARG`` form fills)
_REGISTRY: dict[str, tuple[Callable[[Any], Sink], str | None]] = {
    "console": (lambda c: ConsoleSink(every=c.every), None),
    "jsonl": (lambda c: JsonlSink(c.path), "path"),
    "zmq": (lambda c: _lazy("zmq", "ZmqSink").from_config(c), "endpoint"),
    "overlay": (lambda c: _lazy("overlay", "OverlaySink").from_config(c), "path"),
    "speech": (lambda c: _lazy("speech", "SpeechSink").from_config(c), None),
}


def _lazy(module: str, name: str) -> Any:
    """Import a sink module only when it is used (pyzmq, GUI and TTS load slowly)."""
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def sink_names() -> list[str]:
    return sorted(_REGISTRY)


def parse_sink_spec(spec: str) -> dict[str, Any]:
    """``jsonl:out.jsonl`` -> {"type": "jsonl", "path": "out.jsonl"}."""
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name not in _REGISTRY:
        raise ConfigError(f"--sink {spec!r}: unknown sink {name!r} (allowed: {', '.join(sink_names())})")
    key = _REGISTRY[name][1]
    if arg and key is None:
        raise ConfigError(f"--sink {spec!r}: sink {name!r} takes no argument")
    return {"type": name, **({key: arg} if arg and key else {})}


def build_sink(config: Any) -> Sink:
    return _REGISTRY[config.type][0](config)


__all__ = ["DropOldestQueue", "Sink", "SinkRunner", "build_sink", "parse_sink_spec", "sink_names"]
