"""Which frames form a window: chosen by timestamps, not by frame count.

A model declares ``num_frames`` and the time ``window_seconds`` its training
clips spanned (VideoMAE-Kinetics: 16 frames taken every 4th frame of 30 fps
video, 16 * 4 / 30 = 2.13 s). Whatever the camera's frame rate, the window
holds ``num_frames`` frames, one per ``window_seconds / num_frames`` interval,
ending at the window's last frame. Pure functions: no threads, no I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Optional, Sequence

from realtime.core.types import FrameMeta


@dataclass(frozen=True, slots=True)
class WindowSpec:
    num_frames: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {self.window_seconds}")

    @property
    def interval(self) -> float:
        """Time between two sampled frames."""
        return self.window_seconds / self.num_frames

    def targets(self, end_ts: float) -> list[float]:
        """Sampling instants, oldest first, the last one at ``end_ts``."""
        n, dt = self.num_frames, self.interval
        return [end_ts - (n - 1 - i) * dt for i in range(n)]


def select_window(metas: Sequence[FrameMeta], spec: WindowSpec, end: int | None = None,
                  tolerance: float = 0.5) -> Optional[list[int]]:
    """Positions in ``metas`` (oldest first, increasing ``ts``) forming the window
    that ends at position ``end`` (default: the newest frame).

    Each target instant takes the nearest frame (ties go to the older one). The
    window is ready only if the held frames reach back to the first target,
    within ``tolerance`` sampling intervals; otherwise None. When frames are
    sparser than the sampling interval (a slow camera), a frame may be repeated.
    """
    if not metas:
        return None
    if end is None:
        end = len(metas) - 1
    ts = [m.ts for m in metas[: end + 1]]
    targets = spec.targets(ts[-1])
    if ts[0] > targets[0] + tolerance * spec.interval:
        return None
    positions = []
    for t in targets:
        j = bisect.bisect_left(ts, t)
        if j == 0:
            positions.append(0)
        elif j >= len(ts):
            positions.append(len(ts) - 1)
        else:
            positions.append(j if ts[j] - t < t - ts[j - 1] else j - 1)
    return positions


def first_window_due(first_ts: float, spec: WindowSpec) -> float:
    """When a file read ``fast`` (``Schedule.EVERY``) is due its first window: at the first frame
    that completes a whole window after the frame at ``first_ts``."""
    return first_ts + (spec.num_frames - 1) * spec.interval - 1e-6


def next_window_due(due: float, end_ts: float, stride: float) -> float:
    """After the window due at ``due`` was taken ending at ``end_ts``: the next one is due one
    ``stride`` on (anchored, so windows come every stride on average even when the stride is not
    a whole number of frames), and past ``end_ts`` when frames are further apart than the stride
    (else the same frame would be due again)."""
    due += stride
    if due <= end_ts:
        due += (int((end_ts - due) // stride) + 1) * stride
    return due


def first_due(metas: Sequence[FrameMeta], due_ts: float) -> Optional[int]:
    """Position of the oldest frame with ``ts >= due_ts`` (None if none yet)."""
    j = bisect.bisect_left([m.ts for m in metas], due_ts)
    return j if j < len(metas) else None


class SampleGrid:
    """Which frames of a live stream a window can ever sample: the first frame at or after each
    point of a grid ``interval`` apart, anchored at the first frame kept.

    A 30 fps camera feeding a model that samples every 4th frame (VideoMAE-Kinetics: 16 frames
    over 2.13 s) needs only one frame in four prepared and stored; windows then end on kept
    frames, so every window samples the same grid and nothing is lost. A frame up to
    ``early * interval`` before a grid point counts for it (cameras jitter). After a pause the
    grid continues from the next point after the frame that ended it. Pure: no threads, no I/O.
    """

    def __init__(self, interval: float, early: float = 0.2) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        if not 0 <= early < 1:
            raise ValueError(f"early must be in [0, 1), got {early}")
        self.interval = float(interval)
        self.early = float(early) * self.interval
        self._anchor: Optional[float] = None
        self._next = 0.0

    def keep(self, ts: float) -> bool:
        """Whether the frame at ``ts`` (non-decreasing) is kept; call once per frame."""
        if self._anchor is None:
            self._anchor = ts
        elif ts < self._next - self.early:
            return False
        points = int((ts + self.early - self._anchor) // self.interval) + 1
        self._next = self._anchor + points * self.interval
        return True

    def reset(self) -> None:
        """Start a new grid at the next frame (after a gap or a reconnect)."""
        self._anchor = None


class EveryWindows:
    """The windows a file read ``fast`` gets, planned frame by frame: one ending every ``stride``
    seconds of media time from the first frame that completes a window, then one last window
    over the frames after the last one. The same choices the inference worker makes for a file
    (``Schedule.EVERY``), without a ring or threads, for jobs that decode a file themselves
    (``realtime index``). Pure: feed timestamps, get frame indices.

    ``add(ts)`` takes the next frame's timestamp (increasing) and returns the frame indices of
    the window that ends on it, or None; ``finish()`` returns the last window, or None.
    ``oldest_needed()``: frames before this index are never sampled again.
    """

    def __init__(self, spec: WindowSpec, stride: float) -> None:
        if stride <= 0:
            raise ValueError(f"stride must be > 0, got {stride}")
        self.spec = spec
        self.stride = float(stride)
        self._ts: list[float] = []
        self._first = 0                   # index of _ts[0]
        self._next_due: Optional[float] = None
        self._last_end = -1
        self.windows = 0

    def add(self, ts: float) -> Optional[list[int]]:
        self._ts.append(float(ts))
        spec = self.spec
        if self._next_due is None:
            self._next_due = first_window_due(self._ts[0], spec)
        if self._ts[-1] < self._next_due:
            return None
        return self._take(len(self._ts) - 1, tolerance=0.5)

    def finish(self) -> Optional[list[int]]:
        if not self._ts or self._first + len(self._ts) - 1 <= self._last_end:
            return None
        return self._take(len(self._ts) - 1, tolerance=float("inf"))

    def oldest_needed(self) -> int:
        return self._first

    def _take(self, end: int, tolerance: float) -> Optional[list[int]]:
        metas = [_Stamp(t) for t in self._ts]
        positions = select_window(metas, self.spec, end=end, tolerance=tolerance)
        if positions is None:
            return None
        end_ts = self._ts[end]
        self._last_end = self._first + end
        self.windows += 1
        assert self._next_due is not None
        self._next_due = next_window_due(self._next_due, end_ts, self.stride)
        # Frames older than both the next window's first sample and the first sample of a last
        # window ending on the newest frame are let go (one older frame stays: with frames
        # sparser than the sampling it may still be the nearest).
        first = self._first
        horizon = min(self._next_due, end_ts) - (self.spec.num_frames - 0.5) * self.spec.interval
        drop = min(bisect.bisect_left(self._ts, horizon) - 1, len(self._ts) - 1)
        if drop > 0:
            del self._ts[:drop]
            self._first += drop
        return [first + p for p in positions]


@dataclass(frozen=True, slots=True)
class _Stamp:
    ts: float
