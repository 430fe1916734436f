"""Where a stream's prepared frames live, and how a batch of windows becomes probabilities.

The inference loop never knows which of two paths runs:

* host: the capture thread prepares each frame with OpenCV
  (:func:`realtime.core.preprocess.prepare_frame`) and the :class:`~realtime.stream.ring.FrameRing`
  holds the pixels; a batch of windows is copied out of the rings and goes to the classifier's
  ``predict`` (:class:`HostWindowStore`, :class:`HostBatchClassifier`);
* device: the capture thread prepares each frame on the model's device into a
  :class:`~realtime.accel.device_ring.DeviceFrameRing` and the FrameRing holds ``[slot, sequence]``
  handles; a batch is gathered on the device straight into the model's input buffer, windows with
  a frame overwritten since their handles were taken are skipped
  (:mod:`realtime.stream.device_windows`).

Both go through the same two protocols: a :class:`WindowStore` per stream and one
:class:`BatchClassifier` for the inference thread, chosen by :func:`batch_classifier`, the one
place that asks a classifier for its accelerator (:func:`realtime.models.base.accelerator_of`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

import numpy as np

from realtime.core.preprocess import prepare_frame
from realtime.core.types import PREPROCESS_MODES, InputSpec
from realtime.models.base import ClipClassifier, accelerator_of

log = logging.getLogger(__name__)



class WindowStore(Protocol):
    """One stream's prepared frames.

    ``prepare(bgr, spec)`` runs in the capture thread for each frame kept: it prepares the frame
    and returns what the stream's FrameRing stores for it (the pixels, or a handle to them).
    ``grow(capacity)`` follows the FrameRing when it grows. ``device``: the torch device the frames
    are prepared on, None when the FrameRing holds the pixels themselves."""

    device: Optional[str]

    def prepare(self, bgr: np.ndarray, spec: InputSpec) -> np.ndarray: ...

    def grow(self, capacity: int) -> None: ...


@dataclass(frozen=True)
class BatchResult:
    """Probabilities of the windows of a batch that could be classified, and where the time went."""

    probs: np.ndarray                 # (len(kept), classes) float32
    kept: list[int]                   # positions, in the batch, of the windows classified
    gather_seconds: float = 0.0       # assembling windows on the device
    model_seconds: float = 0.0        # the model, with the copy of its output to the host


class BatchClassifier(Protocol):
    """Classifies a batch of windows taken from many streams' rings (the inference thread).

    ``new_store(capacity)``: the :class:`WindowStore` of a new stream whose FrameRing holds
    ``capacity`` frames. ``entries(max_batch, num_frames)``: a buffer for the FrameRing entries of
    a batch (``FrameRing.gather`` fills one window per row). ``classify(entries, stores)``: the
    first ``len(stores)`` rows, row ``i`` taken from ``stores[i]``'s stream."""

    @property
    def labels(self) -> Sequence[str]: ...

    def new_store(self, capacity: int) -> WindowStore: ...

    def entries(self, max_batch: int, num_frames: int) -> np.ndarray: ...

    def classify(self, entries: np.ndarray, stores: Sequence[WindowStore]) -> BatchResult: ...


# --------------------------------------------------------------------------- host path


class HostWindowStore:
    """Frames prepared with OpenCV on the CPU; the FrameRing holds the (H, W, 3) uint8 RGB crops."""

    device: Optional[str] = None

    def prepare(self, bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
        return prepare_frame(bgr, spec)

    def grow(self, capacity: int) -> None:
        """Nothing to grow: the pixels live in the FrameRing."""


class HostBatchClassifier:
    """Windows of host pixels, classified by the classifier's ``predict``."""

    def __init__(self, classifier: ClipClassifier) -> None:
        self.classifier = classifier

    @property
    def labels(self) -> Sequence[str]:
        return self.classifier.labels

    def new_store(self, capacity: int) -> WindowStore:
        return HostWindowStore()

    def entries(self, max_batch: int, num_frames: int) -> np.ndarray:
        h, w = self.classifier.input_spec.crop
        return np.empty((max_batch, num_frames, h, w, 3), np.uint8)

    def classify(self, entries: np.ndarray, stores: Sequence[WindowStore]) -> BatchResult:
        n = len(stores)
        t0 = time.perf_counter()
        probs = self.classifier.predict(entries[:n])
        return BatchResult(probs, list(range(n)), model_seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- the choice


def warmup_batch_sizes(max_batch: int, compiled: bool) -> list[int]:
    """The batch sizes to capture CUDA graphs for at start: all up to ``max_batch``, or with
    ``torch.compile`` (seconds of compiling each) powers of two and ``max_batch``, the others
    padded up to the next of them."""
    if not compiled:
        return list(range(1, max_batch + 1))
    return sorted({min(1 << i, max_batch) for i in range(max_batch.bit_length() + 1)})


def batch_classifier(classifier: ClipClassifier, *, preprocess: str, num_frames: int,
                     max_batch: int) -> BatchClassifier:
    """The host or the device path for ``classifier`` (loaded), for every stream of a pipeline.

    With an accelerator on CUDA the model is warmed up here for every batch size up to
    ``max_batch`` (graphs captured, kernels compiled now, not on the first windows). The device
    path needs an accelerator, an ``input_spec`` the device preprocessing reproduces and
    windows of the length the accelerator was built for; ``preprocess`` (see
    :data:`PREPROCESS_MODES`) decides between the two when both are possible."""
    if preprocess not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {preprocess!r}")
    fast = accelerator_of(classifier)
    on_cuda = fast is not None and fast.device.type == "cuda"
    if fast is not None and on_cuda:
        sizes = warmup_batch_sizes(max_batch, fast.compiled)
        if fast.compiled:
            fast.serve_batches(sizes)
        fast.warmup(sizes)
    if preprocess == "cpu" or fast is None:
        return HostBatchClassifier(classifier)
    from realtime.accel.resample import supports
    ok = supports(classifier.input_spec) and fast.input_shape[0] == num_frames
    if preprocess == "device" and not ok:
        log.warning("inference.preprocess=device: %s's preprocessing (%s) or window length is "
                    "not supported on the device; using the CPU", classifier.name,
                    classifier.input_spec.interpolation)
    if ok and (preprocess == "device" or on_cuda):
        from realtime.stream.device_windows import DeviceBatchClassifier
        return DeviceBatchClassifier(classifier, fast)
    return HostBatchClassifier(classifier)
