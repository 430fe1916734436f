"""The default I3D on the four shared clips under two settings: same labels, how close."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from realtime.config import load_config
from realtime.tools.classify import classify_file

CLIPS = ["abseiling.mp4", "arm_wrestling.mp4", "flipping_pancake.mkv", "shooting_basketball.avi"]


def largest_difference(clips_dir: Path, reference: Sequence[str], other: Sequence[str]) -> float:
    """Classify every clip of :data:`CLIPS` with ``--set`` overrides ``reference`` and ``other``
    (on top of the default I3D); assert both give each clip the same top-1 label and return the
    largest difference in a clip's mean probability."""
    worst = 0.0
    for clip in CLIPS:
        results = []
        for overrides in (reference, other):
            config = load_config(overrides=["model.name=i3d-kinetics400", *overrides])
            results.append(classify_file(str(clips_dir / clip), config, stride=2.0, progress=False))
        ref, got = results
        assert ref.top_k(1)[0]["label"] == got.top_k(1)[0]["label"], (clip, ref.top_k(3), got.top_k(3))
        worst = max(worst, float(np.abs(ref.mean_probs - got.mean_probs).max()))
    return worst
