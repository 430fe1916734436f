"""CaptureWorker: one thread per stream moving frames from a source into its ring.

It never waits for inference (live sources overwrite the oldest frame), paces
files in real time when asked (dropping frames when behind, as a camera would),
reconnects live sources with capped exponential backoff, and reports every
change of state as a ``StreamStatus`` event.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from realtime.core.errors import SourceError
from realtime.stream.ring import FrameRing, ring_capacity
from realtime.core.sampling import SampleGrid
from realtime.core.redact import redact_text
from realtime.sources import FrameSource
from realtime.threads import WorkerThread
from realtime.core.types import DEFAULT_FPS, STOPPED_DETAIL, FrameMeta, InputSpec, Pacing, StreamState, StreamStatus

log = logging.getLogger(__name__)



class Backoff:
    """Capped exponential backoff: initial, initial*factor, ... up to maximum."""

    def __init__(self, initial: float = 0.1, maximum: float = 2.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.attempt)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Pacer:
    """Delivers file frames at their media time, as a camera would.

    ``delay(media_ts, now)`` is how long to wait before delivering a frame
    (negative when late); a frame later than ``late_after`` seconds should be
    dropped. Pure: the caller owns the clock and the waiting.
    """

    def __init__(self, late_after: float) -> None:
        self.late_after = late_after
        self._origin: Optional[tuple[float, float]] = None   # (clock, media)

    def restart(self) -> None:
        self._origin = None

    def delay(self, media_ts: float, now: float) -> float:
        if self._origin is None:
            self._origin = (now, media_ts)
        clock0, media0 = self._origin
        return (clock0 + (media_ts - media0)) - now

    def is_late(self, delay: float) -> bool:
        return -delay > self.late_after


@dataclass
class CaptureStats:
    frames: int = 0            # frames read from the source
    delivered: int = 0         # frames written to the ring
    dropped_late: int = 0      # frames skipped because capture was behind real time
    unsampled: int = 0         # live frames no window can sample, neither prepared nor stored
    reconnects: int = 0
    gaps: int = 0


class CaptureWorker:
    """Reads ``source`` into ``ring`` on its own thread until stopped or the file ends."""

    def __init__(self, stream: str, source: FrameSource, ring: FrameRing, spec: InputSpec,
                 prepare: Callable[[np.ndarray, InputSpec], np.ndarray], stop: threading.Event,
                 on_status: Callable[[StreamStatus], None], *, pace: Pacing = Pacing.REALTIME,
                 loop: bool = False, backoff: Optional[Backoff] = None, max_attempts: int = 0,
                 connect_attempts: int = 0,
                 gap_seconds: float = 1.0, span_seconds: float = 3.0,
                 on_frame: Optional[Callable[[str, np.ndarray, FrameMeta], None]] = None,
                 sample_interval: Optional[float] = None,
                 keep_when: Optional[Callable[[], bool]] = None) -> None:
        self.stream = stream
        self.source = source
        self.ring = ring
        self.spec = spec
        self.prepare = prepare
        self.stop_event = stop
        self.on_status = on_status
        self.pace = Pacing(pace)
        self.loop = loop
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts            # per outage, once frames have flowed; 0 = never
        self.connect_attempts = connect_attempts    # before the first frame; 0 = keep trying
        self._failures_before_frame = 0
        self.gap_seconds = gap_seconds
        self.span_seconds = span_seconds   # the ring must hold this much time of frames
        self.on_frame = on_frame           # raw BGR frames for sinks that draw on video
        # Live sources: only the frames a window can sample (one per sampling interval) are
        # prepared and stored; None prepares every frame. ``keep_when()`` True keeps a frame off
        # the grid too: the inference worker is late for a due window, which then ends at the
        # newest frame instead of a grid frame up to one sampling interval older.
        self._grid = SampleGrid(sample_interval) if sample_interval else None
        self._keep_when = keep_when
        self.stats = CaptureStats()
        self.error: Optional[BaseException] = None
        # A stalled camera can hold this thread inside a C call (open or read) for up to its
        # timeout; it owns nothing that must be flushed, so shutdown never waits longer than
        # the join timeout (WorkerThread is a daemon).
        self._worker = WorkerThread(self._run, f"capture-{stream}")
        self._pacer: Optional[Pacer] = None
        self._loop_offset = 0.0
        self._last_media = 0.0
        self._last_ts: Optional[float] = None
        self._ready_at: Optional[float] = None   # when this thread last finished handing a frame on
        self._index = 0
        self._recent: collections.deque[float] = collections.deque(maxlen=32)

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        self._worker.start()

    def join(self, timeout: float) -> bool:
        return self._worker.join(timeout)

    @property
    def alive(self) -> bool:
        return self._worker.alive

    def cpu_seconds(self) -> Optional[float]:
        """CPU time this capture thread has used so far (see :meth:`WorkerThread.cpu_seconds`)."""
        return self._worker.cpu_seconds()

    # ---------------------------------------------------------------- thread
    def _status(self, state: StreamState, detail: str = "", attempt: int = 0,
                retry_in: Optional[float] = None) -> None:
        ring = self.ring.stats()
        counters = {"frames": self.stats.frames, "delivered": self.stats.delivered,
                    "unsampled": self.stats.unsampled,
                    "dropped_late": self.stats.dropped_late, "ring_overwritten": ring.overwritten,
                    "reconnects": self.stats.reconnects}
        event = StreamStatus(self.stream, state, self.source.info.name, redact_text(detail),
                             attempt, retry_in, time.time(), counters)
        # An error is raised to the pipeline's owner, who reports it: no second copy here.
        level = (logging.INFO if state in (StreamState.CONNECTED, StreamState.RECOVERED, StreamState.ENDED)
                 else logging.DEBUG if state is StreamState.ERROR else logging.WARNING)
        log.log(level, "%s %s %s%s", self.stream, state, self.source.info.name,
                f": {event.detail}" if event.detail else "")
        try:
            self.on_status(event)
        except Exception:  # a sink problem must never stop capture
            log.exception("status callback failed")

    def _run(self) -> None:
        try:
            self._capture_loop()
        except BaseException as exc:  # recorded for the pipeline, which re-raises it
            self.error = exc
            self._status(StreamState.ERROR, str(exc))
            self.stop_event.set()
        finally:
            self.source.close()
            self.ring.close()

    def _capture_loop(self) -> None:
        info = self.source.info
        if not self._connect(first=True):
            return
        if not info.live and self.pace is Pacing.REALTIME:
            fps = self.source.fps or DEFAULT_FPS
            self._pacer = Pacer(late_after=1.5 / fps)
        while not self.stop_event.is_set():
            try:
                item = self.source.read()
            except SourceError as exc:
                if not info.live:
                    raise
                self._gap()         # first: no window from before it is published after "lost"
                self._status(StreamState.LOST, str(exc))
                self._count_failure(exc)
                if not self._connect(first=False):
                    return
                continue
            if item is None:  # end of file
                if self.loop and not self.stop_event.is_set():
                    self._loop_offset = self._last_media + 1.0 / (self.source.fps or DEFAULT_FPS)
                    self.source.open()
                    if self._pacer is not None:
                        self._pacer.restart()
                    continue
                note_of = getattr(self.source, "end_note", None)
                note = note_of() if callable(note_of) else None
                if note:
                    log.warning("%s", note)
                self._status(StreamState.ENDED, f"{self.stats.frames} frames read" + (f"; {note}" if note else ""))
                return
            self._deliver(*item)
        self._status(StreamState.ENDED, STOPPED_DETAIL)

    def _connect(self, first: bool) -> bool:
        """Open the source, retrying live ones with backoff. False when stopped."""
        info = self.source.info
        self.backoff.reset()
        while not self.stop_event.is_set():
            try:
                self.source.open()
            except SourceError as exc:
                if not info.live:
                    raise
                attempt = self.backoff.attempt + 1
                if self.stats.frames == 0:
                    self._count_failure(exc)
                elif self.max_attempts and attempt > self.max_attempts:
                    raise SourceError(f"gave up on {info.name} after {self.max_attempts} "
                                      f"attempts: {exc}") from exc
                delay = self.backoff.next_delay()
                self._status(StreamState.RECONNECTING, str(exc), attempt=attempt, retry_in=delay)
                self.stop_event.wait(delay)
                continue
            self._size_ring()
            if first:
                self._status(StreamState.CONNECTED, self._describe())
            else:
                self.stats.reconnects += 1
                self._status(StreamState.RECOVERED, self._describe())
            return True
        return False

    def _count_failure(self, exc: SourceError) -> None:
        """A live source that never delivered a frame fails after ``connect_attempts`` tries:
        a wrong camera index or URL must not retry forever."""
        if self.stats.frames:
            return
        self._failures_before_frame += 1
        if self.connect_attempts and self._failures_before_frame >= self.connect_attempts:
            n = self._failures_before_frame
            raise SourceError(f"{exc} (gave up after {n} attempt{'s' if n > 1 else ''}; "
                              f"no frame was ever received)") from exc

    def _size_ring(self, observed_fps: float = 0.0) -> None:
        """Hold one window plus one stride of frames (with a margin) at the source's rate.

        Cameras do not always deliver the rate they report, so the rate observed
        over the last frames counts too; the ring only ever grows.
        """
        fps = max(self.source.fps or DEFAULT_FPS, observed_fps)
        self.ring.ensure_capacity(ring_capacity(self.span_seconds, fps))

    def _describe(self) -> str:
        fps = self.source.fps
        return f"{fps:.2f} fps" if fps else "frame rate unknown"

    def _gap(self) -> None:
        """Frames before a gap must never share a window with frames after it."""
        self.stats.gaps += 1
        self._last_ts = None
        if self._grid is not None:
            self._grid.reset()
        self._recent.clear()
        self.ring.reset()

    def _deliver(self, bgr: np.ndarray, source_ts: Optional[float]) -> None:
        self.stats.frames += 1
        info = self.source.info
        if not info.live and source_ts is not None:
            self._last_media = source_ts + self._loop_offset
            media = self._last_media
            if self._pacer is not None:
                delay = self._pacer.delay(media, time.monotonic())
                if delay > 0:
                    if self.stop_event.wait(delay):
                        return
                elif self._pacer.is_late(delay):
                    self.stats.dropped_late += 1
                    return
        captured_at = time.monotonic()
        wall = time.time()
        ts = media if (not info.live and source_ts is not None) else captured_at
        if self._last_ts is not None and ts - self._last_ts > self.gap_seconds and info.live:
            # How long the source kept us waiting: since this thread was last ready to read.
            waited = captured_at - max(self._last_ts, self._ready_at or self._last_ts)
            if waited > self.gap_seconds:
                lost_for = ts - self._last_ts
                self._gap()
                self._status(StreamState.LOST, f"no frame for {lost_for:.2f} s")
                self._status(StreamState.RECOVERED, "frames flowing again")
            else:
                # The camera was fine; this thread was busy (e.g. a GPU ring preparing its first
                # frame behind other cameras'). The hole still must not fall inside a window.
                log.debug("%s: %.2f s between frames spent preparing the last one; window restarts",
                          self.stream, ts - self._last_ts)
                self._gap()
        self._last_ts = ts
        self._recent.append(ts)
        if len(self._recent) == self._recent.maxlen and self._index % self._recent.maxlen == 0:
            span = self._recent[-1] - self._recent[0]
            if span > 0:
                self._size_ring((len(self._recent) - 1) / span)
        meta = FrameMeta(self._index, ts, captured_at, wall, source_ts)
        self._index += 1
        if self._grid is not None and info.live and not self._grid.keep(ts) and not (
                self._keep_when is not None and self._keep_when()):
            self.stats.unsampled += 1
            self._ready_at = time.monotonic()
            if self.on_frame is not None:
                self.on_frame(self.stream, bgr, meta)
            return
        image = self.prepare(bgr, self.spec)
        stored = self.ring.push(image, meta, should_stop=self.stop_event.is_set)
        self._ready_at = time.monotonic()     # reading the next frame starts now
        if stored:
            self.stats.delivered += 1
            if self.on_frame is not None:
                self.on_frame(self.stream, bgr, meta)
