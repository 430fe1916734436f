"""The pipeline end to end with real video files, a paced fake camera and a scripted classifier."""

import json
import threading
import time

import numpy as np
import pytest

from realtime.config import load_config
from realtime.core.errors import RealtimeError
from realtime.stream.pipeline import Pipeline
from realtime.sinks.jsonl import JsonlSink

from support.fakes import FakeCamera, ScriptedClassifier


def config(*overrides):
    return load_config(None, ["sinks=[]", "run.log_level=warning", *overrides])


class Collect:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def __call__(self, event):
        with self.lock:
            self.events.append(event)

    def of(self, kind):
        with self.lock:
            return [e for e in self.events if e["type"] == kind]


def run_until_predictions(p, got, count, timeout=10.0):
    """Start ``p``, wait until ``got`` holds ``count`` predictions (or ``timeout``), stop it."""
    p.start()
    try:
        deadline = time.monotonic() + timeout
        while len(got.of("prediction")) < count and time.monotonic() < deadline:
            p.stop_event.wait(0.05)
    finally:
        p.stop()


def test_fast_file_classifies_every_stride_in_order(make_video):
    path = make_video(frames=60, fps=30.0)
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5, delay=0.03)
    got = Collect()
    Pipeline(config(f"source.uri={path}", "source.pace=fast", "window.stride_seconds=0.25"),
             classifier=clf, on_event=got).run()
    preds = got.of("prediction")
    ends = [p["media_end"] for p in preds]
    # first full window ends near 0.47 s, then one every 0.25 s of media time, then the tail
    assert ends == sorted(ends)
    steps = np.diff(ends[:-1])
    assert np.all(np.abs(steps - 0.25) < 1 / 30 + 1e-6), steps
    assert ends[0] == pytest.approx(14 / 30, abs=1e-3)  # 7 intervals of 0.0625 s
    assert ends[-1] == pytest.approx(59 / 30, abs=1e-3)     # the last frames are classified too
    # due at 0.467, 0.717, ..., 1.967 s: the 7th window ends on the last frame, so no extra tail
    assert len(preds) == len(clf.calls) == 7
    assert {p["label"] for p in preds} == {"a"}
    assert all(p["raw_top_k"][0]["label"] == "a" for p in preds)
    changes = got.of("change")
    assert len(changes) == 1 and changes[0]["label"] == "a" and changes[0]["previous"] is None
    states = [e["state"] for e in got.of("status")]
    assert states[0] == "connected" and states[-1] == "ended"
    assert [e["seq"] for e in got.events] == list(range(len(got.events)))


def test_frames_reach_the_model_as_rgb_in_time_order(make_video):
    # frame i: blue channel = 8*i (BGR), green 40, red 200
    path = make_video(frames=45, fps=30.0)
    clf = ScriptedClassifier(num_frames=8, window_seconds=8 / 15)   # one frame in two at 30 fps
    Pipeline(config(f"source.uri={path}", "source.pace=fast"), classifier=clf).run()
    clip = clf.calls[0][0]                          # (T, H, W, 3) RGB
    r, g, b = (clip[:, 16, 16, c].astype(int) for c in range(3))
    assert np.all(np.abs(r - 200) <= 6) and np.all(np.abs(g - 40) <= 6)
    assert np.all(np.diff(b) > 0), b                # blue grows with the frame index
    assert np.all(np.abs(np.diff(b) - 16) <= 6), b  # every 2nd frame: 0.0625 s at 30 fps


def test_realtime_paced_file_takes_as_long_as_the_video(make_video):
    path = make_video(frames=45, fps=30.0)          # 1.5 s
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5)
    got = Collect()
    t0 = time.monotonic()
    Pipeline(config(f"source.uri={path}"), classifier=clf, on_event=got).run()
    elapsed = time.monotonic() - t0
    assert elapsed > 1.3                            # paced: 1.5 s of video cannot end sooner
    preds = got.of("prediction")
    assert len(preds) >= 3
    assert all(p["latency_ms"] < 200 for p in preds)   # and it kept up: no window waited


