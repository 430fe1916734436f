"""The classifier protocol every model backend implements, and the optional accelerator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from realtime.core.types import InputSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from realtime.accel.fast_model import FastModel


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


class Runner(Protocol):
    """What runs a backend's network: :class:`~realtime.accel.fast_model.FastModel` (torch) or
    :class:`~realtime.accel.openvino_model.OpenVINOModel`. ``predict`` takes normalised windows
    (B, T, C, H, W) of ``input_shape`` and returns (B, classes) float32 probabilities."""

    engine: str              # "torch" or "openvino"
    input_shape: tuple[int, ...]

    def predict(self, x: "torch.Tensor") -> np.ndarray: ...

    def warmup(self, batch_sizes: Iterable[int] = (1,)) -> None: ...


@runtime_checkable
class Embedding(Protocol):
    """A classifier that also gives each clip's pooled features (for likeness search):
    ``embed`` takes clips as ``predict`` does and returns (B, D) float32; ``predict_embed``
    returns ``predict``'s probabilities and ``embed``'s features from one pass of the network."""

    def embed(self, clips: np.ndarray) -> np.ndarray: ...

    def predict_embed(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@runtime_checkable
class Accelerated(Protocol):
    """A classifier whose network runs in a :class:`~realtime.accel.fast_model.FastModel`.

    ``accelerator()`` returns it after ``load()`` (None before, or when the backend has none).
    Through it the pipeline warms the model up (CUDA graphs, ``torch.compile``) and, when frames
    are prepared on the model's device, fills its input buffer and runs it without ``predict``.
    Backends without one (a fine-tuned I3D, a test's fake) simply do not have the method."""

    def accelerator(self) -> Optional["FastModel"]: ...


def accelerator_of(classifier: ClipClassifier) -> Optional["FastModel"]:
    """``classifier``'s :class:`~realtime.accel.fast_model.FastModel` (see :class:`Accelerated`), or None."""
    return classifier.accelerator() if isinstance(classifier, Accelerated) else None
