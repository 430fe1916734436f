"""A shared/exclusive gate for CUDA work queued from many threads while graphs may be captured.

Capturing a CUDA graph must not overlap work queued on the stream being captured, and torch
hands streams out from a small shared pool, so a camera's upload stream can be the very stream
another thread is capturing on. Holding one process-wide lock around every frame's upload kept
that safe but made 64 capture threads (and the inference thread behind them) queue on one lock
for every frame, although captures only happen at start-up and when a frame size changes.

:class:`CaptureGate` lets any number of threads queue work at once (:meth:`CaptureGate.shared`)
and shuts them all out only while a graph is captured or the device is synchronised
(``with gate:``, exclusive). Exclusive holds are reentrant, and a thread holding the gate
exclusively may also enter it shared. Waiting exclusive holders go first: new shared holders
wait behind them, so a capture is not starved by a steady stream of frames; exclusive holders
take turns in the order they asked, up to ``max_run`` of them in a row (64 cameras capturing
their graphs at start-up go through quickly), and then the threads waiting to share go before
the next one. So neither side can keep the other out (a thread synchronising the device in a
loop, say). A thread that holds it shared and asks for it exclusively would
wait for itself: that raises instead.

:data:`CUDA_GRAPH_CAPTURE_LOCK` is the process's one gate; :func:`device_synchronize` and
:func:`exclusive_capture` are the two ways the device-wide operations take it exclusively.

Lock order, everywhere: a frame ring's lock (several rings' locks in one order) before the gate,
never the other way round; a thread that holds the gate takes no ring lock. A stream's
``emit_lock`` (the inference loop's publishing) is never held while either is taken.
:meth:`CaptureGate.held` and :meth:`realtime.threads.OwnedLock.held` let code assert that.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    import torch


class CaptureGate:
    """Many shared holders, or one (reentrant) exclusive holder; exclusive waiters go first."""

    def __init__(self, max_run: int = 8) -> None:
        self.max_run = max(1, int(max_run))    # exclusive holds in a row before waiting sharers get a turn
        self._run = 0
        self._cond = threading.Condition(threading.Lock())
        self._owner: Optional[int] = None      # thread ident of the exclusive holder
        self._depth = 0                        # its reentrant depth
        self._shared = 0                       # shared holders inside
        self._waiting = 0                      # threads waiting to hold it exclusively
        self._next_ticket = 0                  # exclusive holders are served in ticket order
        self._serving = 0
        self._skipped: set[int] = set()
        self._shared_waiting = 0               # threads waiting to hold it shared
        self._shared_turn = False              # an exclusive hold ended with them waiting: they go next
        self._local = threading.local()        # this thread's shared depth

    def _shared_depth(self) -> int:
        return getattr(self._local, "depth", 0)

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Queue work alongside other shared holders; waits while anyone holds the gate exclusively,
        and while anyone waits to, unless it is the shared holders' turn."""
        me = threading.get_ident()
        with self._cond:
            if self._owner != me and self._shared_must_wait():
                self._shared_waiting += 1
                try:
                    while self._shared_must_wait():
                        self._cond.wait()
                finally:
                    self._shared_waiting -= 1
                    if self._shared_waiting == 0:
                        self._shared_turn = False
            self._shared += 1
        self._local.depth = self._shared_depth() + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            with self._cond:
                self._shared -= 1
                if self._shared == 0:
                    self._cond.notify_all()

    def held(self) -> bool:
        """Whether the calling thread holds the gate, shared or exclusively (for lock-order checks)."""
        return self._owner == threading.get_ident() or self._shared_depth() > 0

    def _shared_must_wait(self) -> bool:
        return self._owner is not None or (self._waiting > 0 and not self._shared_turn)

    def acquire(self) -> None:
        """Hold the gate exclusively (waits for every shared holder to leave)."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            if self._shared_depth():
                raise RuntimeError("CaptureGate: a thread holding the gate shared asked for it exclusively")
            ticket = self._next_ticket
            self._next_ticket += 1
            self._waiting += 1
            try:
                while self._owner is not None or self._shared or self._serving != ticket or self._shared_turn:
                    self._cond.wait()
            except BaseException:
                self._abandon(ticket)
                raise
            finally:
                self._waiting -= 1
            self._serving += 1
            self._owner = me
            self._depth = 1

    def _abandon(self, ticket: int) -> None:
        """(Under the lock.) A waiter interrupted before its turn (KeyboardInterrupt in the wait):
        its ticket is skipped, so the tickets after it are still served."""
        self._skipped.add(ticket)
        while self._serving in self._skipped:
            self._skipped.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("CaptureGate: released by a thread that does not hold it exclusively")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._run += 1
                if self._shared_waiting and (self._waiting == 0 or self._run >= self.max_run):
                    self._shared_turn = True      # those waiting to share go before the next exclusive holder
                    self._run = 0
                elif self._waiting == 0:
                    self._run = 0
                self._cond.notify_all()

    def __enter__(self) -> "CaptureGate":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f"CaptureGate(exclusive={'held' if self._owner is not None else 'free'}, "
                f"shared={self._shared}, waiting={self._waiting})")


CUDA_GRAPH_CAPTURE_LOCK = CaptureGate()
"""Held exclusively (``with CUDA_GRAPH_CAPTURE_LOCK:``) while any CUDA graph of this process is
being captured, and around every device-wide synchronize; held shared
(``CUDA_GRAPH_CAPTURE_LOCK.shared()``) by each frame ring while it queues a frame's work. torch
registers its random number generators with a graph as its capture begins, so two captures
overlapping in different threads (a ring per camera, the model's batches) fail; work queued on a
stream while it is being captured (torch's small stream pool can hand a ring the very stream a
capture uses) breaks the capture; a device-wide synchronize in one thread invalidates a capture
running in another; and a failed graph's destructor can abort the process."""

_FAILED_CAPTURES: list = []     # graphs whose capture failed, kept alive: destroying one can abort


def device_synchronize(device: Union[str, "torch.device"]) -> None:
    """``torch.cuda.synchronize(device)``, never while another thread captures a CUDA graph."""
    import torch

    with CUDA_GRAPH_CAPTURE_LOCK:
        torch.cuda.synchronize(device)


@contextmanager
def exclusive_capture(graph: "torch.cuda.CUDAGraph") -> Iterator[None]:
    """Capture ``graph`` inside this block alone (:data:`CUDA_GRAPH_CAPTURE_LOCK`); if the capture
    fails, the graph is kept alive rather than destroyed, and the error goes on."""
    with CUDA_GRAPH_CAPTURE_LOCK:
        try:
            yield
        except BaseException:
            _FAILED_CAPTURES.append(graph)
            raise
