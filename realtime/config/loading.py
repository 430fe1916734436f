"""Reading a configuration: YAML files and presets, ``--set key.path=value`` overrides, errors.

YAML is read with ``safe_load`` only. Every error names the file, line or key path at fault and
what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import yaml
from pydantic import BaseModel, ValidationError

from realtime.config import presets
from realtime.config.schema import Config, SinkConfig
from realtime.core.errors import ConfigError
from realtime.core.redact import redact_url


def text_line(data: bytes, offset: int) -> int:
    """The 1-based line of byte ``offset`` in ``data``."""
    return data.count(b"\n", 0, offset) + 1


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a preset name (``fitness``) is looked up with :mod:`realtime.config.presets`."""
    p = Path(path)
    if not p.exists():
        p = presets.find_preset(str(path)) or p
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(presets.preset_names())
        raise ConfigError(f"config file not found: {path} (presets: {names})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = text_line(p.read_bytes(), exc.start)
        raise ConfigError(f"config file {path} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
                          f"on line {line} (save it as UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as a YAML scalar/list)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set window.stride_seconds=0.25")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set {text!r}: empty part in key {key!r}")
    return path, parse_value(raw)


def parse_value(raw: str) -> Any:
    """A value given on the command line, read as a YAML scalar or list (``0.25``, ``true``,
    ``[a, b]``); text that is not valid YAML stays the text."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` in the raw config tree. Lists take an index (``sinks.0.path``);
    the index one past the end appends a new item (``sinks.2.type=jsonl``)."""
    node: Any = data
    for i, part in enumerate(path):
        last = i == len(path) - 1
        here = ".".join(path[: i + 1])
        if isinstance(node, list):
            if not part.isdigit():
                raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:i]) or path[0]} is a list: "
                                  f"use an index, e.g. {'.'.join(path[:i] + ['0'])}")
            index = int(part)
            if index > len(node):
                raise ConfigError(f"--set {'.'.join(path)}: {here} does not exist "
                                  f"({'.'.join(path[:i])} has {len(node)} item(s): 0-{len(node) - 1}; "
                                  f"{len(node)} adds one)")
            if index == len(node):
                node.append({})
            if last:
                node[index] = value
                return
            if node[index] is None:
                node[index] = {}
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                return
            child = node.get(part)
            if child is None:
                # A list the defaults hold (sinks, streams) starts from those defaults.
                child = node[part] = _default_list(part) if part in _LIST_SECTIONS else {}
            node = child
        else:
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:i])} is a value, not a section")
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {'.'.join(path)}: {here} is a value, not a section")


_LIST_SECTIONS = ("sinks", "streams")


def _default_list(name: str) -> list[Any]:
    return [item.model_dump(mode="json") for item in getattr(Config(), name)]


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys allowed at the section holding ``loc[-1]`` (loc as pydantic reports it)."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if model is Config and part == "sinks":
            model = None
            continue
        if model is None:
            model = _SINK_CLASSES.get(part)
            if model is None:
                return []
            continue
        field = model.model_fields.get(part)
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(model.model_fields) if model is not None else []


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        raw = tuple(err["loc"])
        # Drop the union tag pydantic inserts for sinks (sinks.0.jsonl.path -> sinks.0.path).
        loc = tuple(p for i, p in enumerate(raw)
                    if not (i == 2 and raw[0] == "sinks" and p in _SINK_CLASSES))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(raw)
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"{key}: unknown key{hint}")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{key}: {msg}{shown}")
    return f"invalid configuration ({origin}):\n  " + "\n  ".join(lines)


_SINK_CLASSES: dict[str, type[BaseModel]] = {
    cls.model_fields["type"].default: cls for cls in SinkConfig.__args__}  # type: ignore[attr-defined]


def build_config(data: dict[str, Any], origin: str = "config") -> Config:
    sinks = data.get("sinks")
    if isinstance(sinks, list):
        for i, sink in enumerate(sinks):
            if not isinstance(sink, dict) or "type" not in sink:
                raise ConfigError(f"invalid configuration ({origin}):\n  sinks.{i}: each sink needs "
                                  f"a 'type' (one of {', '.join(sorted(sink_types()))})")
            if sink["type"] not in sink_types():
                raise ConfigError(f"invalid configuration ({origin}):\n  sinks.{i}.type: unknown sink "
                                  f"{sink['type']!r} (allowed: {', '.join(sorted(sink_types()))})")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None


def sink_types() -> set[str]:
    return set(_SINK_CLASSES)


def load_config(path: Optional[str | Path] = None, overrides: Iterable[str] = (),
                prepare: Optional[Callable[[dict[str, Any]], None]] = None) -> Config:
    """The settings of a run: defaults, then the YAML file, then ``prepare``, then overrides.

    Args:
        path: a YAML file or a preset name (``fitness``, ``rtsp``, ...); None for the defaults.
        overrides: ``key.path=value`` texts, as ``--set`` takes them.
        prepare: called with the raw settings dict before the overrides (the command line
            adds its ``--sink`` list here).

    Returns:
        A validated :class:`~realtime.config.schema.Config`. Raises ConfigError naming the
        file, line or key at fault and what is allowed.
    """
    data: dict[str, Any] = read_yaml(path) if path else {}
    origin = str(path) if path else "defaults"
    if prepare is not None:
        prepare(data)
    overrides = list(overrides)
    for text in overrides:
        apply_override(data, *parse_override(text))
    if overrides or prepare is not None:
        origin += " with command-line settings"
    return build_config(data, origin)


def dump_config(config: Config) -> str:
    """The config as YAML, with the credentials in source URLs hidden (it is printed)."""
    data = config.model_dump(mode="json")
    for source in [data["source"], *data.get("streams", [])]:
        source["uri"] = redact_url(str(source["uri"]))
    return yaml.safe_dump(data, sort_keys=False)
