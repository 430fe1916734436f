"""bfloat16 on this CPU for real: the default I3D keeps its labels on the shared clips, and a
run says which precision it chose and why. Skipped where the CPU has no native bfloat16."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO, SHARED_CLIPS, i3d_weights_or_skip
from realtime.accel import device as dev
from support.clip_labels import largest_difference

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not dev._detected_cpu_bf16()[0], reason="this CPU has no native bfloat16"),
]


@pytest.mark.skipif(not SHARED_CLIPS.is_dir(), reason=f"real clips not found at {SHARED_CLIPS}")
def test_i3d_in_bfloat16_keeps_every_label_of_float32():
    i3d_weights_or_skip()
    worst = largest_difference(SHARED_CLIPS, ["model.precision=float32"], ["model.precision=bfloat16"])
    assert worst <= 0.02, worst


def test_a_run_says_which_precision_auto_chose_and_why(tiny_model, make_video):
    video = make_video(frames=40)
    env = {k: v for k, v in os.environ.items() if k != dev.CPU_BF16_ENV}   # the CPU's own answer
    r = subprocess.run([sys.executable, "-m", "realtime", "classify", str(video), "--model", str(tiny_model),
                        "--log-level", "info"], capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={**env, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    assert "dtype auto on cpu: bfloat16 (the CPU has" in r.stderr, r.stderr[-2000:]
