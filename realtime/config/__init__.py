"""Configuration schema, YAML presets and ``--set key.path=value`` overrides.

Strict: an unknown key or a bad value fails at start-up with the key path and
what is allowed. YAML is read with ``safe_load`` only. Only pipeline.py and
cli.py look at the whole tree; components take plain arguments.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from realtime.config import presets
from realtime.core.errors import ConfigError
from realtime.core.redact import redact_url, remember
from realtime.core.types import SdpaBackend


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ReconnectConfig(_Strict):
    initial_delay: float = Field(0.25, gt=0, description="first retry delay, seconds")
    max_delay: float = Field(1.0, gt=0, description="cap of the exponential backoff, seconds")
    max_attempts: int = Field(0, ge=0, description="give up after this many failed attempts; 0 = never")


STREAM_NAME = re.compile(r"[\w-]{1,64}")
"""Stream names: letters (any script), digits, ``_`` and ``-``; no dots, since feed topics are
``<type>.<stream>`` matched by prefix."""


def safe_stream_name(text: str) -> str:
    """``text`` made a valid stream name: other characters become ``-`` (may return "")."""
    return re.sub(r"[^\w-]+", "-", text).strip("-")[:64]


class SourceConfig(_Strict):
    uri: str = Field("0", description="camera index, rtsp/http(s) URL or video file")
    name: Optional[str] = Field(None, description="stream id in events (letters, digits, _ and -); "
                                "default from the source")

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        remember(value)          # its password is hidden in every message from here on
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not STREAM_NAME.fullmatch(value):
            raise ValueError(f"a stream name has 1-64 letters, digits, '_' or '-' (no dots: feed topics "
                             f"are <type>.<stream>), e.g. {safe_stream_name(value) or 'camera1'!r}")
        return value
    pace: Literal["realtime", "fast"] = "realtime"
    loop: bool = False
    open_timeout: float = Field(5.0, gt=0, le=3600, description="seconds to connect to a network stream")
    read_timeout: float = Field(5.0, gt=0, le=3600,
                                description="seconds without a frame before a stream is lost")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    decoder_threads: int = Field(1, ge=0, le=64, description="network streams: FFmpeg decoder threads "
                                 "(1 = lowest latency; 0 = OpenCV's default)")
    gap_seconds: float = Field(1.0, gt=0, description="a live pause longer than this resets the window")
    connect_attempts: int = Field(3, ge=0, description="live sources: failed attempts to open it and get a "
                                  "first frame before giving up (exit 1); 0 = keep trying")
    reconnect: ReconnectConfig = ReconnectConfig()


class ModelConfig(_Strict):
    name: str = Field("i3d-kinetics400", description="i3d-kinetics400, a local directory or a hub id")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    sdpa_backend: SdpaBackend = Field(
        "auto", description="transformers models: which scaled_dot_product_attention kernel runs "
        "(auto = torch's choice)")
    compile: bool = Field(
        False, description="transformers models and i3d-kinetics400 on CUDA: torch.compile the model "
        "(VideoMAE-base on an H100: 1,049 instead of 969 windows/s at batch 64); compiling takes about "
        "17 s per batch size at the first start (batch sizes 1, 2, 4, 8, ... up to inference.max_batch; "
        "others are padded), cached under ~/.cache/realtime for the next")
    num_frames: Optional[int] = Field(None, ge=1, description="override the model's frames per window")
    window_seconds: Optional[float] = Field(None, gt=0, description="override the model's window span")


class WindowConfig(_Strict):
    stride_seconds: float = Field(0.5, gt=0, description="time between classified windows")
    sampled_frames_only: bool = Field(
        True, description="live sources: prepare and store only the frames a window can sample "
        "(one per sampling interval: a quarter of a 30 fps camera's for VideoMAE-Kinetics), plus "
        "every frame while the inference worker is late for a due window (so that window still "
        "ends at the newest frame); false prepares every captured frame")


class InferenceConfig(_Strict):
    top_k: int = Field(5, ge=1, le=100)
    max_batch: int = Field(8, ge=1, le=1024, description="windows classified together (streams)")
    preprocess: Literal["auto", "cpu", "device"] = Field(
        "auto", description="where frames are resized and normalised: auto = on the GPU when the "
        "model runs on one, cpu = OpenCV, device = torch on the model's device")
    max_wait_ms: float = Field(0.0, ge=0, le=1000,
                               description="a partial batch waits this long for more streams")


class SmoothingConfig(_Strict):
    enabled: bool = Field(True, description="false: every window's top label is reported as is")
    method: Literal["ema", "mean", "none"] = "ema"
    alpha: float = Field(0.5, gt=0, le=1, description="ema: weight of the newest window")
    window: int = Field(4, ge=1, le=100, description="mean: number of windows averaged")
    enter: float = Field(0.4, ge=0, le=1, description="smoothed score a new label needs")
    exit: float = Field(0.25, ge=0, le=1, description="below this the current label is dropped")
    min_dwell_seconds: float = Field(1.0, ge=0, description="a new label must hold this long first")
    uncertain_label: str = Field("no activity", min_length=1)
    allow: list[str] = Field(default_factory=list, description="report only these model labels")
    deny: list[str] = Field(default_factory=list, description="never report these model labels")
    min_allowed_mass: float = Field(0.0, ge=0, le=1, description="with allow/deny: when the allowed "
                                    "labels get less probability than this in total, lower confidence")
    rename: dict[str, str] = Field(default_factory=dict, description="model label -> friendly name")

    @model_validator(mode="after")
    def _exit_below_enter(self) -> "SmoothingConfig":
        if self.exit > self.enter:
            raise ValueError(f"exit ({self.exit}) must not be above enter ({self.enter})")
        return self


class EventsConfig(_Strict):
    heartbeat_seconds: float = Field(5.0, ge=0, description="heartbeat event period; 0 = none")


class ConsoleSinkConfig(_Strict):
    type: Literal["console"] = "console"
    every: Literal["change", "prediction"] = "change"


class JsonlSinkConfig(_Strict):
    type: Literal["jsonl"] = "jsonl"
    path: str = Field("-", description="file to append to, or - for stdout")


class ZmqCurveConfig(_Strict):
    server_secret_file: str = Field(..., description="the server's key pair (zmq.auth certificate file)")
    clients_dir: str = Field(..., description="directory of allowed clients' public certificate files")


def check_bind_endpoint(endpoint: str) -> str:
    """A ZeroMQ address to bind: ``tcp://HOST:PORT`` (PORT 1-65535, or ``*`` for any free one),
    ``ipc://PATH`` or ``inproc://NAME``. ZeroMQ itself takes port 99999 modulo 65536."""
    transport, sep, address = endpoint.partition("://")
    if not sep or transport not in ("tcp", "ipc", "inproc"):
        raise ValueError("use tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if not address:
        raise ValueError(f"no address after {transport}://")
    if transport == "tcp":
        host, colon, port = address.rpartition(":")
        if not colon or not host:
            raise ValueError("tcp needs HOST:PORT, e.g. tcp://127.0.0.1:5556 (tcp://*:5556: all interfaces)")
        if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"port {port!r} is not 1-65535 (or * for any free port)")
    return endpoint


