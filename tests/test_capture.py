"""CaptureWorker's gap watchdog: a camera that stops is "lost"; this thread being slow is not."""

from __future__ import annotations

import threading
import time

from realtime.stream.capture import CaptureWorker
from realtime.stream.ring import FrameRing
from realtime.core.types import InputSpec

from conftest import FakeCamera

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


def _run(source, prepare, seconds: float):
    ring = FrameRing(64)
    stop = threading.Event()
    states: list[str] = []
    worker = CaptureWorker("cam", source, ring, SPEC, prepare, stop, lambda s: states.append(s.state),
                           gap_seconds=1.0)
    worker.start()
    time.sleep(seconds)
    stop.set()
    assert worker.join(5)
    return states, ring.stats().gaps


def test_a_camera_that_stops_sending_is_lost_then_recovered() -> None:
    states, gaps = _run(PausingCamera(at=5, pause=1.5), lambda bgr, spec: bgr, 2.5)
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

    states, gaps = _run(FakeCamera(fps=30), prepare, 2.5)
    assert "lost" not in states and states[0] == "connected", states
    assert gaps == 1                      # the 1.5 s hole still never falls inside a window
    assert len(calls) > 20                # and frames flowed on afterwards


def test_sampled_frames_only_still_hands_every_frame_to_video_sinks() -> None:
    """The overlay draws on every frame; only the ring (the model's input) gets the sampled ones."""
    ring = FrameRing(64)
    stop = threading.Event()
    seen = []
    worker = CaptureWorker("cam", FakeCamera(fps=30), ring, SPEC, lambda bgr, spec: bgr, stop,
                           lambda s: None, on_frame=lambda stream, bgr, meta: seen.append(meta.index),
                           sample_interval=4 / 30)
    worker.start()
    time.sleep(2.0)
    stop.set()
    assert worker.join(5)
    stats = worker.stats
    assert seen == list(range(stats.frames)) and stats.frames > 40     # every frame, in order
    assert stats.delivered + stats.unsampled == stats.frames
    assert abs(stats.delivered - stats.frames / 4) <= 1, stats
    assert [m.index % 4 for m in ring.metas()] == [0] * len(ring.metas())   # every 4th frame stored
