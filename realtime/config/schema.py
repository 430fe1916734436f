"""The configuration schema: every section and value a run accepts, with its default and range.

Strict: an unknown key or a bad value fails validation with the key path and what is allowed
(see :mod:`realtime.config.loading` for how the message is written).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal, Optional, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from realtime.core.redact import remember
from realtime.core.types import ModelDevice, ModelEngine, ModelPrecision, PreprocessMode, SdpaBackend


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
    device: ModelDevice = "auto"
    precision: ModelPrecision = Field(
        "auto", validation_alias=AliasChoices("precision", "dtype"),
        description="what the network computes in (dtype is the old name): auto = bf16/fp16 on CUDA, "
        "bf16 on a CPU with native bf16, else fp32; float32, bfloat16, float16; int8 = OpenVINO with "
        "a model quantised by `realtime models quantize`")
    engine: ModelEngine = Field(
        "auto", description="what runs the network: auto = OpenVINO on a CPU where it is installed "
        "(pip install 'realtime[openvino]'), torch elsewhere; torch; openvino (CPU only). A model "
        "is converted once per window length and OpenVINO version, cached under ~/.cache/realtime")
    sdpa_backend: SdpaBackend = Field(
        "auto", description="transformers models: which scaled_dot_product_attention kernel runs "
        "(auto = torch's choice)")
    compile: bool = Field(
        False, description="transformers models and i3d-kinetics400 on CUDA: torch.compile the model "
        "(faster at large batches; see docs/performance.md); each batch size (1, 2, 4, 8, ... up to "
        "inference.max_batch; others are padded) is compiled at the first start and cached under "
        "~/.cache/realtime for the next")
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
    preprocess: PreprocessMode = Field(
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


class ClipsConfig(_Strict):
    """Clips of events: each ``change`` recorded as a short H.264 video, its path in the event."""

    enabled: bool = Field(False, description="record each change event as a short video (its path is "
                          "the change event's `clip`)")
    dir: Optional[str] = Field(None, description="where clips go; null = $XDG_DATA_HOME/realtime/clips "
                               "(~/.local/share/realtime/clips)")
    pre_seconds: float = Field(3.0, ge=0, le=60, description="seconds of video before the change")
    post_seconds: float = Field(3.0, ge=0, le=60, description="seconds of video after the change")
    max_clips: int = Field(100, ge=1, description="keep the newest this many clips; older ones are deleted")
    max_gb: float = Field(2.0, gt=0, description="keep the clips under this many GB (10^9 bytes) in all; "
                          "the oldest are deleted first")
    fps: float = Field(15.0, gt=0, le=240, description="frames kept per second at most (a faster stream "
                       "is thinned): bounds memory, CPU and disk")
    width: int = Field(640, ge=16, le=7680, description="frames wider than this are scaled down to it "
                       "(aspect kept): bounds memory, CPU and disk")

    @model_validator(mode="after")
    def _some_seconds(self) -> "ClipsConfig":
        if self.pre_seconds + self.post_seconds <= 0:
            raise ValueError("pre_seconds + post_seconds must be > 0")
        return self


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


def state_endpoint_for(endpoint: str) -> str:
    """Where the state requests of the feed at ``endpoint`` are answered by default: the next
    TCP port (any free one when the feed's is ``*``), ``PATH.state`` for ipc, ``NAME-state`` for inproc."""
    transport, _, address = endpoint.partition("://")
    if transport == "tcp":
        host, _, port = address.rpartition(":")
        if port.isdigit():
            return f"tcp://{host}:{int(port) % 65535 + 1}"
        return f"tcp://{host}:*" if port == "*" else endpoint     # a malformed one fails at the feed's bind
    if transport == "ipc":
        return f"{endpoint}.state"
    return f"{endpoint}-state"


DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
"""Where the ZeroMQ feed binds by default, and where subscribers look for it: this machine only."""

PLAINTEXT_REMOTE_HINT = ("anyone who can connect could read the feed: set the sink's curve keys "
                         "(docs/events-and-feed.md, CurveZMQ), or allow_plaintext_remote: true to publish in "
                         "plain text anyway")


class ZmqSinkConfig(_Strict):
    type: Literal["zmq"] = "zmq"
    endpoint: str = Field(DEFAULT_ENDPOINT, description="where the PUB socket binds")
    sndhwm: int = Field(1000, ge=1, description="messages queued per subscriber before dropping")
    curve: Optional[ZmqCurveConfig] = None
    allow_plaintext_remote: bool = Field(False, description="bind a non-loopback address without "
                                         "CurveZMQ (anyone who can connect reads the feed)")
    state_endpoint: Optional[str] = Field(None, description="where requests for the current state of "
                                          "every stream are answered (default: the feed's port + 1)")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_bind_endpoint(value)

    @field_validator("state_endpoint")
    @classmethod
    def _state_endpoint(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_bind_endpoint(value)

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
    save_dir: Optional[str] = Field(None, description="also save each announcement as a WAV file here "
                                    "(NNNN_KIND_LABEL.wav)")
    engine: Literal["auto", "pyttsx3", "speech-dispatcher"] = Field(
        "auto", description="auto: Speech Dispatcher when installed (takes turns with a screen reader), "
        "else pyttsx3")
    verbosity: Literal["minimal", "normal", "detailed"] = Field(
        "normal", description="label only / the templates / the templates with confidence and duration")
    announce_endings: bool = Field(False, description='say when an announced activity ends ("Stopped X.")')
    end_template: str = Field("Stopped {label}.", description="phrase for an ending")
    announce_uncertain: bool = Field(False, description='say "Maybe X." when a change is not confident')
    maybe_template: str = Field("Maybe {label}.", description="phrase for an unsure change")
    maybe_min_score: float = Field(0.2, ge=0, le=1, description="say nothing below this, even as maybe")
    urgent_labels: list[str] = Field(default_factory=list, description="labels that interrupt whatever is "
                                     "being said (e.g. falling)")
    urgent_template: str = Field("Warning: {label}!", description="phrase for an urgent label")
    now_template: str = Field("Now {label}.", description="phrase for an on-demand 'what is happening now'")
    max_per_minute: int = Field(0, ge=0, description="announcement budget: at most this many in any minute "
                                "(urgent and on-demand ones not counted); 0: no budget")
    stale_seconds: float = Field(10.0, gt=0, description="background news (endings, maybe) not said "
                                 "within this long is dropped")
    earcons: Literal["off", "with_words", "only"] = Field("off", description="a short sound per kind of "
                                                          "announcement, before the words or instead of them")

    @field_validator("earcons", mode="before")
    @classmethod
    def _earcons_off(cls, value: object) -> object:
        return "off" if value is False else value      # YAML reads a bare ``off`` as false


class MqttSinkConfig(_Strict):
    type: Literal["mqtt"] = "mqtt"
    url: str = Field("mqtt://127.0.0.1:1883", description="the broker: mqtt://[USER[:PASSWORD]@]HOST[:PORT], "
                     "mqtts:// for TLS; ${NAME} reads an environment variable")
    prefix: str = Field("realtime", min_length=1, description="first level of every topic")
    qos: int = Field(1, ge=0, le=2, description="QoS of the state and events topics")
    client_id: Optional[str] = Field(None, description="MQTT client id (default realtime-HOST-PID)")
    username: Optional[str] = None
    password: Optional[str] = Field(None, description="never logged; ${NAME} reads an environment variable")
    tls: bool = Field(False, description="TLS even with mqtt:// (mqtts:// implies it)")
    ca_file: Optional[str] = Field(None, description="CA certificates to trust (default: the system's)")
    cert_file: Optional[str] = Field(None, description="client certificate (mutual TLS)")
    key_file: Optional[str] = None
    insecure: bool = Field(False, description="skip the broker certificate's host name check")
    predictions: bool = Field(False, description="also publish every prediction (QoS 0)")
    stats: bool = Field(True, description="publish the heartbeats on <prefix>/<stream>/stats (QoS 0)")
    queue_size: int = Field(1000, ge=1, description="messages waiting for the broker before dropping")
    homeassistant: bool = Field(False, description="Home Assistant MQTT discovery: a sensor and an event "
                                "entity per stream")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant's discovery prefix")


SinkConfig = Union[ConsoleSinkConfig, JsonlSinkConfig, ZmqSinkConfig, OverlaySinkConfig, SpeechSinkConfig,
                   MqttSinkConfig]


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
    clips: ClipsConfig = ClipsConfig()
    sinks: list[Annotated[SinkConfig, Field(discriminator="type")]] = Field(default_factory=lambda: [ConsoleSinkConfig()])
    sink_queue: SinkQueueConfig = SinkQueueConfig()
    run: RunConfig = RunConfig()

    def stream_configs(self) -> list[SourceConfig]:
        """The sources to run: ``streams`` when given, else the single ``source``."""
        return list(self.streams) or [self.source]
