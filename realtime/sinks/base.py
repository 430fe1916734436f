"""The Sink protocol and the runner that gives each sink its own bounded queue and thread.

One sink failing or hanging never stops the others or the pipeline: events are
offered without blocking; when a sink's queue is full its oldest event is
dropped and counted; exceptions are logged once and counted.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Mapping, Optional, Protocol

from realtime.threads import start_thread

log = logging.getLogger(__name__)


class Sink(Protocol):
    """An output. ``write`` runs on the sink's own thread and may block briefly.

    Optional extras a sink may have:
    - ``wants_frames = True`` and ``frame(stream, bgr, meta)``: raw frames from
      the capture thread (must not block: keep the newest, queue boundedly);
    - ``main_thread_step() -> bool``: called from the main thread about every
      30 ms (GUI windows); returning False asks the pipeline to stop.
    """

    name: str

    def open(self) -> None: ...

    def write(self, event: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class DropOldestQueue:
    """A bounded FIFO that never blocks the producer: when full the oldest item goes."""

    def __init__(self, maxsize: int) -> None:
        self._items: collections.deque = collections.deque()
        self.maxsize = maxsize
        self.dropped = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: Any) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get(self, timeout: float) -> tuple[bool, Any]:
        """(True, item), or (False, None) on timeout or when closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return False, None
            if self._items:
                return True, self._items.popleft()
            return False, None

    def close(self) -> None:
        """No more puts; get() drains what is left, then reports closed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed_and_empty(self) -> bool:
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class SinkRunner:
    """Runs one sink on its own thread, fed through a DropOldestQueue."""

    def __init__(self, sink: Sink, queue_size: int = 256) -> None:
        self.sink = sink
        self.queue = DropOldestQueue(queue_size)
        self.errors = 0
        self.written = 0
        self.last_error: Optional[str] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def start(self) -> None:
        self.sink.open()
        # close() joins it with a timeout; one that hangs past that must not hold the process.
        self._thread = start_thread(self._run, f"sink-{self.name}")

    def offer(self, event: dict[str, Any]) -> None:
        self.queue.put(event)

    def _run(self) -> None:
        while True:
            ok, event = self.queue.get(timeout=0.5)
            if not ok:
                if self.queue.closed_and_empty:
                    return
                continue
            try:
                self.sink.write(event)
                self.written += 1
            except Exception as exc:  # counted and reported, never fatal
                self.record_error(exc)

    def record_error(self, exc: BaseException) -> None:
        """Count a sink failure; the first one is logged in one line (its traceback at debug level)."""
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.errors == 1:
            log.error("sink %s failed (further errors are counted): %s", self.name, self.last_error)
            log.debug("sink %s failure", self.name, exc_info=exc)

    def close(self, timeout: float = 2.0) -> bool:
        """Deliver what is queued, then close the sink. False if it did not finish in time."""
        self.queue.close()
        finished = True
        if self._thread is not None:
            self._thread.join(timeout)
            finished = not self._thread.is_alive()
            if not finished:
                log.warning("sink %s did not finish within %.1f s; %d events undelivered",
                            self.name, timeout, len(self.queue))
        if finished:
            try:
                self.sink.close()
            except Exception as exc:        # what it still held is lost: counted like a failed write
                self.record_error(exc)
        return finished

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"written": self.written, "dropped": self.dropped,
                               "errors": self.errors, "last_error": self.last_error}
        own = getattr(self.sink, "stats", None)      # a sink's own counters (e.g. zmq sent)
        if callable(own):
            out.update({k: v for k, v in own().items() if k not in out})
        return out
