"""Start, kill, restart, hang and resume a real RTSP server from tests.

The server itself is ``rtsp_server.py`` next to this file. It needs GStreamer's
Python bindings, which live in the system interpreter (``/usr/bin/python3``)
rather than the project's virtualenv, so it always runs as a subprocess::

    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    with RtspServer() as server:
        cap = cv2.VideoCapture(server.url, cv2.CAP_FFMPEG)
        ...
        server.kill()      # SIGKILL: the stream vanishes, sockets close
        server.restart()   # same port, same URL
        server.pause()     # SIGSTOP: sockets stay open, nothing is sent
        server.resume()    # SIGCONT

With ``RtspServer(stamp=True)`` every frame carries the wall-clock time the
server sent it, so :func:`frame_age` tells how stale a frame OpenCV returned
is (both processes share the clock). ``RtspServer(file=...)`` loops a clip.

Start-up takes well under a second (the server prints ``READY <port>`` once
it listens; :meth:`RtspServer.start` waits for that line). RTP over UDP works
as well as interleaved TCP (OpenCV's default); both stay on 127.0.0.1.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import numpy as np

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
HOST = "127.0.0.1"

# Frame stamp layout, as rtsp_server.py writes it.
STAMP_ROWS = 16
STAMP_BITS = 40

# Elements the served pipelines use; if one is missing the server cannot stream.
_REQUIRED_ELEMENTS = (
    "videotestsrc",
    "videoconvert",
    "x264enc",
    "rtph264pay",
    "appsrc",
    "uridecodebin",
    "videoscale",
    "videorate",
    "appsink",
)

_PROBE = f"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer, GstVideo
Gst.init(None)
missing = [e for e in {_REQUIRED_ELEMENTS!r} if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


class RtspServerError(RuntimeError):
    """The test RTSP server could not be started."""


@functools.lru_cache(maxsize=None)
def rtsp_available() -> tuple[bool, str]:
    """Whether the test RTSP server can run here, and if not, why not.

    Checks for ``/usr/bin/python3`` with the GStreamer bindings, gst-rtsp-server
    and the elements the server uses (x264enc among them). The answer is
    cached; the reason is meant for ``pytest.skip(reason)``.
    """
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False, f"{SYSTEM_PYTHON} not found (the RTSP test server runs under it)"
    try:
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot probe GStreamer with {SYSTEM_PYTHON}: {exc}"
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        return False, (
            f"{SYSTEM_PYTHON} lacks GStreamer/gst-rtsp-server bindings ({last}); "
            "install gir1.2-gst-rtsp-server-1.0 and python3-gi"
        )
    missing = probe.stdout.split()
    if missing:
        return False, f"GStreamer elements missing: {', '.join(missing)}"
    return True, "ok"


def read_stamp(frame: np.ndarray) -> float:
    """When the server sent *frame*, as a ``time.time()`` value, from its stamp.

    *frame* is a BGR (or grey) image as OpenCV returns it, from a server
    started with ``stamp=True``. Raises ``ValueError`` if the frame carries no
    valid stamp. The stamp holds 32 bits of milliseconds, so it is resolved to
    the latest matching moment not after now (it wraps every 49 days).
    """
    if frame.ndim == 3:
        frame = frame.mean(axis=2)
    height, width = frame.shape[:2]
    block = width // STAMP_BITS
    if block < 4 or height < STAMP_ROWS:
        raise ValueError(f"a {width}x{height} frame is too small to carry a stamp")
    # Sample the middle of each block, away from edges that compression blurs.
    band = frame[STAMP_ROWS // 4 : STAMP_ROWS * 3 // 4]
    value = 0
    for k in range(STAMP_BITS):
        left = k * block + block // 4
        bit = band[:, left : left + max(1, block // 2)].mean() > 128
        value = (value << 1) | int(bit)
    millis, check = value >> 8, value & 0xFF
    if check != (millis ^ (millis >> 8) ^ (millis >> 16) ^ (millis >> 24)) & 0xFF:
        raise ValueError("frame has no valid stamp")
    now = int(time.time() * 1000)
    return (now - ((now - millis) & 0xFFFFFFFF)) / 1000.0


def frame_age(frame: np.ndarray) -> float:
    """Seconds since the server sent *frame* (see :func:`read_stamp`)."""
    return time.time() - read_stamp(frame)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class RtspServer:
    """A GStreamer RTSP server in a subprocess, serving ``rtsp://127.0.0.1:PORT/stream``.

    With ``port=None`` the kernel picks a free port on the first :meth:`start`;
    every later start (:meth:`restart`) reuses it, so the URL stays the same.
    ``file`` serves a video file in a loop instead of the live test pattern;
    ``stamp`` writes each frame's send time into it (see :func:`read_stamp`);
    ``login=(user, password)`` makes the stream need them (401 without).
    """

    def __init__(
        self,
        port: int | None = None,
        path: str = "/stream",
        fps: int = 30,
        width: int = 320,
        height: int = 240,
        file: str | os.PathLike[str] | None = None,
        stamp: bool = False,
        start_timeout: float = 20.0,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.port = port
        self.path = path if path.startswith("/") else "/" + path
        self.fps = fps
        self.width = width
        self.height = height
        self.file = os.path.abspath(file) if file is not None else None
        self.stamp = stamp
        self.start_timeout = start_timeout
        self.login = login  # (user, password) the stream requires, or None
        self._proc: subprocess.Popen[str] | None = None
        self._stderr = None  # temporary file holding the running server's stderr

    # -- properties ---------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RtspServerError("the server has no port yet: call start() first")
        return f"rtsp://{HOST}:{self.port}{self.path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the server process exists (paused counts as running)."""
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ---------------------------------------------------------

    def start(self) -> RtspServer:
        """Launch the server and block until it is listening.

        Waits for the ``READY <port>`` line the server prints, for at most
        ``start_timeout`` seconds; raises :class:`RtspServerError` with the
        server's stderr if it exits or stays silent.
        """
        if self.running:
            raise RtspServerError(f"the RTSP server is already running (pid {self.pid})")
        self._close_process()
        cmd = [
            SYSTEM_PYTHON,
            str(SERVER_SCRIPT),
            "--port", str(self.port or 0),
            "--path", self.path,
            "--width", str(self.width),
            "--height", str(self.height),
            "--fps", str(self.fps),
        ]  # fmt: skip
        if self.file is not None:
            cmd += ["--file", self.file]
        if self.stamp:
            cmd.append("--stamp")
        if self.login is not None:
            cmd += ["--user", self.login[0], "--password", self.login[1]]
        # stderr goes to a file, not a pipe: nobody drains it while the test
        # runs, and a full pipe would hang GStreamer's logging.
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix="rtsp_server_stderr")
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_ready(self) -> int:
        """Read the server's stdout until ``READY <port>``, with a deadline.

        The server prints nothing else on stdout, so the text wrapper never
        holds a line back that select() would not see.
        """
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RtspServerError(
                        f"RTSP server not ready after {self.start_timeout:g}s{self._stderr_tail()}"
                    )
                if not sel.select(left):
                    continue
                line = self._proc.stdout.readline()
                if not line:  # EOF: the server exited
                    status = self._proc.wait(timeout=5)
                    raise RtspServerError(
                        f"RTSP server exited with status {status} before it was ready"
                        f"{self._stderr_tail()}"
                    )
                if line.startswith("READY "):
                    return int(line.split()[1])

    def _stderr_tail(self, limit: int = 4000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().strip()
        return f"; its stderr:\n{text[-limit:]}" if text else " (no stderr)"

    def kill(self) -> None:
        """SIGKILL the server and reap it: sockets close at once, nothing is flushed."""
        if self.running:
            assert self._proc is not None
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait()

    def restart(self) -> RtspServer:
        """Kill the server if it runs, then start it again on the same port.

        The server binds with SO_REUSEADDR, so connections left in TIME_WAIT by
        the previous process do not block the port.
        """
        self.kill()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP the server: it keeps its sockets open but sends and answers nothing."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if not self.running:
            raise RtspServerError("the RTSP server is not running")
        assert self._proc is not None
        self._proc.send_signal(signum)

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after *timeout*). Safe to call twice."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._close_process()

    def _close_process(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RtspServer(url={self.url if self.port else None!r}, {state}, pid={self.pid})"
