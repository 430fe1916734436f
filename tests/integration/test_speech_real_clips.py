"""The accessibility preset on the four reference clips joined into one stream, paced in real
time, with the real speech engine saving WAV files: every activity announced, in order, within 5 s
of its start, each with its end (scripts/bench_announcements.py runs it 5 times)."""

from __future__ import annotations

import pytest

from conftest import SHARED_CLIPS, i3d_weights_or_skip
from support.announcements import ACTIVITIES, one_run
from support.joined import join_clips

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason=f"real clips not found at {SHARED_CLIPS}")]


def test_every_activity_is_announced_in_order_on_time_with_its_end(tmp_path):
    pytest.importorskip("pyttsx3")
    i3d_weights_or_skip()
    video = tmp_path / "four.mp4"
    segments = join_clips([SHARED_CLIPS / name for name, _ in ACTIVITIES], video)
    result = one_run(video, segments, {}, max_delay=5.0)
    assert result["in_order"], result["parts"]
    for row in result["activities"]:
        assert row["delay"] is not None and row["delay"] <= 5.0, (row, result["parts"])
        assert row["end_said"], (row, result["parts"])
    starts = [f for f in result["files"] if "_started_" in f or "_urgent_" in f]
    assert [f.split("_", 2)[2].removesuffix(".wav") for f in starts] == \
        ["abseiling", "arm-wrestling", "flipping-pancake", "shooting-basketball"]