def test_live_source_newest_window_first_with_slow_model():
    cam = FakeCamera(fps=30)
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5, delay=0.3)
    got = Collect()
    p = Pipeline(config("window.stride_seconds=0.1"), classifier=clf, source=cam, on_event=got)
    run_until_predictions(p, got, 6)
    preds = got.of("prediction")
    assert len(preds) >= 6
    # a 0.3 s model on a 30 fps camera: each window ends at the newest frame
    for e in preds:
        assert e["latency_ms"] < 300 + 2 * 1000 / 30 + 50, e["latency_ms"]
    # windows hold frames in capture order with the sampling stride (every 2nd frame at 30 fps)
    for clip in clf.calls:
        values = clip[0, :, 0, 0, 0].astype(int)
        steps = np.diff(values) % 256
        assert np.all((steps >= 1) & (steps <= 3)), values


def test_lost_live_source_reconnects_and_resets_the_window():
    cam = FakeCamera(fps=30, fail_after=40, open_failures=0)
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5)
    got = Collect()
    p = Pipeline(config("source.reconnect.initial_delay=0.05"), classifier=clf, source=cam, on_event=got)
    p.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            states = [e["state"] for e in got.of("status")]
            if "recovered" in states and len(got.of("prediction")) >= 4:
                break
            p.stop_event.wait(0.05)
    finally:
        p.stop()
    states = [e["state"] for e in got.of("status")]
    assert states[:3] == ["connected", "lost", "recovered"], states
    lost_at = next(e["time"] for e in got.of("status") if e["state"] == "lost")
    # no window mixes frames from before and after the gap
    for clip in clf.calls:
        values = clip[0, :, 0, 0, 0].astype(int)
        assert np.all(np.diff(values) % 256 <= 3), values
    assert p.streams[0].ring.stats().gaps == 1
    assert any(e["time"] > lost_at for e in got.of("prediction"))


def test_first_connection_retries_with_backoff():
    cam = FakeCamera(fps=30, open_failures=3)
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5)
    got = Collect()
    p = Pipeline(config("source.reconnect.initial_delay=0.05", "source.reconnect.max_delay=0.2",
                        "source.connect_attempts=4"),
                 classifier=clf, source=cam, on_event=got)
    p.start()
    try:
        deadline = time.monotonic() + 5
        while not got.of("prediction") and time.monotonic() < deadline:
            p.stop_event.wait(0.05)
    finally:
        p.stop()
    status = got.of("status")
    assert [e["state"] for e in status[:4]] == ["reconnecting"] * 3 + ["connected"]
    assert [e["retry_in"] for e in status[:3]] == [0.05, 0.1, 0.2]
    assert [e["attempt"] for e in status[:3]] == [1, 2, 3]


def test_a_source_that_never_delivered_a_frame_gives_up_after_connect_attempts():
    cam = FakeCamera(open_failures=100)
    got = Collect()
    p = Pipeline(config("source.reconnect.initial_delay=0.01", "source.connect_attempts=3"),
                 classifier=ScriptedClassifier(), source=cam, on_event=got)
    with pytest.raises(RealtimeError) as e:
        p.run(5)
    assert str(e.value) == ("fake camera refused (gave up after 3 attempts; no frame was ever "
                            "received)")
    assert cam.opens == 3
    assert [x["state"] for x in got.of("status")] == ["reconnecting", "reconnecting", "error"]


def test_a_source_that_delivered_frames_reconnects_past_connect_attempts():
    """connect_attempts bounds only the first connection: a camera that has worked is waited for
    (up to reconnect.max_attempts per outage, here never)."""
    cam = FakeCamera(fps=30, fail_after=20, reopen_failures=6)
    got = Collect()
    p = Pipeline(config("source.reconnect.initial_delay=0.01", "source.reconnect.max_delay=0.02",
                        "source.connect_attempts=2"),
                 classifier=ScriptedClassifier(num_frames=4, window_seconds=0.2), source=cam,
                 on_event=got)
    p.start()
    try:
        deadline = time.monotonic() + 10
        while "recovered" not in [e["state"] for e in got.of("status")]:
            assert time.monotonic() < deadline and p.error() is None, got.of("status")
            p.stop_event.wait(0.05)
    finally:
        p.stop()
    assert p.error() is None
    states = [e["state"] for e in got.of("status")]
    assert states[:2] == ["connected", "lost"] and states.count("reconnecting") == 6, states


