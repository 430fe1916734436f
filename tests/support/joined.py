"""Join real clips into one video (one stream of several activities) with OpenCV."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


def _frames(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize so the frame covers ``size`` (w, h), then centre-crop to it."""
    w, h = size
    fh, fw = frame.shape[:2]
    scale = max(w / fw, h / fh)
    nw, nh = max(w, round(fw * scale)), max(h, round(fh * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - h) // 2, (nw - w) // 2
    return resized[top:top + h, left:left + w]


def join_clips(paths: Sequence[Path], out: Path, fps: float = 25.0,
               size: tuple[int, int] = (340, 256)) -> list[tuple[float, float]]:
    """Write ``paths`` one after another to ``out`` at ``fps`` (each clip resampled by time).

    Returns each clip's (start, end) time in the joined video, in seconds.
    """
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {out}")
    segments, t0, written = [], 0.0, 0
    for path in paths:
        frames, src_fps = _frames(path)
        duration = len(frames) / src_fps
        n = int(round(duration * fps))
        for i in range(n):
            writer.write(_fit(frames[min(len(frames) - 1, int(i * src_fps / fps))], size))
        written += n
        segments.append((t0, written / fps))
        t0 = written / fps
    writer.release()
    return segments
