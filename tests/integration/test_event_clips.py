"""Clips of events: a real video file paced in real time through the real pipeline, a real
H.264 encoder, ffprobe reading the files back.

The label is driven deterministically by the video itself: the classifier reads the colour of
each window's newest frame (red -> ``red thing``, green -> ``green thing``) and smoothing is off,
so a change event comes on the first window that ends on a frame of the new colour. The change
event's ``media_end`` is that frame's time, so the expected length of each clip is known exactly.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional, Sequence

import jsonschema
import numpy as np
import pytest

from conftest import realtime, write_video
from support.fakes import ScriptedClassifier
from realtime.config import load_config
from realtime.core.errors import SinkError
from realtime.core.events import ChangeEvent
from realtime.feed.subscriber import load_schema
from realtime.stream.pipeline import STOP_TIMEOUT, Pipeline

FPS = 20.0
RED, GREEN = (0, 0, 255), (0, 255, 0)          # BGR
LABELS = ("red thing", "green thing", "blue thing")

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe (apt ffmpeg) is not installed")


def colour_of_newest_frame(clips: np.ndarray) -> np.ndarray:
    """Probabilities from the colour of each window's newest frame (RGB): red or green."""
    newest = clips[:, -1].reshape(len(clips), -1, 3).mean(axis=1)
    probs = np.full((len(clips), len(LABELS)), 0.05, np.float32)
    probs[np.arange(len(clips)), np.where(newest[:, 0] > newest[:, 1], 0, 1)] = 0.9
    return probs


def colour_video(path: Path, seconds: Sequence[tuple[tuple[int, int, int], float]]) -> Path:
    """A video at FPS of solid colours, each for its seconds, in order."""
    colours: list[tuple[int, int, int]] = []
    for colour, duration in seconds:
        colours += [colour] * round(duration * FPS)
    return write_video(path, len(colours), fps=FPS, size=(96, 64), color_of=lambda i: colours[i])


class Changes:
    """The change events, in order, with a Condition to wait for them."""

    def __init__(self) -> None:
        self.events: list = []
        self.existed: list[bool] = []             # the clip's file, as the event was published
        self.cond = threading.Condition()

    def __call__(self, event) -> None:
        if event["type"] == "change":
            with self.cond:
                self.events.append(event)
                self.existed.append(bool(event.get("clip")) and Path(event["clip"]).exists())
                self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.events) >= count, timeout)


def pipeline(video: Path, clips_dir: Path, changes: Changes, *settings: str) -> Pipeline:
    config = load_config(None, ["sinks=[]", "run.log_level=warning", f"source.uri={video}",
                                "smoothing.enabled=false", "window.stride_seconds=0.1",
                                "events.heartbeat_seconds=0",
                                "clips.enabled=true", f"clips.dir={clips_dir}", "clips.fps=30",
                                *settings])
    classifier = ScriptedClassifier(labels=LABELS, num_frames=4, window_seconds=0.2,
                                    script=colour_of_newest_frame)
    return Pipeline(config, classifier=classifier, on_event=changes)


