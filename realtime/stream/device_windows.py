"""The device path of :mod:`realtime.stream.windows`: frames prepared on the model's device.

Each stream's capture thread prepares its frames into a
:class:`~realtime.accel.device_ring.DeviceFrameRing` (:class:`DeviceWindowStore`); the FrameRing
keeps choosing windows by timestamp, holding the ``[slot, sequence]`` handle of each frame. The
inference thread gathers a batch of windows from all the rings straight into the
:class:`~realtime.accel.fast_model.FastModel`'s input buffer (a CUDA graph's static input) and
runs it (:class:`DeviceBatchClassifier`). Imported only when that path is chosen (it needs torch).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np

from realtime.accel.device_ring import DeviceFrameRing, gather_windows
from realtime.accel.fast_model import FastModel
from realtime.core.types import InputSpec
from realtime.models.base import ClipClassifier
from realtime.stream.windows import BatchResult, WindowStore

DEVICE_RING_MARGIN = 16
"""Slots a device ring has beyond its FrameRing's capacity, so that a window whose handles were
just taken is rarely overwritten before it is gathered (such a window is skipped)."""


class DeviceWindowStore:
    """One stream's frames in a :class:`DeviceFrameRing`; its FrameRing holds their handles."""

    def __init__(self, ring: DeviceFrameRing) -> None:
        self.ring = ring
        self.device: Optional[str] = str(ring.device)

    def prepare(self, bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
        """Prepare ``bgr`` into the next slot of the device ring; its ``[slot, sequence]`` handle."""
        return self.ring.push_handle(bgr)

    def grow(self, capacity: int) -> None:
        self.ring.ensure_capacity(capacity + DEVICE_RING_MARGIN)


class DeviceBatchClassifier:
    """Windows gathered on the device into ``fast``'s input buffer, run by ``fast`` itself."""

    def __init__(self, classifier: ClipClassifier, fast: FastModel) -> None:
        self.classifier = classifier
        self.fast = fast

    @property
    def labels(self) -> Sequence[str]:
        return self.classifier.labels

    def new_store(self, capacity: int) -> DeviceWindowStore:
        ring = DeviceFrameRing(capacity + DEVICE_RING_MARGIN, self.classifier.input_spec, self.fast.device,
                               self.fast.dtype)
        return DeviceWindowStore(ring)

    def entries(self, max_batch: int, num_frames: int) -> np.ndarray:
        return np.empty((max_batch, num_frames, 2), np.int64)

    def classify(self, entries: np.ndarray, stores: Sequence[WindowStore]) -> BatchResult:
        t0 = time.perf_counter()
        x = self.fast.input_buffer(len(stores))
        windows = [(_ring_of(store), handles[:, 0], handles[:, 1]) for handles, store in zip(entries, stores)]
        kept = gather_windows(windows, x)       # windows with a frame overwritten since are skipped
        t1 = time.perf_counter()
        if not kept:
            return BatchResult(np.zeros((0, len(self.labels)), np.float32), kept, gather_seconds=t1 - t0)
        probs = self.fast.predict(x[: len(kept)])
        return BatchResult(probs, kept, gather_seconds=t1 - t0, model_seconds=time.perf_counter() - t1)


def _ring_of(store: WindowStore) -> DeviceFrameRing:
    if not isinstance(store, DeviceWindowStore):
        raise TypeError(f"{type(store).__name__} in a batch of the device path (made by another BatchClassifier?)")
    return store.ring
