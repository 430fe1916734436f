import random

import numpy as np

import pytest

from realtime.core.sampling import WindowSpec, first_due, select_window

from conftest import make_meta

VIDEOMAE = WindowSpec(16, 16 * 4 / 30)   # 16 frames, every 4th at 30 fps


def stream(fps: float, seconds: float, jitter: float = 0.0, seed: int = 0):
    rng = random.Random(seed)
    n = int(fps * seconds)
    ts = [i / fps + (rng.uniform(-jitter, jitter) if jitter else 0.0) for i in range(n)]
    ts.sort()
    return [make_meta(i, t) for i, t in enumerate(ts)]


@pytest.mark.parametrize("fps", [15, 25, 30, 60])
def test_window_spans_the_same_time_whatever_the_fps(fps):
    metas = stream(fps, 5.0)
    pos = select_window(metas, VIDEOMAE)
    assert pos is not None and len(pos) == 16
    chosen = [metas[p].ts for p in pos]
    assert chosen == sorted(chosen)
    assert pos[-1] == len(metas) - 1                       # ends at the newest frame
    span = chosen[-1] - chosen[0]
    expected = 15 * VIDEOMAE.interval                      # 2.0 s between first and last sample
    assert abs(span - expected) <= 1.0 / fps + 1e-9
    # every sample is the frame nearest its target
    for t, p in zip(VIDEOMAE.targets(chosen[-1]), pos):
        assert abs(metas[p].ts - t) <= 0.5 / fps + 1e-9


def test_30fps_takes_every_fourth_frame_like_videomae_training():
    metas = stream(30, 4.0)
    pos = select_window(metas, VIDEOMAE)
    assert [b - a for a, b in zip(pos, pos[1:])] == [4] * 15


def test_15fps_takes_every_second_frame():
    pos = select_window(stream(15, 4.0), VIDEOMAE)
    assert [b - a for a, b in zip(pos, pos[1:])] == [2] * 15


def test_jittered_timestamps_pick_nearest_frames():
    metas = stream(30, 5.0, jitter=0.01, seed=3)
    pos = select_window(metas, VIDEOMAE)
    targets = VIDEOMAE.targets(metas[-1].ts)
    for t, p in zip(targets, pos):
        best = min(range(len(metas)), key=lambda j: abs(metas[j].ts - t))
        assert abs(metas[p].ts - t) == pytest.approx(abs(metas[best].ts - t))


def test_not_ready_until_frames_reach_back_a_whole_window():
    metas = stream(30, 1.9)           # window needs 2.0 s (+ half an interval of slack)
    assert select_window(metas, VIDEOMAE) is None
    assert select_window(stream(30, 2.1), VIDEOMAE) is not None


def test_slow_camera_repeats_frames():
    metas = stream(4, 4.0)            # 4 fps: sparser than the 7.5 Hz sampling
    pos = select_window(metas, VIDEOMAE)
    assert len(pos) == 16 and len(set(pos)) < 16


def test_window_ending_at_an_earlier_frame():
    metas = stream(30, 5.0)
    pos = select_window(metas, VIDEOMAE, end=100)
    assert pos[-1] == 100 and pos[0] == 40


def test_first_due():
    metas = stream(10, 1.0)
    assert first_due(metas, 0.45) == 5
    assert first_due(metas, 5.0) is None
    assert first_due(metas, -1) == 0


def test_spec_validation():
    with pytest.raises(ValueError):
        WindowSpec(0, 1.0)
    with pytest.raises(ValueError):
        WindowSpec(16, 0)


def test_sample_grid_keeps_one_frame_per_interval_from_a_30fps_camera():
    from realtime.core.sampling import SampleGrid
    grid = SampleGrid(16 * 4 / 30 / 16)                  # VideoMAE-Kinetics: every 4th frame at 30 fps
    ts = [i / 30 for i in range(120)]
    kept = [i for i, t in enumerate(ts) if grid.keep(t)]
    assert kept == list(range(0, 120, 4))


def test_sample_grid_tolerates_jitter_and_continues_after_a_pause():
    from realtime.core.sampling import SampleGrid
    rng = np.random.default_rng(0)
    grid = SampleGrid(0.1)
    ts = np.sort(np.arange(0, 3, 1 / 30) + rng.uniform(-0.004, 0.004, 90))
    kept = np.array([t for t in ts if grid.keep(float(t))])
    steps = np.diff(kept)
    assert np.all((steps > 0.08) & (steps < 0.12)), steps        # one per interval, none missed
    assert abs(len(kept) - 30) <= 1
    # A 1 s pause: the first frame after it is kept, and the grid goes on from there.
    assert grid.keep(4.0) and not grid.keep(4.0 + 1 / 30) and grid.keep(4.1)
    grid.reset()
    assert grid.keep(4.11) and not grid.keep(4.14)                 # a new anchor


def test_sample_grid_keeps_every_frame_when_the_interval_is_one_frame():
    from realtime.core.sampling import SampleGrid
    grid = SampleGrid(1 / 25)                             # I3D: consecutive frames
    assert all(grid.keep(i / 25) for i in range(50))
    with pytest.raises(ValueError):
        SampleGrid(0)
