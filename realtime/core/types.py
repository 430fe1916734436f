"""Plain immutable records that flow between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence, get_args

import numpy as np

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
    state: str                      # one of STATUS_STATES
    source: str                     # redacted description of the source
    detail: str = ""
    attempt: int = 0
    retry_in: Optional[float] = None
    wall: float = 0.0
    counters: dict = field(default_factory=dict)


STATUS_STATES: Sequence[str] = ("connected", "lost", "reconnecting", "recovered", "ended", "error",
                                "sink_error")