def probe(path: str) -> tuple[str, float]:
    """(codec, duration in seconds) of the video stream, as ffprobe reads them."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,duration",
                          "-of", "json", path], capture_output=True, text=True, timeout=30, check=True)
    stream = json.loads(out.stdout)["streams"][0]
    return stream["codec_name"], float(stream["duration"])


def expected_duration(change, pre: float, post: float, video_seconds: float,
                      cut_at: Optional[float] = None) -> float:
    """Frames from ``pre`` before the change's frame to ``post`` after it, within the video
    (and up to ``cut_at``, the next change), each shown one frame interval."""
    t0 = change["media_end"]
    end = min(t0 + post, video_seconds, cut_at if cut_at is not None else float("inf"))
    return end - max(t0 - pre, 0.0)


TOLERANCE = 1 / FPS + 0.002      # one frame interval, and the millisecond clock of the file


def test_each_change_gets_a_clip_of_pre_plus_post_seconds(tmp_path: Path) -> None:
    video = colour_video(tmp_path / "cam.mp4", [(RED, 2.0), (GREEN, 2.5)])
    clips_dir = tmp_path / "clips"
    changes = Changes()
    p = pipeline(video, clips_dir, changes, "clips.pre_seconds=1", "clips.post_seconds=1")
    p.run()
    events = changes.events
    assert [e["label"] for e in events] == ["red thing", "green thing"]
    paths = [e["clip"] for e in events]
    assert all(isinstance(e, ChangeEvent) for e in events)
    assert [e.clip for e in events] == paths
    assert all(Path(path).is_absolute() and Path(path).parent == clips_dir for path in paths)
    assert Path(paths[0]).name.startswith("cam_") and paths[0].endswith("Z_red-thing.mp4")
    assert paths[1].endswith("Z_green-thing.mp4")
    # Written under a hidden name and renamed when whole: not there when the event went out,
    # and nothing else left in the folder after the run.
    assert changes.existed == [False, False]
    assert sorted(p.name for p in clips_dir.iterdir()) == sorted(Path(path).name for path in paths)
    validator = jsonschema.Draft202012Validator(load_schema())
    for e in events:
        validator.validate(e.to_json())
    # The change to green: 1 s before and 1 s after it, the stream going on well past it.
    codec, duration = probe(paths[1])
    assert codec == "h264"
    assert 1.9 <= events[1]["media_end"] <= 2.2
    assert duration == pytest.approx(2.0, abs=TOLERANCE)
    # The first label, found 0.15 s into the video: what there was before it, and 1 s after.
    codec, duration = probe(paths[0])
    assert codec == "h264"
    assert duration == pytest.approx(expected_duration(events[0], 1.0, 1.0, 4.5), abs=TOLERANCE)
    assert p.stats()["clips"] == {"written": 2, "failed": 0, "skipped": 0, "removed": 0, "recording": 0}


def test_only_the_newest_clips_are_kept(tmp_path: Path) -> None:
    video = colour_video(tmp_path / "cam.mp4", [(RED, 0.6), (GREEN, 0.6), (RED, 0.6), (GREEN, 0.6)])
    clips_dir = tmp_path / "clips"
    clips_dir.mkdir()
    foreign = [clips_dir / "holiday.mp4", clips_dir / "cam_notes.txt"]
    for path in foreign:
        path.write_bytes(b"not ours")
    changes = Changes()
    p = pipeline(video, clips_dir, changes, "clips.pre_seconds=0.3", "clips.post_seconds=0.3",
                 "clips.max_clips=2")
    p.run()
    paths = [e["clip"] for e in changes.events]
    assert len(paths) == 4 and len(set(paths)) == 4 and None not in paths
    assert sorted(clips_dir.iterdir()) == sorted([Path(paths[2]), Path(paths[3]), *foreign])
    for path in paths[2:]:
        assert probe(path)[0] == "h264"
    assert p.stats()["clips"]["written"] == 4 and p.stats()["clips"]["removed"] == 2


def test_a_change_during_a_clip_ends_it_and_starts_the_next(tmp_path: Path) -> None:
    video = colour_video(tmp_path / "cam.mp4", [(RED, 1.0), (GREEN, 0.5), (RED, 1.5)])
    clips_dir = tmp_path / "clips"
    changes = Changes()
    p = pipeline(video, clips_dir, changes, "clips.pre_seconds=0.5", "clips.post_seconds=1")
    p.run()
    events = changes.events
    assert [e["label"] for e in events] == ["red thing", "green thing", "red thing"]
    durations = [probe(e["clip"])[1] for e in events]
    # The green clip stops where the red one begins (the next change's frame, or the frame or
    # two captured while that change was being found) ...
    cut = events[2]["media_end"]
    shortest = expected_duration(events[1], 0.5, 1.0, 3.0, cut_at=cut)
    assert shortest - TOLERANCE <= durations[1] <= shortest + 0.25, (durations, cut)
    assert durations[1] < 1.5 - 0.2
    # ... which has its own seconds before it (the end of the green clip again) and after it.
    assert durations[2] == pytest.approx(1.5, abs=TOLERANCE)
    assert p.stats()["clips"]["written"] == 3


def test_stop_finishes_the_clip_in_progress(tmp_path: Path) -> None:
    video = colour_video(tmp_path / "cam.mp4", [(RED, 1.0), (GREEN, 4.0)])
    clips_dir = tmp_path / "clips"
    changes = Changes()
    p = pipeline(video, clips_dir, changes, "clips.pre_seconds=0.5", "clips.post_seconds=5")
    p.start()
    try:
        assert changes.wait_for(2), "no change to green"
        p.stop_event.wait(0.3)                   # the green clip is recording
    finally:
        started = time.monotonic()
        p.stop()
        stopped_in = time.monotonic() - started
    assert stopped_in < 2 * STOP_TIMEOUT
    assert "clips-writer" not in p.abandoned
    for e in changes.events:
        codec, duration = probe(e["clip"])
        assert codec == "h264" and 0.5 <= duration < 5.5
    assert p.stats()["clips"] == {"written": 2, "failed": 0, "skipped": 0, "removed": 0, "recording": 0}


def test_a_clip_that_cannot_be_written_is_logged_once_and_the_run_goes_on(tmp_path: Path, caplog) -> None:
    video = colour_video(tmp_path / "cam.mp4", [(RED, 0.8), (GREEN, 0.8), (RED, 0.8)])
    clips_dir = tmp_path / "clips"
    changes = Changes()
    predictions = []
    p = pipeline(video, clips_dir, changes, "clips.pre_seconds=0.3", "clips.post_seconds=0.3")
    p.on_prediction = lambda pred, probs: predictions.append(pred)
    with caplog.at_level(logging.ERROR, logger="realtime"):
        p.start()
        try:
            shutil.rmtree(clips_dir)             # gone before the first change's file is opened
            assert p.wait(15)
        finally:
            p.stop()
    p.raise_error()
    assert [e["label"] for e in changes.events] == ["red thing", "green thing", "red thing"]
    assert all(e["clip"] for e in changes.events)           # the paths were promised ...
    assert not clips_dir.exists()                            # ... and could not be written
    assert p.stats()["clips"]["failed"] == 3 and p.stats()["clips"]["written"] == 0
    failures = [r for r in caplog.records if r.name == "realtime.sinks.clips"]
    assert len(failures) == 1 and str(clips_dir) in failures[0].getMessage()
    assert predictions and predictions[-1].media_end >= 2.3  # classified to the end of the file


def test_a_clips_folder_that_cannot_be_made_fails_at_start_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    video = colour_video(tmp_path / "cam.mp4", [(RED, 0.5)])
    bad = blocker / "clips"
    p = pipeline(video, bad, Changes())
    with pytest.raises(SinkError, match=f"clips.dir: cannot write clips to {bad}"):
        p.start()
    assert p.classifier is None                  # failed before the model was loaded
    # The command line says it in one line and exits 1, without a traceback.
    result = realtime("run", "--source", str(video), "--sink", "jsonl:-", "--set", "clips.enabled=true",
                      "--set", f"clips.dir={bad}", timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"cannot write clips to {bad}" in result.stderr
    assert "Traceback" not in result.stderr
