"""Decode workers: other processes (or one thread) turning videos into windows for one model.

:class:`DecodePool` hands each video to an idle worker, which runs
:func:`~realtime.gallery.decode.decode_video` and sends what it yields back through its own pipe.
A pipe holds little, so a worker waits while the model is behind: memory stays bounded by one
message per worker. Workers are started with ``spawn`` (never a fork of a process holding
torch's threads) and import no torch. A worker that dies (a decoder crash) fails only the video it
was on, with a reason, and is replaced with a fresh pipe (a process killed mid-write leaves its
pipe unusable, which is why there is no shared queue). ``workers=0`` decodes in a thread of this
process instead.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Optional, Union

from realtime.gallery.decode import Decoded, DecodePlan, VideoEnd, decode_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeFailed:
    reason: str


Message = Union[Decoded, DecodeFailed]


def _work(conn: Connection, plan: DecodePlan, in_process: bool = False) -> None:
    """A worker's loop: ``(key, path)`` tasks until ``None`` or a closed pipe; every message goes
    back as ``(key, message)``."""
    import cv2
    if not in_process:
        cv2.setNumThreads(1)   # a worker process: one core each, the model has the others
    try:
        while True:
            task = conn.recv()
            if task is None:
                return
            key, path = task
            try:
                for message in decode_video(path, plan):
                    conn.send((key, message))
            except Exception as exc:   # any reason a file cannot be decoded is that file's, not the run's
                conn.send((key, DecodeFailed(str(exc) or type(exc).__name__)))   # a closed pipe ends the loop
    except (EOFError, OSError):
        return                         # the pool closed this worker's pipe


class _Worker:
    def __init__(self, index: int, plan: DecodePlan, ctx: Any) -> None:
        self.index = index
        self.key: Any = None           # the video it is on
        self.conn, child = mp.Pipe(duplex=True)
        if ctx is None:
            self.proc: Any = threading.Thread(target=_work, args=(child, plan, True), name="decode", daemon=True)
        else:
            self.proc = ctx.Process(target=_work, args=(child, plan), name=f"realtime-decode-{index}", daemon=True)
        self.proc.start()
        if ctx is not None:
            child.close()              # the child's end lives in the child now

    @property
    def sentinel(self) -> Optional[int]:
        return getattr(self.proc, "sentinel", None)

    def dead(self) -> bool:
        return not self.proc.is_alive()

    def stop(self, wait_for: bool) -> None:
        try:
            if wait_for:
                self.conn.send(None)
        except OSError:
            pass
        if wait_for:
            self.proc.join(timeout=5.0)
        if hasattr(self.proc, "kill") and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5.0)
        self.conn.close()
        if isinstance(self.proc, threading.Thread):
            self.proc.join(timeout=5.0)


class DecodePool:
    """``workers`` decode processes (0: one thread here) for videos submitted by key."""

    def __init__(self, plan: DecodePlan, workers: int = 1) -> None:
        self.plan = plan
        self._ctx = mp.get_context("spawn") if workers > 0 else None
        self._workers = [_Worker(i, plan, self._ctx) for i in range(max(1, int(workers)))]
        self._pending: collections.deque[tuple[Any, str]] = collections.deque()
        self._closed = False

    def submit(self, key: Any, path: str) -> None:
        self._pending.append((key, path))
        self._dispatch()

    def _dispatch(self) -> None:
        for worker in self._workers:
            if worker.key is None and self._pending:
                worker.key, path = self._pending.popleft()
                worker.conn.send((worker.key, path))

    def get(self, timeout: float) -> Optional[tuple[Any, Message]]:
        """The next ``(key, message)``, or None after ``timeout`` seconds without one. A worker
        found dead gives ``(its key, DecodeFailed)`` and is replaced."""
        busy = [w for w in self._workers if w.key is not None]
        if not busy:
            return None
        handles: list[Any] = [w.conn for w in busy] + [w.sentinel for w in busy if w.sentinel is not None]
        ready = wait(handles, timeout)
        for worker in busy:
            if worker.conn in ready:
                try:
                    key, message = worker.conn.recv()
                except (EOFError, OSError):
                    return self._replace(worker)
                if isinstance(message, (VideoEnd, DecodeFailed)):
                    worker.key = None
                    self._dispatch()
                return key, message
        for worker in busy:
            if worker.sentinel in ready or worker.dead():
                return self._replace(worker)
        return None

    def _replace(self, worker: _Worker) -> tuple[Any, Message]:
        key, code = worker.key, getattr(worker.proc, "exitcode", None)
        logger.warning("decode worker %d died (exit code %s) on %s; starting another", worker.index, code, key)
        worker.stop(wait_for=False)
        self._workers[worker.index] = _Worker(worker.index, self.plan, self._ctx)
        self._dispatch()
        return key, DecodeFailed(f"the decoder crashed on it (worker exit code {code})")

    def kill(self, index: int) -> None:
        """Kill worker ``index`` as a crash would (for tests of crash handling)."""
        proc = self._workers[index].proc
        if hasattr(proc, "kill"):
            proc.kill()
            proc.join(timeout=5.0)

    def close(self, wait: bool = True) -> None:
        """Stop the workers: after their current video (``wait``), or at once."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        for worker in self._workers:
            worker.stop(wait_for=wait and worker.key is None)