def test_give_up_after_max_attempts_once_frames_flowed():
    cam = FakeCamera(fps=30, fail_after=10, reopen_failures=100)
    p = Pipeline(config("source.reconnect.initial_delay=0.01", "source.reconnect.max_attempts=3"),
                 classifier=ScriptedClassifier(), source=cam)
    with pytest.raises(RealtimeError, match="gave up on camera:fake after 3 attempts"):
        p.run(5)


def test_classifier_error_stops_the_run_with_a_clear_message(make_video):
    def boom(clips):
        raise RuntimeError("CUDA out of memory (simulated)")
    path = make_video(frames=40)
    p = Pipeline(config(f"source.uri={path}", "source.pace=fast"),
                 classifier=ScriptedClassifier(script=boom))
    t0 = time.monotonic()
    with pytest.raises(RealtimeError, match="pipeline failed: RuntimeError: CUDA out of memory"):
        p.run(10)
    assert time.monotonic() - t0 < 5


def test_missing_file_fails_at_start(tmp_path):
    p = Pipeline(config(f"source.uri={tmp_path}/nope.mp4"), classifier=ScriptedClassifier())
    with pytest.raises(RealtimeError, match="video file not found"):
        p.run(5)


def test_stop_ends_every_thread_within_two_seconds_and_flushes(tmp_path):
    out = tmp_path / "events.jsonl"
    cam = FakeCamera(fps=30)
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5, delay=0.2)
    got = Collect()
    p = Pipeline(config(), classifier=clf, source=cam, sinks=[JsonlSink(str(out))], on_event=got)
    p.start()
    deadline = time.monotonic() + 10
    while len(got.of("prediction")) < 3 and time.monotonic() < deadline:
        p.stop_event.wait(0.05)
    before = {t.name for t in threading.enumerate()}
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 2.0
    names = {t.name for t in threading.enumerate() if t.is_alive()}
    assert not {n for n in names if n.startswith(("capture-", "inference", "sink-"))}, names
    assert {"inference", "sink-jsonl:" + str(out)} <= before
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(got.events)            # everything emitted reached the file
    assert lines[-1]["type"] == "status" and lines[-1]["state"] == "ended"


def test_short_file_still_gets_one_prediction(make_video):
    path = make_video(frames=5, fps=30.0)          # 0.17 s, shorter than the 0.5 s window
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5)
    got = Collect()
    Pipeline(config(f"source.uri={path}", "source.pace=fast"), classifier=clf, on_event=got).run()
    assert len(got.of("prediction")) == 1
    assert clf.calls[0].shape[1] == 8


def test_several_streams_share_one_batched_worker(make_video):
    paths = [make_video(f"cam{i}.mp4", frames=60, fps=30.0) for i in range(3)]
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5, delay=0.02)
    got = Collect()
    cfg = config("source.pace=fast", "inference.max_batch=4",
                 "streams=[" + ", ".join(f"{{uri: '{p}', pace: fast}}" for p in paths) + "]")
    p = Pipeline(cfg, classifier=clf, on_event=got)
    p.run()
    by_stream = {}
    for e in got.of("prediction"):
        by_stream.setdefault(e["stream"], []).append(e["media_end"])
    assert sorted(by_stream) == ["cam0", "cam1", "cam2"]
    expected = pytest.approx([14 / 30, 29 / 30, 44 / 30, 59 / 30], abs=1e-3)  # every 0.5 s
    assert all(v == expected for v in by_stream.values()), by_stream  # none skipped, none starved
    assert max(len(c) for c in clf.calls) > 1                       # windows were batched
    for stream in by_stream:                                         # each stream's seq is its own
        seqs = [e["seq"] for e in got.events if e["stream"] == stream]
        assert seqs == list(range(len(seqs)))


def test_duplicate_stream_names_get_suffixes():
    cams = [FakeCamera(), FakeCamera()]
    p = Pipeline(config("source.reconnect.initial_delay=0.05"), classifier=ScriptedClassifier(),
                 sources=cams)
    p.start()
    p.stop()
    assert [s.name for s in p.streams] == ["camerafake", "camerafake-2"]