def is_local_endpoint(endpoint: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and tcp endpoints bound to a loopback address."""
    transport, sep, address = endpoint.partition("://")
    if not sep:
        return False
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    host = address.rsplit(":", 1)[0] if ":" in address else address
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:            # '*', an interface name or a host name
        return False


DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
"""Where the ZeroMQ feed binds by default, and where subscribers look for it: this machine only."""

PLAINTEXT_REMOTE_HINT = ("anyone who can connect could read the feed: set the sink's curve keys "
                         "(README, 'ZeroMQ feed'), or allow_plaintext_remote: true to publish in "
                         "plain text anyway")


class ZmqSinkConfig(_Strict):
    type: Literal["zmq"] = "zmq"
    endpoint: str = Field(DEFAULT_ENDPOINT, description="where the PUB socket binds")
    sndhwm: int = Field(1000, ge=1, description="messages queued per subscriber before dropping")
    curve: Optional[ZmqCurveConfig] = None
    allow_plaintext_remote: bool = Field(False, description="bind a non-loopback address without "
                                         "CurveZMQ (anyone who can connect reads the feed)")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_bind_endpoint(value)

    @model_validator(mode="after")
    def _plaintext_remote(self) -> "ZmqSinkConfig":
        if self.curve is None and not self.allow_plaintext_remote and not is_local_endpoint(self.endpoint):
            raise ValueError(f"{self.endpoint} is reachable from other machines without CurveZMQ: "
                             f"{PLAINTEXT_REMOTE_HINT}")
        return self


class OverlaySinkConfig(_Strict):
    type: Literal["overlay"] = "overlay"
    path: Optional[str] = Field(None, description="write the annotated video to this file")
    show: Optional[bool] = Field(None, description="show a window; null = when a display exists")
    title: str = "realtime"
    codec: str = Field("h264", min_length=4, max_length=4,
                       description="h264: H.264 with PyAV, browser-playable (mp4v with OpenCV and a "
                                   "warning where it cannot be written); else an OpenCV FourCC "
                                   "such as mp4v, MJPG, XVID")


class SpeechSinkConfig(_Strict):
    type: Literal["speech"] = "speech"
    min_score: float = Field(0.5, ge=0, le=1, description="announce only changes at least this confident")
    cooldown_seconds: float = Field(3.0, ge=0, description="quiet time after each announcement")
    template: str = Field("{label}", description="phrase; fields: {label} {previous} {score} {stream}")
    voice: Optional[str] = Field(None, description="pyttsx3 voice id or name")
    rate: Optional[int] = Field(None, ge=50, le=500, description="words per minute")
    volume: Optional[float] = Field(None, ge=0, le=1)
    speak: bool = Field(True, description="say it aloud (needs a sound device)")
    save_dir: Optional[str] = Field(None, description="also save each announcement as a WAV file here")


SinkConfig = Union[ConsoleSinkConfig, JsonlSinkConfig, ZmqSinkConfig, OverlaySinkConfig, SpeechSinkConfig]


class SinkQueueConfig(_Strict):
    size: int = Field(256, ge=1, description="events held per sink; the oldest is dropped when full")


class RunConfig(_Strict):
    duration: Optional[float] = Field(None, gt=0, description="stop after this many seconds")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    source: SourceConfig = SourceConfig()
    streams: list[SourceConfig] = Field(default_factory=list,
                                        description="several sources in one process; replaces `source`")
    model: ModelConfig = ModelConfig()
    window: WindowConfig = WindowConfig()
    inference: InferenceConfig = InferenceConfig()
    smoothing: SmoothingConfig = SmoothingConfig()
    events: EventsConfig = EventsConfig()
    sinks: list[Annotated[SinkConfig, Field(discriminator="type")]] = Field(default_factory=lambda: [ConsoleSinkConfig()])
    sink_queue: SinkQueueConfig = SinkQueueConfig()
    run: RunConfig = RunConfig()

    def stream_configs(self) -> list[SourceConfig]:
        """The sources to run: ``streams`` when given, else the single ``source``."""
        return list(self.streams) or [self.source]


# --------------------------------------------------------------------------- loading
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
    """Defaults, then the YAML file (if any), then ``prepare(data)`` (the command line's
    ``--sink`` list), then each ``key.path=value`` override."""
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
