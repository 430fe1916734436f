"""Decode one video into model-ready windows, as ``realtime classify --timeline`` would take them.

Runs where the model is not (a decode worker process, a Ray task): it needs OpenCV and numpy,
never torch. Frames are read by the same file source the pipeline uses (same timestamps, same
errors) and windows are planned by :class:`~realtime.core.sampling.EveryWindows`, the pipeline's
own schedule for a file read fast, so the windows and their times are the pipeline's. Each
window also carries a small JPEG of the frame at its middle (the thumbnail a segment shows).

:func:`decode_video` yields the video's facts first, then chunks of up to ``chunk`` windows, then
the end (with a note when the file ended well before its header's frame count). Memory stays
bounded: only the frames the next windows can still sample are held.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import cv2
import numpy as np

from realtime.core.errors import SourceError
from realtime.core.preprocess import prepare_frame
from realtime.core.sampling import EveryWindows, WindowSpec
from realtime.core.types import InputSpec
from realtime.gallery.store import VideoFacts

THUMB_WIDTH = 160
_HELD_WIDTH = 320          # frames are kept this wide for thumbnails (cheap to make, sharp enough)


@dataclass(frozen=True)
class DecodePlan:
    """What a decoder needs to know about the model: frame preparation, window shape, stride."""

    spec: InputSpec
    num_frames: int
    window_seconds: float
    stride: float
    chunk: int = 8


@dataclass
class WindowChunk:
    clips: np.ndarray               # (k, T, H, W, 3) uint8 RGB
    starts: list[float]             # media time of each window's first and last frame
    ends: list[float]
    thumbs: list[Optional[bytes]]   # JPEG of each window's middle frame


@dataclass(frozen=True)
class VideoEnd:
    frames: int                     # frames read
    note: Optional[str] = None      # the file ended early (truncated), if it did


Decoded = Union[VideoFacts, WindowChunk, VideoEnd]


def video_facts(path: str) -> VideoFacts:
    """Duration, frame rate, size and frame count from the container (None where unknown)."""
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return VideoFacts(None, None, None, None, None)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or None
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0) or None
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0) or None
    finally:
        cap.release()
    duration = frames / fps if frames and fps else None
    return VideoFacts(duration, fps, width, height, frames)


def jpeg(bgr: np.ndarray, width: int = THUMB_WIDTH) -> Optional[bytes]:
    h, w = bgr.shape[:2]
    small = cv2.resize(bgr, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return data.tobytes() if ok else None


def decode_video(path: str, plan: DecodePlan) -> Iterator[Decoded]:
    """Facts, then window chunks, then the end; raises SourceError for a file that cannot be read."""
    from realtime.sources.opencv import open_source

    yield video_facts(path)
    source = open_source(path)
    source.open()
    planner = EveryWindows(WindowSpec(plan.num_frames, plan.window_seconds), plan.stride)
    crop_h, crop_w = plan.spec.crop
    held: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}   # index -> (ts, prepared, small BGR)
    pending: list[list[int]] = []
    read = 0
    try:
        while True:
            got = source.read()
            if got is None:
                window = planner.finish()
                if window is not None:
                    pending.append(window)
                break
            bgr, ts = got
            ts = float(ts if ts is not None else read)
            h, w = bgr.shape[:2]
            small = cv2.resize(bgr, (_HELD_WIDTH, max(1, round(h * _HELD_WIDTH / w))), interpolation=cv2.INTER_LINEAR) \
                if w > _HELD_WIDTH else bgr
            held[read] = (ts, prepare_frame(bgr, plan.spec), small)
            read += 1
            window = planner.add(ts)
            if window is not None:
                pending.append(window)
            if len(pending) >= plan.chunk:
                yield _chunk(pending, held, crop_h, crop_w)
                pending = []
            oldest = min([planner.oldest_needed()] + [p[0] for p in pending])
            for index in [i for i in held if i < oldest]:
                del held[index]
        if read == 0:
            raise SourceError(f"no frame could be decoded from {path}")
        if pending:
            yield _chunk(pending, held, crop_h, crop_w)
        yield VideoEnd(read, source.end_note())
    finally:
        source.close()


def _chunk(pending: list[list[int]], held: dict[int, tuple[float, np.ndarray, np.ndarray]],
           crop_h: int, crop_w: int) -> WindowChunk:
    clips = np.empty((len(pending), len(pending[0]), crop_h, crop_w, 3), np.uint8)
    starts, ends, thumbs = [], [], []
    for k, indices in enumerate(pending):
        for i, index in enumerate(indices):
            clips[k, i] = held[index][1]
        start, end = held[indices[0]][0], held[indices[-1]][0]
        starts.append(start)
        ends.append(end)
        # The thumbnail: the held frame nearest the window's middle in time.
        span = [i for i in held if indices[0] <= i <= indices[-1]]
        times = [held[i][0] for i in span]
        j = min(bisect.bisect_left(times, (start + end) / 2), len(span) - 1)
        if j > 0 and abs(times[j - 1] - (start + end) / 2) <= abs(times[j] - (start + end) / 2):
            j -= 1
        thumbs.append(jpeg(held[span[j]][2]))
    return WindowChunk(clips, starts, ends, thumbs)
