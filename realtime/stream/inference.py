"""InferenceWorker: classifies the newest ready window of each stream, batched.

Live streams are scheduled "newest first": whenever the worker is free it takes
the window ending at the newest frame (if at least ``stride`` has passed since
the last one), so a slow model skips stale windows instead of building a
backlog, and a frame's age when classified stays within about one inference
time. Files paced ``fast`` are scheduled "every": windows end every ``stride``
seconds of media time, and the ring's WAIT policy holds capture back so none is
skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from realtime.accel.graph_gate import CUDA_GRAPH_CAPTURE_LOCK
from realtime.stream.ring import FrameRing
from realtime.stream.windows import BatchClassifier, HostWindowStore, WindowStore
from realtime.threads import OwnedLock, WorkerThread
from realtime.core.sampling import WindowSpec, first_due, first_window_due, next_window_due, select_window
from realtime.core.smoothing import top_indices
from realtime.core.types import FrameMeta, LabelScore, Prediction, Schedule

log = logging.getLogger(__name__)


PHASES = ("collect", "wait", "gather", "model", "emit")
"""What the inference thread's time goes to: choosing windows in the host rings (``collect``),
letting a partial batch wait for more streams (``wait``), assembling windows on the device
(``gather``), the model with the copy of its output to the host (``model``), and turning
probabilities into predictions, smoothing, events and sink queues (``emit``)."""


@dataclass
class StreamSlot:
    """One stream as the inference worker sees it: its ring, where its frames live and its schedule."""

    name: str
    ring: FrameRing
    spec: WindowSpec
    stride: float
    schedule: Schedule = Schedule.NEWEST
    next_due: Optional[float] = None        # stream time the next window must end at or after
    last_end_index: int = -1                # newest frame index already classified
    gaps_seen: int = 0
    windows: int = 0
    done: bool = False
    store: WindowStore = field(default_factory=HostWindowStore)   # the pixels (host) or handles (device)
    on_reset: list[Callable[[], None]] = field(default_factory=list)
    window_epoch: int = 0                   # the ring's gap count when the last window was taken
    # Held while a prediction of this stream is checked and published, and while the pipeline
    # publishes its status: a window from before a gap is never published after the "lost".
    # Taken with no frame ring lock or capture gate held, and neither is taken under it.
    emit_lock: OwnedLock = field(default_factory=OwnedLock)

    def _select(self, metas: Sequence[FrameMeta]) -> Optional[list[int]]:
        if not metas:
            return None
        if self.ring.closed and self.windows == 0:
            # A stream that ended before a full window: classify what there is.
            return select_window(metas, self.spec, tolerance=float("inf"))
        if self.schedule is Schedule.EVERY:
            if self.next_due is None:
                # The first frame that completes a whole window.
                self.next_due = first_window_due(metas[0].ts, self.spec)
            end = first_due(metas, self.next_due)
            if end is None:
                return self._tail(metas)
            return select_window(metas, self.spec, end=end)
        newest = metas[-1]
        if self.next_due is not None and newest.ts < self.next_due:
            return self._tail(metas)
        return select_window(metas, self.spec)

    def _tail(self, metas: Sequence[FrameMeta]) -> Optional[list[int]]:
        """After the end of a file, one last window covers frames not yet classified."""
        if self.ring.closed and metas[-1].index > self.last_end_index:
            return select_window(metas, self.spec, tolerance=float("inf"))
        return None

    def due(self) -> bool:
        """Whether :meth:`take` may find a window now, checked without copying anything: False
        only for a live stream whose newest frame is older than its next window's end (or that
        holds no frame). Capture threads call it after each frame to wake the inference thread
        only when a stream becomes due, not 30 times a second per camera."""
        if (self.schedule is not Schedule.NEWEST or self.next_due is None or self.ring.closed
                or self.ring.gaps != self.gaps_seen):
            return True
        return self.overdue()

    def overdue(self) -> bool:
        """A live stream's next window is due but not taken yet (the worker is busy with others):
        with ``window.sampled_frames_only`` its capture thread then keeps frames off the sampling
        grid too, so the late window ends at the newest frame."""
        if self.schedule is not Schedule.NEWEST or self.next_due is None:
            return False
        newest = self.ring.newest()
        return newest is not None and newest.ts >= self.next_due

    def take(self, out: np.ndarray) -> Optional[tuple[FrameMeta, ...]]:
        """Copy the next due window into ``out``; its frame metadata, or None."""
        if not self.due():
            return None
        gaps = self.ring.gaps
        if gaps != self.gaps_seen:
            self.gaps_seen = gaps
            self.next_due = None
            for callback in self.on_reset:
                callback()
        self.window_epoch = gaps
        got = self.ring.gather(self._select, out=out)
        if got is None:
            return None
        _, metas = got
        if metas[-1].index <= self.last_end_index and self.windows:
            return None
        self.windows += 1
        self.last_end_index = metas[-1].index
        end = metas[-1].ts
        if self.next_due is not None and (self.schedule is Schedule.EVERY or end - self.next_due < self.stride):
            # Anchored: no drift when the stride is not a whole number of the frames held (a live
            # camera's sampled frames come one per sampling interval, 0.133 s for VideoMAE); and
            # never the same frame due again (a paced file would wait on it forever).
            self.next_due = next_window_due(self.next_due, end, self.stride)
        else:
            # The first window, or a live stream the worker fell behind on: start afresh here.
            self.next_due = end + self.stride
        # Frames older than the next window's first sample are never needed again.
        spec = self.spec
        self.ring.release_older_than(self.next_due - (spec.num_frames - 0.5) * spec.interval)
        return metas

    def stale(self) -> bool:
        """The source had a gap (lost, reconnected) after the last window was taken."""
        return self.ring.gaps != self.window_epoch

    def finished(self) -> bool:
        """The stream ended and its last frames have been classified."""
        if not self.ring.closed:
            return False
        newest = self.ring.newest()
        return newest is None or newest.index <= self.last_end_index


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(labels[i], float(probs[i])) for i in top_indices(probs, k))


class InferenceWorker:
    """One thread running ``classifier`` over the ready windows of all streams.

    ``classifier`` is the host or the device path (:func:`realtime.stream.windows.batch_classifier`):
    the slots' stores must be ones it made (:meth:`~realtime.stream.windows.BatchClassifier.new_store`)."""

    def __init__(self, slots: Sequence[StreamSlot], classifier: BatchClassifier, stop: threading.Event,
                 wake: threading.Event, on_prediction: Callable[[Prediction, np.ndarray], None], *,
                 top_k: int = 5, max_batch: int = 8, max_wait: float = 0.0,
                 idle_timeout: float = 0.1, after_step: Optional[Callable[[], None]] = None) -> None:
        self.slots = list(slots)
        self.classifier = classifier
        self.stop_event = stop
        self.wake = wake
        self.on_prediction = on_prediction
        self.top_k = top_k
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)   # seconds a partial batch may wait for more streams
        self.idle_timeout = idle_timeout
        self.after_step = after_step        # called on this thread between batches
        self.stale_windows = 0              # classified, then dropped: the source had a gap since
        self.error: Optional[BaseException] = None
        self.batches = 0
        self.windows = 0
        self.polls = 0          # times step() looked for ready windows
        self._rr = 0
        self._buffer: Optional[np.ndarray] = None
        # Seconds spent in each phase of step(), summed (``realtime bench --streams`` reports them).
        self.phase_seconds = dict.fromkeys(PHASES, 0.0)
        self.longest_forward = 0.0                  # seconds of the slowest batch so far
        self._forward_since: Optional[float] = None  # monotonic start of the batch in the model
        self._worker = WorkerThread(self._run, "inference")
        self.done = threading.Event()          # set when the loop has ended, for whatever reason

    def start(self) -> None:
        self._worker.start()

    def join(self, timeout: float) -> bool:
        return self._worker.join(timeout)

    @property
    def alive(self) -> bool:
        return self._worker.alive

    def cpu_seconds(self) -> Optional[float]:
        """CPU time the inference thread has used so far (see :meth:`WorkerThread.cpu_seconds`)."""
        return self._worker.cpu_seconds()

    def in_forward(self) -> Optional[float]:
        """Seconds the batch now in the model has been running, or None between batches."""
        since = self._forward_since
        return None if since is None else time.monotonic() - since

    def _batch_buffer(self) -> np.ndarray:
        """What the FrameRings hold for a batch of windows (pixels or device handles)."""
        if self._buffer is None:
            self._buffer = self.classifier.entries(self.max_batch, self.slots[0].spec.num_frames)
        return self._buffer

    def _classify(self, buffer: np.ndarray, taken: list) -> tuple[np.ndarray, list]:
        """Probabilities for the windows in ``taken`` (and the windows kept: the device path skips
        a window with a frame overwritten since its handles were taken)."""
        assert not any(slot.emit_lock.held() for slot, _ in taken), "lock order: no emit_lock around the model"
        result = self.classifier.classify(buffer, [slot.store for slot, _ in taken])
        self.phase_seconds["gather"] += result.gather_seconds
        self.phase_seconds["model"] += result.model_seconds
        return result.probs, [taken[i] for i in result.kept]

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.done.set()

    def _loop(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.wake.clear()
                stepped = self.step()
                if self.after_step is not None:
                    self.after_step()
                if not stepped:
                    if all(slot.finished() for slot in self.slots):
                        log.info("all streams ended; inference done")
                        return
                    self.wake.wait(self.idle_timeout)
        except BaseException as exc:
            self.error = exc
            log.error("inference failed: %s", exc)
            self.stop_event.set()

    def _collect(self, order: Sequence[StreamSlot], taken: list, buffer: np.ndarray) -> bool:
        """Add the due windows of streams not yet in ``taken``; True if any was added."""
        added = False
        busy = {id(slot) for slot, _ in taken}
        for slot in order:
            if len(taken) == self.max_batch:
                break
            if id(slot) in busy:
                continue
            metas = slot.take(buffer[len(taken)])
            if metas is not None:
                taken.append((slot, metas))
                added = True
        return added

    def step(self) -> bool:
        """Classify one batch of ready windows. False when nothing was ready."""
        self.polls += 1
        buffer = self._batch_buffer()
        taken: list[tuple[StreamSlot, tuple[FrameMeta, ...]]] = []
        n = len(self.slots)
        order = [self.slots[(self._rr + i) % n] for i in range(n)]
        started = time.perf_counter()
        self._collect(order, taken, buffer)
        phases = self.phase_seconds
        phases["collect"] += time.perf_counter() - started
        if not taken:
            return False
        if self.max_wait > 0 and len(taken) < min(self.max_batch, n):
            # Dynamic batching: give other streams up to max_wait to fill the batch.
            waited_from = time.monotonic()
            deadline = waited_from + self.max_wait
            while len(taken) < min(self.max_batch, n) and not self.stop_event.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wake.clear()
                if not self._collect(order, taken, buffer):
                    self.wake.wait(remaining)
            phases["wait"] += time.monotonic() - waited_from
        self._rr = (self._rr + 1) % n   # rotate so no stream always waits when batches are full
        if self.stop_event.is_set():     # stopping: start no forward pass that stop() must wait for
            return False
        t0 = self._forward_since = time.monotonic()
        try:
            probs, taken = self._classify(buffer, taken)
        finally:
            self._forward_since = None
        done = time.monotonic()
        self.longest_forward = max(self.longest_forward, done - t0)
        infer_ms = (done - t0) * 1000.0
        self.batches += 1
        labels = self.classifier.labels
        for row, (slot, metas) in zip(probs, taken):
            newest, oldest = metas[-1], metas[0]
            pred = Prediction(
                stream=slot.name, window_start=oldest.wall, window_end=newest.wall,
                media_start=oldest.source_ts, media_end=newest.source_ts,
                top_k=top_k(row, labels, self.top_k), latency_ms=(done - newest.captured_at) * 1000.0,
                inference_ms=infer_ms, frame_indices=(oldest.index, newest.index))
            self.windows += 1
            assert not CUDA_GRAPH_CAPTURE_LOCK.held(), "lock order: the capture gate is not held while publishing"
            with slot.emit_lock:
                if slot.stale():
                    self.stale_windows += 1
                    continue
                self.on_prediction(pred, row)
        phases["emit"] += time.monotonic() - done
        return True
