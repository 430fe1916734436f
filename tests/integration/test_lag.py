"""Lag never builds up: a 30 fps camera and a 500 ms classifier, for 60 seconds.

The scenario runs in its own process (tests/support/lag_scenario.py) so that its
memory reading is not mixed with what earlier tests left in the pytest process.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

RUN_SECONDS = float(os.environ.get("REALTIME_LAG_SECONDS", "60"))


@pytest.mark.slow
@pytest.mark.parametrize("sampled_only", [False, True], ids=["every-frame", "sampled-frames-only"])
def test_newest_frame_age_stays_bounded_and_memory_flat(sampled_only):
    """With window.sampled_frames_only a worker late for a window makes capture keep the frames
    between grid points too, so the window ends at the newest frame, not one up to 133 ms older."""
    seconds = RUN_SECONDS if not sampled_only else min(RUN_SECONDS, 20.0)
    r = subprocess.run([sys.executable, str(REPO / "tests/support/lag_scenario.py"),
                        "--seconds", str(seconds)] + (["--sampled-frames-only"] if sampled_only else []),
                       capture_output=True, text=True, timeout=seconds + 60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    print("\nlag summary:", json.dumps(s))
    # The newest frame's age at each prediction is the model's time plus what the pipeline adds:
    # the window should end at most two frame intervals before the model starts. Both parts share
    # the machine with the test run, so single outliers are an OS stretching a thread (one CI run
    # saw one of 116 predictions at 125 ms pipeline time, never seen here), not lag: lag that
    # builds up grows from one prediction to the next towards the ring's length (3.5 s here).
    # So the bounds are on the typical prediction, a ceiling far below a backlog, and no trend.
    interval = 1000 / s["fps"]
    assert s["pipeline_ms_p95"] < s["pipeline_bound_ms"], s
    assert s["pipeline_ms_max"] < s["pipeline_bound_ms"] + 8 * interval, s   # a hiccup, not a backlog
    assert s["age_ms_p50"] < s["bound_ms"], s            # one inference time + two frame intervals
    assert s["age_ms_last_quarter"] < s["age_ms_first_quarter"] + 2 * interval, s   # the phase drifts
    # one prediction per inference time, give or take start-up (the first window needs 2.1 s)
    assert s["predictions"] >= (seconds - 3) / (0.5 + 0.05), s
    assert s["rss_mb_max"] - s["rss_mb_at_10s"] < 15, s   # MB: nothing accumulates
    assert s["frames_captured"] >= 30 * seconds * 0.95, "capture must keep up with the camera"