def test_max_wait_fills_batches_from_streams_that_are_just_behind():
    """Two live cameras out of phase: with max_wait the worker batches both windows."""
    cams = [FakeCamera(fps=30), FakeCamera(fps=30)]
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5, delay=0.05)
    got = Collect()
    p = Pipeline(config("inference.max_wait_ms=200", "window.stride_seconds=0.3"), classifier=clf,
                 sources=cams, on_event=got)
    run_until_predictions(p, got, 10)
    sizes = [len(c) for c in clf.calls]
    assert sizes.count(2) >= len(sizes) - 1, sizes       # (the very first may be alone)
    assert {e["stream"] for e in got.of("prediction")} == {"camerafake", "camerafake-2"}


def test_live_streams_wake_the_worker_only_when_a_window_is_due():
    """Capture threads wake the inference thread when a stream's next window is due, not on
    every frame: with many cameras a wake per frame kept it scanning every ring all the time."""
    cams = [FakeCamera(fps=30), FakeCamera(fps=30)]
    clf = ScriptedClassifier(num_frames=8, window_seconds=0.5)
    got = Collect()
    p = Pipeline(config("window.stride_seconds=0.5", "window.sampled_frames_only=true"), classifier=clf,
                 sources=cams, on_event=got)
    p.start()
    try:
        p.stop_event.wait(4.0)
    finally:
        p.stop()
    frames = sum(s.capture.stats.frames for s in p.streams)
    preds = got.of("prediction")
    assert frames >= 150 and len(preds) >= 10, (frames, len(preds))
    # Each poll that finds nothing costs a scan of every ring; frames alone would cause ~frames polls.
    assert p.inference.polls < 0.5 * frames, (p.inference.polls, frames)
    for stream in ("camerafake", "camerafake-2"):
        ends = [e["window_end"] for e in preds if e["stream"] == stream]
        steps = np.diff(ends)
        # One window per stride, none skipped or doubled; each ends on a sampled frame (one per
        # 0.0625 s sampling interval here), so a step is within an interval of the stride and
        # they average to it.
        assert np.all(np.abs(steps - 0.5) < 0.075), steps
        assert abs(steps.mean() - 0.5) < 0.03, steps
    assert max(e["latency_ms"] for e in preds) < 150, preds   # woken as soon as the due frame arrived


@pytest.mark.parametrize("every_frame", [False, True])
def test_live_cameras_can_prepare_only_the_frames_windows_sample(every_frame):
    """A model sampling every 4th frame of a 30 fps camera: with window.sampled_frames_only 3
    frames in 4 are neither prepared nor stored, and the windows are the same every-4th-frame clips."""
    cam = FakeCamera(fps=30)
    clf = ScriptedClassifier(num_frames=16, window_seconds=16 * 4 / 30)
    got = Collect()
    p = Pipeline(config(f"window.sampled_frames_only={str(not every_frame).lower()}"), classifier=clf,
                 source=cam, on_event=got)
    run_until_predictions(p, got, 3)
    stats = p.streams[0].capture.stats
    assert len(got.of("prediction")) >= 3 and stats.frames > 60
    if every_frame:
        assert stats.unsampled == 0 and stats.delivered == stats.frames
    else:
        assert abs(stats.delivered - stats.frames / 4) <= 2, stats
        assert stats.unsampled == stats.frames - stats.delivered
    for clip in clf.calls:
        steps = np.diff(clip[0, :, 0, 0, 0].astype(int)) % 256
        assert np.all(steps[1:] == 4), steps                  # every 4th frame, none missing
        # (the very first window may start at the first frame, within half an interval)
        assert steps[0] == 4 or (every_frame and 1 <= steps[0] <= 4), steps


def test_start_up_captures_every_batch_size_or_with_compile_powers_of_two():
    from realtime.stream.windows import warmup_batch_sizes
    assert warmup_batch_sizes(8, compiled=False) == list(range(1, 9))
    assert warmup_batch_sizes(8, compiled=True) == [1, 2, 4, 8]
    assert warmup_batch_sizes(12, compiled=True) == [1, 2, 4, 8, 12]
    assert warmup_batch_sizes(1, compiled=True) == [1]
