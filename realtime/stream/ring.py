"""FrameRing: a fixed-capacity, preallocated ring of preprocessed frames.

The capture thread writes, the inference worker reads windows. Writes copy into
preallocated slots (no allocation per frame); when full, the oldest frame is
overwritten (``drop_oldest``, for live sources) or the writer waits until the
reader releases frames (``wait``, for offline files where every window counts).
Reads take a consistent snapshot under the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from realtime.core.types import DEFAULT_FPS, BufferPolicy, FrameMeta


def ring_capacity(span_seconds: float, fps: float = DEFAULT_FPS) -> int:
    """Frames a ring needs to hold ``span_seconds`` (one window plus one stride) at ``fps``,
    with a quarter more and 8 frames of margin for jitter in the frame times."""
    return int(span_seconds * fps * 1.25) + 8


@dataclass(frozen=True, slots=True)
class RingStats:
    written: int          # frames pushed since creation
    overwritten: int      # frames overwritten before any reader released them
    size: int             # frames currently held
    capacity: int
    gaps: int             # times the ring was reset after a source gap


class FrameRing:
    """Bounded ring buffer of (image, FrameMeta) with overwrite-oldest semantics."""

    def __init__(self, capacity: int, policy: BufferPolicy = BufferPolicy.DROP_OLDEST) -> None:
        if capacity < 2:
            raise ValueError(f"ring capacity must be >= 2, got {capacity}")
        self.capacity = capacity
        self.policy = BufferPolicy(policy)      # raises ValueError naming a bad one
        self._images: Optional[np.ndarray] = None   # (capacity, H, W, C), allocated on first push
        self._metas: list[Optional[FrameMeta]] = [None] * capacity
        self._head = 0          # slot of the next write
        self._size = 0
        self._written = 0
        self._overwritten = 0
        self._gaps = 0
        self._keep_from = -1    # frame index the reader still needs (WAIT policy)
        self._closed = False
        self._cond = threading.Condition(threading.Lock())
        # Called (outside the lock) after every push, reset and close: lets one
        # reader wait on many rings through a single Event.
        self.on_push: Optional[Callable[[], None]] = None
        # Called with the new capacity when the ring grows (a device ring that holds
        # the pixels for this ring's handles grows with it).
        self.on_grow: Optional[Callable[[int], None]] = None

    # ------------------------------------------------------------------ writer
    def push(self, image: np.ndarray, meta: FrameMeta, *, timeout: Optional[float] = None,
             should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Copy ``image`` into the ring. Returns False if it was not stored.

        With the WAIT policy a full ring blocks the writer until the reader
        releases the oldest frame, ``should_stop()`` turns true, or ``timeout``
        passes (then the frame is not stored and False is returned).
        """
        stored = self._push(image, meta, timeout, should_stop)
        self._notify()
        return stored

    def _notify(self) -> None:
        if self.on_push is not None:
            self.on_push()

    def _push(self, image: np.ndarray, meta: FrameMeta, timeout: Optional[float],
              should_stop: Callable[[], bool]) -> bool:
        with self._cond:
            if self._images is None or self._images.shape[1:] != image.shape \
                    or self._images.dtype != image.dtype:
                # First frame, or the source changed resolution after a reconnect.
                self._images = np.empty((self.capacity, *image.shape), dtype=image.dtype)
                self._metas = [None] * self.capacity
                self._head = self._size = 0
            if self.policy is BufferPolicy.WAIT:
                if not self._wait_for_room(timeout, should_stop):
                    return False
            if self._size == self.capacity:
                oldest = self._metas[self._head]
                if oldest is not None and oldest.index >= self._keep_from:
                    self._overwritten += 1
            else:
                self._size += 1
            self._images[self._head] = image
            self._metas[self._head] = meta
            self._head = (self._head + 1) % self.capacity
            self._written += 1
            self._cond.notify_all()
            return True

    def _wait_for_room(self, timeout: Optional[float], should_stop: Callable[[], bool]) -> bool:
        step = 0.05 if timeout is None else min(0.05, timeout)
        waited = 0.0
        while self._size == self.capacity:
            oldest = self._metas[self._head]
            if oldest is None or oldest.index < self._keep_from or self._closed:
                return True
            if should_stop() or (timeout is not None and waited >= timeout):
                return False
            self._cond.wait(step)
            waited += step
        return True

    def ensure_capacity(self, capacity: int) -> None:
        """Grow to hold at least ``capacity`` frames, keeping the frames held (never shrinks)."""
        with self._cond:
            if capacity <= self.capacity:
                return
            if self.on_grow is not None:
                self.on_grow(capacity)
            ordered = self._ordered_locked()
            if self._images is not None:
                start = (self._head - self._size) % self.capacity
                slots = [(start + i) % self.capacity for i in range(self._size)]
                images = np.empty((capacity, *self._images.shape[1:]), self._images.dtype)
                images[: self._size] = self._images[slots]
                self._images = images
            self._metas = list(ordered) + [None] * (capacity - len(ordered))
            self._head = self._size % capacity
            self.capacity = capacity
            self._cond.notify_all()

    def reset(self) -> None:
        """Forget every frame (after a source gap: a window must never span it)."""
        with self._cond:
            self._metas = [None] * self.capacity
            self._head = self._size = 0
            self._gaps += 1
            self._cond.notify_all()
        self._notify()

    def close(self) -> None:
        """Mark the end of the stream; readers waiting for frames wake up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._notify()

    # ------------------------------------------------------------------ reader
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def gaps(self) -> int:
        """Times the ring was reset after a source gap (read without the lock)."""
        return self._gaps

    def release_before(self, index: int) -> None:
        """Frames with an index below ``index`` are no longer needed by the reader."""
        with self._cond:
            if index > self._keep_from:
                self._keep_from = index
                self._cond.notify_all()

    def release_older_than(self, ts: float) -> None:
        """Frames with a timestamp below ``ts`` are no longer needed by the reader."""
        with self._cond:
            keep = next((m.index for m in self._ordered_locked() if m.ts >= ts), None)
            if keep is None:
                newest = self._newest_locked()
                keep = -1 if newest is None else newest.index + 1
            if keep > self._keep_from:
                self._keep_from = keep
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (evaluated under the lock) holds, or timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def newest(self) -> Optional[FrameMeta]:
        with self._cond:
            return self._newest_locked()

    def _newest_locked(self) -> Optional[FrameMeta]:
        if self._size == 0:
            return None
        return self._metas[(self._head - 1) % self.capacity]

    def metas(self) -> list[FrameMeta]:
        """The frames held now, oldest first."""
        with self._cond:
            return self._ordered_locked()

    def _ordered_locked(self) -> list[FrameMeta]:
        start = (self._head - self._size) % self.capacity
        return [self._metas[(start + i) % self.capacity] for i in range(self._size)]  # type: ignore[misc]

    def gather(self, select: Callable[[Sequence[FrameMeta]], Optional[Sequence[int]]],
               out: Optional[np.ndarray] = None) -> Optional[tuple[np.ndarray, tuple[FrameMeta, ...]]]:
        """Copy a window out atomically.

        ``select`` gets the held frames (oldest first) and returns positions into
        that list (or None when no window is ready). Returns (frames, metas).
        """
        with self._cond:
            ordered = self._ordered_locked()
            positions = select(ordered)
            if positions is None or self._images is None:
                return None
            start = (self._head - self._size) % self.capacity
            slots = [(start + p) % self.capacity for p in positions]
            if out is None:
                out = np.empty((len(slots), *self._images.shape[1:]), self._images.dtype)
            np.take(self._images, slots, axis=0, out=out)
            return out, tuple(ordered[p] for p in positions)

    def stats(self) -> RingStats:
        with self._cond:
            return RingStats(self._written, self._overwritten, self._size, self.capacity, self._gaps)
