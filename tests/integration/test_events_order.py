"""What a stream's events say, and in which order: nothing of a stream follows its ``ended``; a
window taken before a loss is not published after the ``lost``; heartbeats count frames over
the time they were counted in; stream names are topic-safe.

The classifier is held inside ``predict`` by an Event the test releases, so a window is in the
model exactly when the test needs it to be (no sleeps standing in for a slow model).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from support.fakes import FakeCamera, ScriptedClassifier
from realtime.config import load_config
from realtime.core.errors import ConfigError
from realtime.core.health import HealthMonitor
from realtime.stream.pipeline import Pipeline, default_stream_name
from realtime.sources import classify_source


class HeldClassifier(ScriptedClassifier):
    """``predict`` signals ``entered`` and waits for ``release`` (at most 10 s)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.hold = True

    def predict(self, clips: np.ndarray) -> np.ndarray:
        if self.hold:
            self.entered.set()
            self.release.wait(10)
        return super().predict(clips)


class Events(list):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)

    def __call__(self, event: dict) -> None:
        with self.cond:
            self.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(list(self)), timeout)


def test_nothing_of_a_stream_follows_its_end():
    """Stop while a window is in the model: its prediction is published, and then ``ended``."""
    clf = HeldClassifier(num_frames=4, window_seconds=0.2)
    events = Events()
    p = Pipeline(load_config(None, []), classifier=clf, source=FakeCamera(fps=30), on_event=events)
    p.start()
    try:
        assert clf.entered.wait(10)
        stopper = threading.Thread(target=p.stop, name="test-stopper")
        stopper.start()
        # Capture ends (its "ended" is held) while the window is still in the model.
        assert p.streams[0].capture.join(5)
        clf.release.set()
        stopper.join(10)
    finally:
        clf.release.set()
        p.stop()
    kinds = [(e["type"], e.get("state")) for e in events]
    assert kinds[-1] == ("status", "ended"), kinds
    assert ("prediction", None) in kinds                 # the window in the model was not lost
    assert [e["seq"] for e in events] == list(range(len(events)))


def test_a_window_from_before_a_loss_is_not_published_after_it():
    clf = HeldClassifier(num_frames=4, window_seconds=0.2)
    cam = FakeCamera(fps=30, fail_after=20)
    events = Events()
    p = Pipeline(load_config(None, ["source.reconnect.initial_delay=0.01"]), classifier=clf, source=cam,
                 on_event=events)
    p.start()
    try:
        assert clf.entered.wait(10)                      # a window of frames before the loss
        assert events.wait_for(lambda ev: any(e.get("state") == "recovered" for e in ev))
        clf.hold = False
        clf.release.set()
        assert events.wait_for(lambda ev: sum(e["type"] == "prediction" for e in ev) >= 2)
    finally:
        clf.release.set()
        p.stop()
    lost = next(i for i, e in enumerate(events) if e.get("state") == "lost")
    for e in events[lost:]:
        if e["type"] == "prediction":                    # every later prediction is of later frames
            assert e["frames"][0] >= 20, e["frames"]
    assert p.inference.stale_windows == 1


def test_first_heartbeat_counts_frames_over_the_time_they_were_counted_in():
    monitor = HealthMonitor(period=5.0)
    monitor.mark_beat(100.0)                             # the pipeline starts; frames count from 0
    monitor.record("cam", latency_ms=20.0)               # the first prediction, 2 s later
    beat = monitor.beat("cam", frames_total=150, now=105.0)
    assert beat["fps"] == pytest.approx(30.0)            # 150 frames in 5 s, not in 3 s
    later = monitor.beat("cam", frames_total=300, now=110.0)
    assert later["fps"] == pytest.approx(30.0)


def test_first_heartbeat_of_a_paced_file_reports_its_frame_rate(make_video):
    path = make_video(frames=100, fps=25.0)
    events = Events()
    cfg = load_config(None, [f"source.uri={path}", "events.heartbeat_seconds=1.5"])
    p = Pipeline(cfg, classifier=ScriptedClassifier(num_frames=8, window_seconds=0.6), on_event=events)
    p.start()
    try:
        deadline = time.monotonic() + 10
        while not any(e["type"] == "heartbeat" for e in events) and time.monotonic() < deadline:
            p.wait(0.1)                                  # heartbeats are sent from wait()
    finally:
        p.stop()
    beat = next(e for e in events if e["type"] == "heartbeat")
    assert 20.0 <= beat["fps"] <= 28.0, beat


@pytest.mark.parametrize("uri,name", [
    ("0", "camera0"), ("/dev/video2", "camera2"), ("rtsp://u:p@127.0.0.1/x", "127-0-0-1"),
    ("http://cam.local:8080/video.mjpg", "cam-local"), ("/data/my clip.v2.mp4", "my-clip-v2"),
    ("rtsp://[::1]:554/s", "1"),
])
def test_derived_stream_names_are_topic_safe(uri, name):
    assert default_stream_name(classify_source(uri)) == name


@pytest.mark.parametrize("name", ["cam.1", "front door", "a/b", "", "x" * 65])
def test_unsafe_explicit_stream_names_are_refused(name):
    with pytest.raises(ConfigError, match="source.name: a stream name has 1-64 letters"):
        load_config(None, [f"source.name='{name}'"])


def test_safe_explicit_names_are_kept():
    assert load_config(None, ["source.name=küche_2-a"]).source.name == "küche_2-a"
