"""Output sinks: a registry from config to sink objects, and ``--sink`` spec parsing."""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Optional

from realtime.config import parse_value
from realtime.core.errors import ConfigError
from realtime.sinks.base import DropOldestQueue, Sink, SinkRunner
from realtime.sinks.console import ConsoleSink
from realtime.sinks.jsonl import JsonlSink

# name -> (factory from a sink config model, key that the ``name:ARG`` form fills)
_REGISTRY: dict[str, tuple[Callable[[Any], Sink], str | None]] = {
    "console": (lambda c: ConsoleSink(every=c.every), None),
    "jsonl": (lambda c: JsonlSink(c.path), "path"),
    "zmq": (lambda c: _lazy("zmq", "ZmqSink").from_config(c), "endpoint"),
    "mqtt": (lambda c: _lazy("mqtt", "MqttSink").from_config(c), "url"),
    "overlay": (lambda c: _lazy("overlay.sink", "OverlaySink").from_config(c), "path"),
    "speech": (lambda c: _lazy("speech", "SpeechSink").from_config(c), None),
}


log = logging.getLogger(__name__)


def _lazy(module: str, name: str) -> Any:
    """Import a sink module only when it is used (pyzmq, GUI and TTS load slowly)."""
    import importlib
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def sink_names() -> list[str]:
    return sorted(_REGISTRY)


_OPTION = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]*=)")


def parse_sink_spec(spec: str) -> dict[str, Any]:
    """``NAME[:ARG][,KEY=VALUE]...`` -> the sink's config mapping.

    ``jsonl:out.jsonl`` -> {"type": "jsonl", "path": "out.jsonl"};
    ``speech,save_dir=wav,rate=150`` (or ``speech:save_dir=wav``) -> {"type": "speech",
    "save_dir": "wav", "rate": 150}. ARG fills the sink's main key (path or endpoint); values are
    read like ``--set`` values. Keys are checked with the rest of the configuration."""
    head, *options = _OPTION.split(spec)
    name, _, arg = head.partition(":")
    name = name.strip().lower()
    if name not in _REGISTRY:
        raise ConfigError(f"--sink {spec!r}: unknown sink {name!r} (allowed: {', '.join(sink_names())})")
    key = _REGISTRY[name][1]
    if arg and key is None:
        if "=" not in arg:
            raise ConfigError(f"--sink {spec!r}: sink {name!r} takes no argument, only options "
                              f"(e.g. {name},KEY=VALUE)")
        options.insert(0, arg)       # ``speech:save_dir=wav``: an option, not an argument
        arg = ""
    out: dict[str, Any] = {"type": name, **({key: arg} if arg and key else {})}
    for option in options:
        if "=" not in option:
            raise ConfigError(f"--sink {spec!r}: expected KEY=VALUE, got {option!r}")
        k, _, raw = option.partition("=")
        k, v = k.strip(), parse_value(raw)
        if k == "type":
            raise ConfigError(f"--sink {spec!r}: the type is the name before ':'")
        out[k] = v
    return out


def sinks_from_specs(specs: list[str], configured: Optional[list[Any]]) -> list[dict[str, Any]]:
    """The sinks ``--sink`` asks for. Each starts from the config file's sink of the same type
    (its options kept) and the spec's argument and options override those; the config's sinks
    that no ``--sink`` names do not run (logged)."""
    pool = [dict(c) for c in (configured or []) if isinstance(c, dict)]
    out = []
    for spec in specs:
        wanted = parse_sink_spec(spec)
        base = next((c for c in pool if c.get("type") == wanted["type"]), None)
        if base is not None:
            pool.remove(base)
        out.append({**(base or {}), **wanted})
    if pool:
        log.info("--sink replaces the configured sinks: %s will not run (add --sink for each to keep)",
                 ", ".join(str(c.get("type", "?")) for c in pool))
    return out


def build_sink(config: Any) -> Sink:
    return _REGISTRY[config.type][0](config)


__all__ = ["DropOldestQueue", "Sink", "SinkRunner", "build_sink", "parse_sink_spec", "sink_names",
           "sinks_from_specs"]
