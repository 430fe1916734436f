"""Clips of events, the parts without a pipeline: names, the disk bound, the frame buffer's
memory bound, the settings. The recording itself: tests/integration/test_event_clips.py."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_meta
from realtime.config import load_config
from realtime.core.errors import ConfigError
from realtime.sinks.clips import (CLIP_NAME, LAG_SECONDS, STALE_PART_SECONDS, ClipRecorder, clip_name,
                                  default_clips_dir, prune)

WALL = 1_795_946_100.0          # 2026-11-29 09:55:00 UTC


@pytest.mark.parametrize("stream, label, expected", [
    ("cam0", "abseiling", "cam0_20261129T095500Z_abseiling.mp4"),
    ("front_door", "playing guitar", "front_door_20261129T095500Z_playing-guitar.mp4"),
    ("camera-2", "no activity", "camera-2_20261129T095500Z_no-activity.mp4"),
    ("café", "Tai chi / qigong!", "cafe_20261129T095500Z_Tai-chi-qigong.mp4"),
    ("кухня", "../../etc/passwd", "stream_20261129T095500Z_etc-passwd.mp4"),
    ("cam", "射箭", "cam_20261129T095500Z_label.mp4"),
])
def test_clip_names_are_safe_and_recognised(stream: str, label: str, expected: str) -> None:
    name = clip_name(stream, WALL, label)
    assert name == expected
    assert CLIP_NAME.fullmatch(name)
    assert len(clip_name("s" * 200, WALL, "l" * 200)) <= 64 + 18 + 64 + 4


def _touch(path: Path, size: int, mtime: int) -> Path:
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


def test_prune_keeps_the_newest_clips_and_leaves_other_files_alone(tmp_path: Path) -> None:
    clips = [_touch(tmp_path / clip_name("cam", WALL + i, "a"), 100, 1_000 + i) for i in range(5)]
    others = [_touch(tmp_path / "holiday.mp4", 100, 1), _touch(tmp_path / "cam_notes.txt", 100, 1)]
    removed = prune(tmp_path, max_clips=2, max_bytes=1e9)
    assert sorted(removed) == sorted(clips[:3])
    assert sorted(tmp_path.iterdir()) == sorted(clips[3:] + others)


def test_prune_keeps_the_clips_under_the_byte_bound_newest_first(tmp_path: Path) -> None:
    sizes = [100, 300, 100, 100]           # oldest first
    clips = [_touch(tmp_path / clip_name("cam", WALL + i, "a"), size, 1_000 + i)
             for i, size in enumerate(sizes)]
    # 100 + 100 fit in 250; the 300 does not, so it and everything older go.
    assert sorted(prune(tmp_path, max_clips=10, max_bytes=250)) == sorted(clips[:2])
    in_progress = _touch(tmp_path / clip_name("cam", WALL + 9, "b"), 1000, 2_000)
    assert prune(tmp_path, max_clips=1, max_bytes=250, keep=[in_progress]) == [clips[2]]
    assert in_progress.exists() and clips[3].exists()


def test_the_frame_buffer_is_bounded_in_frames_and_width(tmp_path: Path) -> None:
    recorder = ClipRecorder(tmp_path, pre_seconds=2.0, post_seconds=1.0, fps=10.0, width=320)
    recorder.add_stream("cam")
    frame = np.zeros((720, 1280, 3), np.uint8)
    for i in range(300):                   # 10 s of a 30 fps 720p camera
        recorder.frame("cam", frame, make_meta(i, i / 30))
    frames, nbytes = recorder.buffered("cam")
    limit = math.ceil((2.0 + LAG_SECONDS) * 10.0) + 1
    assert 28 <= frames <= limit                          # thinned to 10 fps, 3 s of them
    assert nbytes == frames * 320 * 180 * 3               # scaled down to 320 wide
    assert recorder.start_clip("cam", 299, "a", WALL) is None    # not open: nothing recorded


def test_clips_settings(tmp_path: Path) -> None:
    c = load_config(None, ["clips.enabled=true", f"clips.dir={tmp_path}", "clips.max_gb=0.5"]).clips
    assert (c.enabled, c.dir, c.pre_seconds, c.post_seconds, c.max_clips, c.max_gb) == \
        (True, str(tmp_path), 3.0, 3.0, 100, 0.5)
    assert load_config(None, []).clips.enabled is False
    with pytest.raises(ConfigError, match="pre_seconds"):
        load_config(None, ["clips.pre_seconds=0", "clips.post_seconds=0"])
    with pytest.raises(ConfigError, match="clips.max_clips"):
        load_config(None, ["clips.max_clips=0"])
    with pytest.raises(ConfigError, match="clips.dirr"):
        load_config(None, ["clips.dirr=x"])


def test_the_default_folder_is_beside_the_gallery(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_clips_dir() == tmp_path / "realtime" / "clips"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_clips_dir() == Path.home() / ".local" / "share" / "realtime" / "clips"
    assert ClipRecorder(None).directory == default_clips_dir()


def test_open_checks_the_folder_and_removes_only_old_partial_clips(tmp_path: Path) -> None:
    now = time.time()
    old = _touch(tmp_path / ".cam_20261129T095500Z_a.part.mp4", 10, int(now - STALE_PART_SECONDS - 60))
    fresh = _touch(tmp_path / ".cam_20261129T095501Z_a.part.mp4", 10, int(now))  # another run's
    other = _touch(tmp_path / ".notes.part.mp4", 10, int(now - 10 * STALE_PART_SECONDS))
    recorder = ClipRecorder(tmp_path, max_clips=5)
    recorder.open()
    try:
        assert not old.exists() and fresh.exists() and other.exists()
        assert sorted(tmp_path.iterdir()) == sorted([fresh, other])      # the probe file is gone
    finally:
        assert recorder.close(5)
    assert recorder.stats() == {"written": 0, "failed": 0, "skipped": 0, "removed": 0, "recording": 0}
