"""A worker thread's lifecycle, shared by the capture and inference workers."""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class WorkerThread:
    """Starts ``target`` on a named thread; join with a timeout; tells whether it still runs.

    The thread is a daemon: its owner stops it and joins it with a timeout, and one stuck in
    a C call (a stalled camera, a hung model) must not keep the process alive after that.
    """

    def __init__(self, target: Callable[[], None], name: str) -> None:
        self._target = target
        self.name = name
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self._thread.start()

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
