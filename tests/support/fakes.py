"""Fakes for the seams a test cannot run for real: a classifier whose output the test chooses,
and a live camera (there is no webcam here)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Optional, Sequence

import numpy as np

from realtime.core.types import InputSpec
from realtime.sources import SourceInfo


class ScriptedClassifier:
    """A ClipClassifier whose output is chosen by the test; it records what it saw."""

    def __init__(self, labels: Sequence[str] = ("a", "b", "c"), num_frames: int = 8,
                 window_seconds: float = 0.5, delay: float = 0.0,
                 script: Optional[Callable[[np.ndarray], np.ndarray]] = None, crop: int = 32,
                 keep_calls: Optional[int] = None) -> None:
        self.name = "scripted"
        self.labels = list(labels)
        self.num_frames = num_frames
        self.window_seconds = window_seconds
        self.input_spec = InputSpec(resize_short=crop, crop=(crop, crop))
        self.device = "cpu"
        self.delay = delay
        self.script = script
        self.calls: collections.deque[np.ndarray] = collections.deque(maxlen=keep_calls)
        self.count = 0
        self.loaded = False
        self.lock = threading.Lock()

    def load(self) -> None:
        self.loaded = True

    def predict(self, clips: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(clips.copy())
            self.count += 1
        if self.delay:
            time.sleep(self.delay)  # stands for compute time
        if self.script is not None:
            return self.script(clips)
        probs = np.full((len(clips), len(self.labels)), 0.1 / max(1, len(self.labels) - 1), np.float32)
        probs[:, 0] = 0.9
        return probs


class FakeCamera:
    """A live FrameSource producing frames at ``fps`` on a fixed schedule (like a camera).

    Frame i is filled with ``i % 256``; ``fail_after`` frames makes read() raise
    SourceError once (a lost stream), ``open_failures`` opens fail first, and
    ``reopen_failures`` opens fail after that loss.
    """

    def __init__(self, fps: float = 30.0, size: tuple[int, int] = (48, 64), fail_after: int = 0,
                 open_failures: int = 0, reopen_failures: int = 0) -> None:
        self.info = SourceInfo("camera", "fake", "camera:fake")
        self._fps = fps
        self.size = size
        self.fail_after = fail_after
        self.open_failures = open_failures
        self.reopen_failures = reopen_failures
        self.opens = 0
        self.produced = 0
        self._next = 0.0

    @property
    def fps(self) -> float:
        return self._fps

    def open(self) -> None:
        from realtime.core.errors import SourceError
        self.opens += 1
        if self.open_failures > 0:
            self.open_failures -= 1
            raise SourceError("fake camera refused")
        self._next = time.monotonic()

    def read(self):
        from realtime.core.errors import SourceError
        if self.fail_after and self.produced == self.fail_after:
            self.fail_after = 0
            self.open_failures = self.reopen_failures
            raise SourceError("fake camera unplugged")
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # a camera's read blocks until the next frame exists
        self._next = max(self._next + 1.0 / self._fps, time.monotonic() - 1.0 / self._fps)
        frame = np.full((*self.size, 3), self.produced % 256, np.uint8)
        self.produced += 1
        return frame, None

    def close(self) -> None:
        pass
