"""Shared fixtures: synthetic videos, a scripted classifier, a paced fake camera."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np
import pytest

from realtime.sources import SourceInfo
from realtime.threads import live_threads
from realtime.core.types import FrameMeta, InputSpec

REPO = Path(__file__).resolve().parents[1]
SHARED_CLIPS = REPO.parent / "shared" / "clips"
TINY_LABELS = ["waving", "clapping", "jumping", "sitting", "walking"]


def realtime(*args: str, timeout: float = 120, env: Optional[dict[str, str]] = None,
             **kw) -> subprocess.CompletedProcess:
    """``python -m realtime ARGS`` in its own process, offline, output captured."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "realtime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=full_env, **kw)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny randomly initialised VideoMAE with TINY_LABELS, saved with save_pretrained."""
    from support.tiny_models import make_tiny_videomae
    path = tmp_path_factory.mktemp("models") / "tiny-videomae"
    make_tiny_videomae(path, labels=TINY_LABELS)
    return path


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves one of the project's threads running (they are all daemons, so
    one left behind would run on into later tests), or any non-daemon thread (that one keeps
    the test process from ever exiting: it hung a CI run once)."""
    before = set(threading.enumerate()) | set(live_threads())
    yield
    deadline = time.monotonic() + 3.0
    while True:
        leaked = [t for t in (*threading.enumerate(), *live_threads())
                  if t not in before and t.is_alive() and (not t.daemon or t in live_threads())]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads still running after the test: {sorted({t.name for t in leaked})}"


def make_meta(index: int, ts: float) -> FrameMeta:
    return FrameMeta(index=index, ts=ts, captured_at=ts, wall=1_700_000_000.0 + ts)


def write_video(path: Path, frames: int, fps: float = 30.0, size: tuple[int, int] = (96, 64),
                color_of: Optional[Callable[[int], tuple[int, int, int]]] = None) -> Path:
    """An mp4 whose frame i is a solid BGR colour (default: blue channel = i*8 % 256)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(frames):
        color = color_of(i) if color_of else ((i * 8) % 256, 40, 200)
        writer.write(np.full((h, w, 3), color, np.uint8))
    writer.release()
    return path


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str = "clip.mp4", **kw) -> Path:
        return write_video(tmp_path / name, **kw)
    return make


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


def i3d_weights_or_skip() -> Path:
    """The offline I3D weights (fetched if need be), or skip the test saying why."""
    from realtime.core.errors import ModelError
    from realtime.models.i3d_weights import weights_path
    try:
        return weights_path(download=True)
    except ModelError as exc:
        pytest.skip(f"I3D weights unavailable: {exc}")
