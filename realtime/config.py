"""Configuration schema, YAML presets and ``--set key.path=value`` overrides.

Strict: an unknown key or a bad value fails at start-up with the key path and
what is allowed. YAML is read with ``safe_load`` only. Only pipeline.py and
cli.py look at the whole tree; components take plain arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .types import SdpaBackend

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ReconnectConfig(_Strict):
    initial_delay: float = Field(0.25, gt=0, description="first retry delay, seconds")
    max_delay: float = Field(1.0, gt=0, description="cap of the exponential backoff, seconds")
    max_attempts: int = Field(0, ge=0, description="give up after this many failed attempts; 0 = never")


class SourceConfig(_Strict):
    uri: str = Field("0", description="camera index, rtsp/http(s) URL or video file")
    name: Optional[str] = Field(None, description="stream id in events; default from the source")
    pace: Literal["realtime", "fast"] = "realtime"
    loop: bool = False
    open_timeout: float = Field(5.0, gt=0, description="seconds to connect to a network stream")
    read_timeout: float = Field(5.0, gt=0, description="seconds without a frame before a stream is lost")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    decoder_threads: int = Field(1, ge=0, le=64, description="network streams: FFmpeg decoder threads "
                                 "(1 = lowest latency; 0 = OpenCV's default)")
    gap_seconds: float = Field(1.0, gt=0, description="a live pause longer than this resets the window")
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


class ZmqSinkConfig(_Strict):
    type: Literal["zmq"] = "zmq"
    endpoint: str = Field("tcp://127.0.0.1:5556", description="where the PUB socket binds")
    sndhwm: int = Field(1000, ge=1, description="messages queued per subscriber before dropping")
    curve: Optional[ZmqCurveConfig] = None


class OverlaySinkConfig(_Strict):
    type: Literal["overlay"] = "overlay"
    path: Optional[str] = Field(None, description="write the annotated video to this file")
    show: Optional[bool] = Field(None, description="show a window; null = when a display exists")
    title: str = "realtime"
    codec: str = Field("mp4v", min_length=4, max_length=4, description="FourCC of the written video")


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
def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a preset name (``fitness``) is looked up in configs/."""
    p = Path(path)
    if not p.exists() and not p.suffix and (CONFIG_DIR / f"{p}.yaml").exists():
        p = CONFIG_DIR / f"{p}.yaml"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        presets = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"config file not found: {path} (presets: {presets})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
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
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[:i + 1])} is not a section")
        node = child
    node[path[-1]] = value


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
            lines.append(f"{key}: {err['msg']}{shown}")
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


def load_config(path: Optional[str | Path] = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the YAML file (if any), then each ``key.path=value`` override."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    origin = str(path) if path else "defaults"
    overrides = list(overrides)
    for text in overrides:
        apply_override(data, *parse_override(text))
    if overrides:
        origin += " with --set overrides"
    return build_config(data, origin)


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
