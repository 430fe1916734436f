"""Shared fixtures and helpers: paths, synthetic videos, the tiny model, the CLI runner.

Fakes (a scripted classifier, a paced fake camera) live in ``support/fakes.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import pytest

from realtime.threads import live_threads

# The tests' reference numbers are float32: "auto" dtype on the CPU stays float32 in every test
# (and every process it starts) unless a test asks otherwise. The bfloat16 path has its own tests
# (tests/integration/test_cpu_precision.py), which use the CPU's real capability.
os.environ.setdefault("REALTIME_CPU_BF16", "0")
# Likewise engine auto stays on torch where OpenVINO is installed; the OpenVINO tests ask for it
# by name (tests/integration/test_openvino.py).
os.environ.setdefault("REALTIME_OPENVINO", "0")
from realtime.core.types import FrameMeta

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


def i3d_weights_or_skip() -> Path:
    """The offline I3D weights (fetched if need be), or skip the test saying why."""
    from realtime.core.errors import ModelError
    from realtime.models.i3d_weights import weights_path
    try:
        return weights_path(download=True)
    except ModelError as exc:
        pytest.skip(f"I3D weights unavailable: {exc}")
