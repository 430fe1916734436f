"""CaptureWorker's gap watchdog: a camera that stops is "lost"; this thread being slow is not."""

from __future__ import annotations

import threading
import time
from typing import Callable

from realtime.stream.capture import CaptureWorker
from realtime.stream.ring import FrameRing
from realtime.core.types import InputSpec

from support.fakes import FakeCamera

SPEC = InputSpec(resize_short=48, crop=(48, 48))


class PausingCamera(FakeCamera):
    """A 30 fps camera whose read blocks for ``pause`` seconds before frame ``at``."""

    def __init__(self, at: int, pause: float) -> None:
        super().__init__(fps=30)
        self.at, self.pause = at, pause

    def read(self):
        if self.produced == self.at:
            time.sleep(self.pause)
        return super().read()


def _run(source, prepare, done: Callable[[list[str], FrameRing], bool], timeout: float = 20.0):
    """Run a capture worker until ``done(states, ring)`` holds (checked on every status and frame)."""
    ring = FrameRing(64)
    stop = threading.Event()
    changed = threading.Condition()
    states: list[str] = []

    def on_status(status) -> None:
        with changed:
            states.append(status.state)
            changed.notify_all()

    def on_push() -> None:
        with changed:
            changed.notify_all()

    ring.on_push = on_push
    worker = CaptureWorker("cam", source, ring, SPEC, prepare, stop, on_status, gap_seconds=1.0)
    worker.start()
    with changed:
        reached = changed.wait_for(lambda: done(states, ring), timeout)
    stop.set()
    assert worker.join(5)
    assert reached, f"not reached in {timeout} s: states {states}, {ring.stats()}"
    return states, ring.stats().gaps


def test_a_camera_that_stops_sending_is_lost_then_recovered() -> None:
    states, gaps = _run(PausingCamera(at=5, pause=1.5), lambda bgr, spec: bgr,
                        lambda states, ring: "recovered" in states)
    assert states[:3] == ["connected", "lost", "recovered"], states
    assert gaps == 1


def test_a_slow_first_frame_on_our_side_resets_the_window_without_calling_the_camera_lost() -> None:
    """E.g. a GPU ring preparing its first frame behind 60 other cameras' graph captures."""
    calls = []

    def prepare(bgr, spec):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.5)
        return bgr

    states, gaps = _run(FakeCamera(fps=30), prepare, lambda states, ring: len(calls) > 20)
    assert "lost" not in states and states[0] == "connected", states
    assert gaps == 1                      # the 1.5 s hole still never falls inside a window
    assert len(calls) > 20                # and frames flowed on afterwards


def test_sampled_frames_only_still_hands_every_frame_to_video_sinks() -> None:
    """The overlay draws on every frame; only the ring (the model's input) gets the sampled ones."""
    ring = FrameRing(64)
    stop = threading.Event()
    seen = []
    enough = threading.Event()

    def on_frame(stream, bgr, meta) -> None:
        seen.append(meta.index)
        if len(seen) >= 48:
            enough.set()

    worker = CaptureWorker("cam", FakeCamera(fps=30), ring, SPEC, lambda bgr, spec: bgr, stop,
                           lambda s: None, on_frame=on_frame, sample_interval=4 / 30)
    worker.start()
    assert enough.wait(20)
    stop.set()
    assert worker.join(5)
    stats = worker.stats
    assert seen == list(range(stats.frames)) and stats.frames > 40     # every frame, in order
    assert stats.delivered + stats.unsampled == stats.frames
    assert abs(stats.delivered - stats.frames / 4) <= 1, stats
    assert [m.index % 4 for m in ring.metas()] == [0] * len(ring.metas())   # every 4th frame stored
