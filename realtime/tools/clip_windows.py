"""Windows taken from a video file without holding the video: spread evenly over its length.

For offline jobs that need a few model-ready windows of a clip (``realtime bench --engine``,
``realtime models quantize``): only the frames the windows sample are decoded and prepared
(:func:`realtime.core.preprocess.prepare_frame`); the others are skipped with ``grab()``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from realtime.core.errors import SourceError
from realtime.core.preprocess import prepare_frame
from realtime.core.types import DEFAULT_FPS, InputSpec


def frame_step(window_seconds: float, num_frames: int, fps: float) -> int:
    """Source frames between two sampled frames of a window spanning ``window_seconds``."""
    return max(1, round(window_seconds * fps / max(1, num_frames)))


def window_starts(total: int, span: int, count: int, offset: float = 0.0) -> list[int]:
    """``count`` first-frame indices of ``span``-frame windows spread evenly over ``total`` frames;
    ``offset`` (0..1) shifts them by that fraction of the spacing (another set of windows)."""
    last = max(0, total - span)
    if count <= 1:
        return [min(last, round(offset * last))]
    spacing = last / count
    return sorted({min(last, round((i + offset) * spacing)) for i in range(count)})


def read_windows(path: str | Path, spec: InputSpec, num_frames: int, window_seconds: float, count: int,
                 offset: float = 0.0) -> np.ndarray:
    """Up to ``count`` windows (k, num_frames, H, W, 3) uint8 RGB of the video at ``path``, frames
    sampled as the pipeline samples them; a clip shorter than one window repeats its last frame."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise SourceError(f"{path}: cannot open the video")
        fps = cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        step = frame_step(window_seconds, num_frames, fps)
        span = (num_frames - 1) * step + 1
        if total <= 0:            # a container without a frame count: count once
            while cap.grab():
                total += 1
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        starts = window_starts(total, span, count, offset)
        wanted = {s + i * step for s in starts for i in range(num_frames)}
        frames: dict[int, np.ndarray] = {}
        index, last = 0, max(wanted)
        while index <= last and cap.grab():
            if index in wanted:
                ok, bgr = cap.retrieve()
                if ok:
                    frames[index] = prepare_frame(bgr, spec)
            index += 1
    finally:
        cap.release()
    if not frames:
        raise SourceError(f"{path}: no frame could be read")
    windows = []
    for s in starts:
        picked, previous = [], None
        for i in range(num_frames):
            previous = frames.get(s + i * step, previous)
            if previous is None:
                previous = frames[min(frames)]
            picked.append(previous)
        windows.append(np.stack(picked))
    return np.stack(windows)
