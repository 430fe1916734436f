"""Plain immutable records that flow between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Optional, Sequence, get_args

import numpy as np

DEFAULT_FPS = 30.0
"""Frame rate assumed wherever a source, file or stream does not report a usable one (and for
sizing a ring before it does; a ring grows when the real rate is higher)."""


class NamedValue(str, Enum):
    """An Enum whose members are their names on the wire: ``str()``, f-strings and JSON give the
    value (``"drop_oldest"``), and members compare equal to it. (``enum.StrEnum`` from 3.11.)"""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    def __hash__(self) -> int:            # as the value's, so dicts keyed by the text find members
        return str.__hash__(self)


class BufferPolicy(NamedValue):
    """What a full frame ring does with the next frame."""

    DROP_OLDEST = "drop_oldest"     # live sources: overwrite the oldest frame, never wait
    WAIT = "wait"                   # files read as fast as possible: the reader waits for room


class Schedule(NamedValue):
    """Which window of a stream the inference loop classifies next."""

    NEWEST = "newest"               # the newest ready window; stale ones are skipped
    EVERY = "every"                 # every window at the stride, in order (files read fast)


class Pacing(NamedValue):
    """How a video file is read (``source.pace``)."""

    REALTIME = "realtime"           # at its own frame rate, like a camera
    FAST = "fast"                   # as fast as the model takes windows


STOPPED_DETAIL = "stopped"
"""The ``detail`` of the ``ended`` status of a stream that was stopped (Ctrl-C, ``stop()``), not
one whose source ended by itself."""


class StreamState(NamedValue):
    """A stream's connection state, as status events carry it."""

    CONNECTED = "connected"
    LOST = "lost"
    RECONNECTING = "reconnecting"
    RECOVERED = "recovered"
    ENDED = "ended"
    ERROR = "error"
    SINK_ERROR = "sink_error"

    @property
    def terminal(self) -> bool:
        """The stream will send nothing more."""
        return self in (StreamState.ENDED, StreamState.ERROR)

    @property
    def down(self) -> bool:
        """No frames are coming in (announced as such by speech and drawn red by the overlay)."""
        return self in (StreamState.LOST, StreamState.RECONNECTING, StreamState.ENDED, StreamState.ERROR)


ModelDevice = Literal["auto", "cpu", "cuda"]
MODEL_DEVICES: tuple[str, ...] = get_args(ModelDevice)
"""What ``model.device`` (and ``--device`` of run, classify and eval) accepts."""

ModelEngine = Literal["auto", "torch", "openvino"]
ENGINES: tuple[str, ...] = get_args(ModelEngine)
"""``model.engine`` (and ``--engine``): what runs the network. auto = OpenVINO on a CPU where it
is installed, torch elsewhere."""

ModelPrecision = Literal["auto", "float32", "bfloat16", "float16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(ModelPrecision)
"""``model.precision`` (``model.dtype`` before): int8 is OpenVINO's, from ``realtime models quantize``."""

PreprocessMode = Literal["auto", "cpu", "device"]
PREPROCESS_MODES: tuple[str, ...] = get_args(PreprocessMode)
"""``inference.preprocess``: device where the model runs on CUDA (auto), always OpenCV (cpu),
always torch on the model's device, CPU tensors included (device)."""

SdpaBackend = Literal["auto", "flash", "cudnn", "efficient", "math"]
SDPA_BACKENDS: tuple[str, ...] = get_args(SdpaBackend)
"""Which ``scaled_dot_product_attention`` kernel a ``transformers`` model runs: torch's own choice,
FlashAttention-2, cuDNN's fused attention, memory-efficient attention or the plain math."""


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Where and when one frame was captured.

    ``ts`` is the stream-time the sampler uses: media time for files (so a file
    classified faster than real time still gets windows of the right span),
    the monotonic capture time for live sources.
    """

    index: int                      # frame number within the stream, across reconnects
    ts: float                       # seconds on the stream's sampling clock
    captured_at: float              # time.monotonic() when capture finished reading it
    wall: float                     # time.time() at the same instant (unix epoch)
    source_ts: Optional[float] = None  # the source's own timestamp (seconds) where it has one


@dataclass(frozen=True, slots=True)
class Window:
    """A clip of ``T`` preprocessed frames ready for a classifier."""

    stream: str
    frames: np.ndarray              # (T, H, W, 3) uint8 RGB, already resized and cropped
    metas: tuple[FrameMeta, ...]    # one per frame, oldest first

    @property
    def newest(self) -> FrameMeta:
        return self.metas[-1]

    @property
    def oldest(self) -> FrameMeta:
        return self.metas[0]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How frames must be prepared for a model, declared by the model.

    Spatial work (resize so the short side is ``resize_short``, centre crop to
    ``crop``, BGR->RGB) is done once per frame as it enters the ring. The
    per-window step ``x * scale + offset`` then ``(x - mean) / std`` happens in
    the classifier.
    """

    resize_short: int
    crop: tuple[int, int]           # (height, width)
    scale: float = 1.0 / 255.0
    offset: float = 0.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "linear"   # "linear" or "area" (cv2 names, for the resize)


@dataclass(frozen=True, slots=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """One classified window of one stream."""

    stream: str
    window_start: float             # unix epoch of the oldest frame in the window
    window_end: float               # unix epoch of the newest frame
    media_start: Optional[float]    # source timestamps (files), else None
    media_end: Optional[float]
    top_k: tuple[LabelScore, ...]   # best first
    latency_ms: float               # newest frame captured -> prediction ready
    inference_ms: float             # time spent in the classifier for the batch
    frame_indices: tuple[int, int]  # (first, last) frame index in the window

    @property
    def label(self) -> str:
        return self.top_k[0].label

    @property
    def score(self) -> float:
        return self.top_k[0].score


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """A change in a stream's connection state."""

    stream: str
    state: StreamState
    source: str                     # redacted description of the source
    detail: str = ""
    attempt: int = 0
    retry_in: Optional[float] = None
    wall: float = 0.0
    counters: dict = field(default_factory=dict)


STATUS_STATES: Sequence[str] = tuple(state.value for state in StreamState)
