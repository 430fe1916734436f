"""Files whose frames are further apart than the window stride: a 1 fps clip, a clip with a
3 s jump in its timestamps, a stride shorter than a frame. Paced ``fast``, capture waits for the
model, so a scheduler that keeps naming the same frame as due would hang the run forever; each
case here runs as a real process under a timeout and must finish with a label.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import TINY_LABELS as LABELS, make_meta, realtime, write_video
from realtime.core.types import BufferPolicy, Schedule
from realtime.stream.inference import StreamSlot
from realtime.stream.ring import FrameRing
from realtime.core.sampling import WindowSpec

HANG = 90    # seconds; each run here takes a few seconds, a hang never ends


def media_times(path: Path) -> list[float]:
    cap = cv2.VideoCapture(str(path))
    times = []
    while cap.grab():
        times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    cap.release()
    return times


@pytest.fixture(scope="module")
def one_fps(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("sparse") / "one_fps.mp4", frames=12, fps=1.0,
                       size=(160, 120))


@pytest.fixture(scope="module")
def jump(tmp_path_factory) -> Path:
    """30 fps, 60 frames, with the timestamps of frames 30.. moved 3 s later (a recording pause)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    folder = tmp_path_factory.mktemp("sparse")
    plain = write_video(folder / "plain.mp4", frames=60, fps=30.0, size=(160, 120))
    out = folder / "jump.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(plain), "-vf",
                    "setpts='PTS+gte(N,30)*3/TB'", "-fps_mode", "passthrough", "-c:v", "libx264",
                    "-preset", "ultrafast", str(out)], check=True, timeout=60)
    times = media_times(out)
    assert len(times) == 60 and 2.9 < times[30] - times[29] < 3.1, times[25:35]
    return out


def classify_json(model: Path, clip: Path, *extra: str) -> dict:
    r = realtime("classify", str(clip), "--model", str(model), "--json", "--timeline", *extra,
                 timeout=HANG)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_classify_one_fps_clip_finishes_with_a_label(tiny_model, one_fps):
    result = classify_json(tiny_model, one_fps)
    assert result["label"] in LABELS and result["frames"] == 12
    ends = [w["end"] for w in result["timeline"]]
    assert ends == sorted(set(ends))              # each window ends on a newer frame
    assert len(ends) >= 5                          # 12 s of frames, stride 1 s: one per frame or so


def test_classify_clip_with_a_timestamp_jump_finishes(tiny_model, jump):
    result = classify_json(tiny_model, jump)
    assert result["label"] in LABELS and result["frames"] == 60
    ends = [w["end"] for w in result["timeline"]]
    assert ends == sorted(set(ends)) and ends[-1] > 3.9   # windows after the jump too


def test_run_with_a_stride_shorter_than_a_frame_finishes(tiny_model, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", frames=90, fps=30.0, size=(160, 120))
    out = tmp_path / "out.jsonl"
    r = realtime("run", "--source", str(clip), "--model", str(tiny_model), "--sink", f"jsonl:{out}",
                 "--set", "source.pace=fast", "--set", "window.stride_seconds=0.02", timeout=HANG)
    assert r.returncode == 0, r.stderr
    ends = [e["media_end"] for e in map(json.loads, out.read_text().splitlines())
            if e["type"] == "prediction"]
    # One window per frame from the first full window on (a 0.02 s stride asks for more).
    steps = np.diff(ends)
    assert len(ends) >= 20 and np.allclose(steps, 1 / 30, atol=0.002), ends
    assert ends[-1] == pytest.approx(89 / 30, abs=0.002)


def test_eval_of_a_data_set_holding_a_one_fps_clip_finishes(tiny_model, one_fps, tmp_path):
    data = tmp_path / "data"
    for label in LABELS[:2]:
        (data / label).mkdir(parents=True)
        shutil.copy(one_fps, data / label / "clip.mp4")
    r = realtime("eval", str(data), "--model", str(tiny_model), "--json", "--no-progress",
                 timeout=HANG)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["evaluated"] == 2 and not report["skipped"]
    assert all(c["windows"] >= 5 for c in report["clips"])


def test_every_schedule_moves_past_a_frame_already_classified():
    """The scheduler itself: 1 fps frames in a WAIT ring, stride 0.25 s. Every take() either
    returns a window ending on a newer frame or frees room, so the writer is never stuck."""
    spec = WindowSpec(num_frames=4, window_seconds=2.0)
    ring = FrameRing(capacity=6, policy=BufferPolicy.WAIT)
    slot = StreamSlot("s", ring, spec, stride=0.25, schedule=Schedule.EVERY)
    out = np.empty((4, 2, 2, 3), np.uint8)
    ends = []
    for i in range(40):
        assert ring.push(np.zeros((2, 2, 3), np.uint8), make_meta(i, float(i)), timeout=1.0), \
            f"frame {i} could not be stored: the ring stays full (windows ended at {ends[-3:]})"
        while (metas := slot.take(out)) is not None:
            ends.append(metas[-1].index)
    assert ends == list(range(2, 40)), ends
