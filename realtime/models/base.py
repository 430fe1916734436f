"""The classifier protocol every model backend implements."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from realtime.core.types import InputSpec


@runtime_checkable
class ClipClassifier(Protocol):
    """A video clip classifier.

    ``predict`` takes a batch of clips of already resized and cropped frames,
    (B, T, H, W, 3) uint8 RGB with (H, W) == ``input_spec.crop``, and returns
    class probabilities (B, len(labels)) float32 that sum to 1 per row.
    Construction stores settings; ``load()`` reads weights and moves them to the
    device (the slow part), so pipelines control when it happens.
    """

    name: str
    labels: Sequence[str]
    num_frames: int          # frames per window the model was trained on
    window_seconds: float    # time the window spans at the training frame rate
    input_spec: InputSpec
    device: str

    def load(self) -> None: ...

    def predict(self, clips: np.ndarray) -> np.ndarray: ...
