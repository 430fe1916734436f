"""The project's worker threads: how they start, join and are accounted for.

Every thread the project starts goes through :func:`start_thread`, so one place knows
which of them still run (:func:`live_threads`): the command line uses that to avoid
interpreter shutdown while one is inside native code (a forward pass, a camera read),
and the tests use it to catch a thread a test left running.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Callable, Optional

_started: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()
_started_lock = threading.Lock()


def start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Start ``target`` on a named daemon thread the project accounts for.

    A daemon, so that one stuck in a C call (a stalled camera, a hung model) never keeps the
    process alive; its owner stops it and joins it with a timeout.
    """
    thread = threading.Thread(target=target, name=name, daemon=True)
    with _started_lock:
        _started.add(thread)
    thread.start()
    return thread


def live_threads() -> list[threading.Thread]:
    """The project's threads that are still running, oldest name first."""
    with _started_lock:
        threads = list(_started)
    return sorted((t for t in threads if t.is_alive()), key=lambda t: t.name)


class WorkerThread:
    """Starts ``target`` on a named thread; join with a timeout; tells whether it still runs."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self.name = name
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = start_thread(self._target, self.name)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True if the thread has ended (or never started)."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cpu_seconds(self) -> Optional[float]:
        """CPU time the thread has used so far; None once it has ended, or where the platform
        cannot tell (Linux and most Unixes can)."""
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return None
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (AttributeError, OSError):
            return None


class OwnedLock:
    """A ``threading.Lock`` that knows which thread holds it, so code can assert a lock order
    (``assert not lock.held()`` before taking a lock that must come first). Not reentrant."""

    __slots__ = ("_lock", "_owner")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: Optional[int] = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self._owner = threading.get_ident()
        return got

    def release(self) -> None:
        self._owner = None
        self._lock.release()

    def __enter__(self) -> "OwnedLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def held(self) -> bool:
        """Whether the calling thread holds it."""
        return self._owner == threading.get_ident()

    def locked(self) -> bool:
        """Whether any thread holds it."""
        return self._lock.locked()
