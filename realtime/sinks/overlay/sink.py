"""Overlay sink: the video with the recognizer's state drawn on it, in a window and/or a file.

Threads, and what each one does here:

- the sink runner thread calls ``write(event)``: the stream's ``OverlayState``
  is updated under a lock (cheap);
- the capture thread calls ``frame(stream, bgr, meta)``, which never blocks: it
  keeps the newest frame per stream for the window (a slot of one) and, when
  writing a file, puts the frame with a snapshot of the state into a bounded
  drop-oldest queue (drops are counted);
- the sink's own writer thread draws the queued frames and encodes them, into
  a file opened lazily at the first frames' size and frame rate (measured from
  the frames' timestamps, else 30); ``close()`` drains the queue, then flushes
  the encoder and writes the file's trailer;
- the main thread calls ``main_thread_step()`` about every 30 ms: it draws the
  newest frame of each stream, shows it (``cv2.imshow``) and polls the keyboard;
  ``q``, Esc or closing a window asks the pipeline to stop.

``cv2.imshow`` without a display aborts the whole process (Qt cannot be
caught), so a window is only ever opened after ``display_status()``
(:mod:`realtime.sinks.overlay.display`) found a display it can reach and an
OpenCV built with a GUI.

The file: ``codec="h264"`` (the default) writes H.264, yuv420p, with PyAV
(FFmpeg's libx264), which browsers and QuickTime play; OpenCV's own FFmpeg has
no H.264 encoder. When H.264 cannot be written (PyAV missing, no H.264 encoder,
a container that cannot hold it) the sink warns once and writes MPEG-4 Part 2
(``mp4v``) with ``cv2.VideoWriter``. Any other 4-character codec is an OpenCV
FourCC (``mp4v``, ``MJPG``, ``XVID``, ...) written with ``cv2.VideoWriter``.
The files themselves are opened and written in :mod:`realtime.sinks.overlay.video_file`;
the drawing is :mod:`realtime.sinks.overlay.draw`.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import re
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import cv2
import numpy as np

from realtime.core.errors import SinkError
from realtime.core.types import DEFAULT_FPS
from realtime.threads import start_thread
from realtime.sinks.overlay.display import display_status
from realtime.sinks.overlay.draw import OverlayState, draw_overlay, update_state
from realtime.sinks.overlay.video_file import (
    FALLBACK_FOURCC,
    H264,
    H264File,
    OpenCvFile,
    VideoFile,
    VideoOpener,
    h264_encoders,
    try_open,
)
from realtime.core.types import FrameMeta
from realtime.sinks.base import DropOldestQueue

log = logging.getLogger(__name__)

FPS_PROBE_FRAMES = 8            # frames the writer looks at to measure the frame rate
QUIT_KEYS = (ord("q"), ord("Q"), 27)
REQUEST_KEYS = {ord("n"): "now", ord("N"): "now", ord("r"): "repeat", ord("R"): "repeat"}  # spoken answers
MAX_WINDOW = (1600, 900)        # a new window is scaled down to fit this (width, height)
CLOSE_TIMEOUT = 30.0            # seconds close() waits for the writer to drain its queue


# --------------------------------------------------------------------------- the sink
@dataclass
class _StreamView:
    """One stream's state, newest frame (for the window) and measured frame rate."""

    state: OverlayState
    frame: Optional[np.ndarray] = None
    frame_seq: int = 0              # frames received
    shown_seq: int = 0              # the frame_seq last shown in the window
    last_ts: Optional[float] = None
    dt_ema: Optional[float] = None  # smoothed seconds between frames
    window: Optional[str] = None


@dataclass
class _Writer:
    """One stream's video file."""

    path: Path
    writer: Optional[VideoFile] = None
    size: Optional[tuple[int, int]] = None     # (width, height) of the frames; the file may pad
    fps: float = DEFAULT_FPS
    frames: int = 0
    failed: bool = False
    probe: list[tuple[np.ndarray, OverlayState, FrameMeta]] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "stream"


def estimate_fps(timestamps: list[float]) -> Optional[float]:
    """The frame rate from frame timestamps (median spacing), if plausible (1 to 240)."""
    deltas = [b - a for a, b in zip(timestamps, timestamps[1:]) if b > a]
    if not deltas:
        return None
    fps = 1.0 / statistics.median(deltas)
    return fps if 1.0 <= fps <= 240.0 else None


class OverlaySink:
    """Draws each stream's label, confidence, top-3, fps, latency and state on its video.

    ``path``: write the annotated video there (further streams get
    ``<stem>-<stream><suffix>``). ``show``: a window per stream titled
    ``f"{title} - {stream}"``; None = when a display exists; True without a
    display warns and shows nothing (``cv2.imshow`` would abort the process).
    ``fps`` fixes the written frame rate instead of measuring it. ``codec``:
    ``"h264"`` (H.264 with PyAV, else ``mp4v`` with OpenCV and a warning) or an
    OpenCV FourCC such as ``"mp4v"``; ``video_codec`` says which is written
    (set by ``open()``).
    """

    wants_frames = True

    def __init__(self, path: Optional[str] = None, *, show: Optional[bool] = None,
                 title: str = "realtime", codec: str = H264, fps: Optional[float] = None,
                 queue_size: int = 16) -> None:
        if len(codec) != 4:
            raise SinkError(f"overlay codec {codec!r}: use {H264!r} or an OpenCV FourCC "
                            f"(exactly 4 characters, e.g. 'mp4v')")
        self.path = path
        self.show = show
        self.title = title
        self.codec = codec
        self.fps = fps
        self.video_codec: Optional[str] = None     # what the file is written with; set at open()
        self._open_video: Optional[VideoOpener] = None
        self.name = f"overlay:{path}" if path else "overlay"
        self.showing = False            # decided at open()
        self.enabled = False
        self._lock = threading.Lock()
        self._streams: dict[str, _StreamView] = {}
        self._queue: Optional[DropOldestQueue] = DropOldestQueue(queue_size) if path else None
        self._writers: dict[str, _Writer] = {}
        self._writer_thread: Optional[threading.Thread] = None
        self._gui_thread: Optional[int] = None
        self._quit = False
        # Set by the pipeline: asks the speaking sinks for an answer (keys n: now, r: repeat).
        self.on_request: Optional[Callable[[str, Optional[str]], Optional[str]]] = None

    @classmethod
    def from_config(cls, config: Any) -> "OverlaySink":
        return cls(config.path, show=config.show, title=config.title, codec=config.codec)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        if self.show is not False:
            ok, why = display_status()
            if ok:
                self.showing = True
                log.debug("overlay window: %s", why)
            elif self.show:
                log.warning("overlay: show=True but %s: no window", why)
            else:
                log.debug("overlay window off: %s", why)
        if self.path:
            self._probe_path(Path(self.path))
            self._writer_thread = start_thread(self._write_loop, f"sink-{self.name}-writer")
        self.enabled = self.showing or bool(self.path)
        if not self.enabled:
            log.warning("no display and no output file: overlay disabled")
            self.wants_frames = False      # the pipeline checks this after open()

    def _probe_path(self, target: Path) -> None:
        """Fail now, naming the file, if the video cannot be written there."""
        if target.is_dir():
            raise SinkError(f"cannot write video to {target}: it is a directory")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot write video to {target}: {exc.strerror}") from None
        if not os.access(target.parent, os.W_OK | os.X_OK) or (
                target.exists() and not os.access(target, os.W_OK)):
            raise SinkError(f"cannot write video to {target}: {os.strerror(errno.EACCES)}")
        self._choose_video(target)

    def _choose_video(self, target: Path) -> None:
        """Pick the writer: H.264 with PyAV, else OpenCV (warning once); or the FourCC asked for."""
        if self.codec.lower() != H264:
            opener: VideoOpener = functools.partial(OpenCvFile, fourcc=self.codec)
            why = try_open(opener, target)
            if why is not None:
                raise SinkError(f"cannot write video to {target}: {why}")
            self._open_video, self.video_codec = opener, self.codec
            return
        encoders, why = h264_encoders()
        failures = [why] if why else []
        for encoder in encoders:
            opener = functools.partial(H264File, encoder=encoder)
            why = try_open(opener, target)
            if why is None:
                self._open_video, self.video_codec = opener, H264
                log.debug("overlay: writing H.264 with PyAV (%s)", encoder)
                return
            failures.append(f"{encoder}: {why}")
        reason = "; ".join(failures)
        opener = functools.partial(OpenCvFile, fourcc=FALLBACK_FOURCC)
        why = try_open(opener, target)
        if why is not None:
            raise SinkError(f"cannot write video to {target}: no H.264 ({reason}), "
                            f"and {why}")
        log.warning("overlay: cannot write H.264 to %s (%s); writing MPEG-4 Part 2 (%s) with "
                    "OpenCV instead, which browsers and QuickTime do not play", target, reason,
                    FALLBACK_FOURCC)
        self._open_video, self.video_codec = opener, FALLBACK_FOURCC

    def close(self) -> None:
        """Write every queued frame, release the files and close the windows."""
        if self._queue is not None:
            self._queue.close()
        if self._writer_thread is not None:
            self._writer_thread.join(CLOSE_TIMEOUT)
            if self._writer_thread.is_alive():
                log.warning("overlay: the video writer did not finish within %.0f s", CLOSE_TIMEOUT)
        with self._lock:
            windows = [v.window for v in self._streams.values() if v.window]
        if windows:
            if threading.get_ident() == self._gui_thread:
                for window in windows:
                    try:
                        cv2.destroyWindow(window)
                    except cv2.error:
                        pass
                cv2.waitKey(1)
            else:
                log.debug("overlay: windows left open (close() not on the GUI thread)")

    # ------------------------------------------------------------------ events (runner thread)
    def _view(self, stream: str) -> _StreamView:
        view = self._streams.get(stream)
        if view is None:
            view = self._streams[stream] = _StreamView(OverlayState(stream=stream))
        return view

    def write(self, event: Mapping[str, Any]) -> None:
        stream = event.get("stream")
        with self._lock:
            if stream is None:            # an event for every stream
                for view in self._streams.values():
                    view.state = update_state(view.state, event)
                return
            view = self._view(str(stream))
            view.state = update_state(view.state, event)

    def state(self, stream: str) -> OverlayState:
        """The current state of ``stream`` (a new empty one if unseen)."""
        with self._lock:
            return self._view(stream).state

    # ------------------------------------------------------------------ frames (capture thread)
    def frame(self, stream: str, bgr: np.ndarray, meta: FrameMeta) -> None:
        """Keep the newest frame for the window and queue it for the file; never blocks.

        The array is kept by reference, not copied: sources hand over a fresh one per frame.
        """
        if not self.enabled:
            return
        with self._lock:
            view = self._view(stream)
            if view.last_ts is not None and meta.ts > view.last_ts:
                dt = meta.ts - view.last_ts
                view.dt_ema = dt if view.dt_ema is None else 0.9 * view.dt_ema + 0.1 * dt
            view.last_ts = meta.ts
            state = view.state
            if state.fps is None and view.dt_ema:
                state = dataclasses.replace(state, fps=1.0 / view.dt_ema)
            if self.showing:
                view.frame = bgr
                view.frame_seq += 1
        if self._queue is not None:
            self._queue.put((stream, bgr, state, meta))

    @property
    def dropped(self) -> int:
        """Frames dropped because the writer fell behind."""
        return self._queue.dropped if self._queue is not None else 0

    @property
    def frames_written(self) -> dict[str, int]:
        """Frames written per stream so far."""
        return {stream: w.frames for stream, w in list(self._writers.items())}

    # ------------------------------------------------------------------ the writer thread
    def _path_for(self, stream: str) -> Path:
        base = Path(self.path or "overlay.mp4")
        if not self._writers:
            return base
        return base.with_name(f"{base.stem}-{_slug(stream)}{base.suffix}")

    def _write_loop(self) -> None:
        assert self._queue is not None
        while True:
            ok, item = self._queue.get(timeout=0.5)
            if not ok:
                if self._queue.closed_and_empty:
                    break
                continue
            stream, bgr, state, meta = item
            try:
                self._write_one(stream, bgr, state, meta)
            except Exception:
                log.exception("overlay: writing a frame of %s failed", stream)
        for stream, w in self._writers.items():
            try:
                if w.writer is None and w.probe and not w.failed:
                    self._open_writer(w, flush=True)
                if w.writer is not None:
                    writer, w.writer = w.writer, None
                    writer.close()              # flushes the encoder and finalises the file
                    log.info("overlay: wrote %d frames of %s to %s (%.2f fps, %s)", w.frames,
                             stream, w.path, w.fps, self.video_codec)
            except Exception:
                log.exception("overlay: finishing %s failed", w.path)
        if self.dropped:
            log.warning("overlay: %d frames were dropped because the video writer fell behind",
                        self.dropped)

    def _write_one(self, stream: str, bgr: np.ndarray, state: OverlayState,
                   meta: FrameMeta) -> None:
        w = self._writers.get(stream)
        if w is None:
            w = self._writers[stream] = _Writer(self._path_for(stream))
        if w.failed:
            return
        if w.writer is None:
            w.probe.append((bgr, state, meta))
            if self.fps is None and len(w.probe) < FPS_PROBE_FRAMES:
                return                   # a few more frames to measure the frame rate
            self._open_writer(w, flush=True)
            return
        self._encode(w, bgr, state)

    def _open_writer(self, w: _Writer, flush: bool) -> None:
        first = w.probe[0][0]
        height, width = first.shape[:2]
        w.size = (width, height)
        w.fps = self.fps or estimate_fps([m.ts for _, _, m in w.probe]) or DEFAULT_FPS
        assert self._open_video is not None, "open() chooses the video writer"
        try:
            w.writer = self._open_video(w.path, w.size, w.fps)
        except Exception as exc:
            w.failed = True
            log.error("overlay: cannot open a %s video writer for %s (%dx%d): %s; frames dropped",
                      self.video_codec, w.path, width, height, exc)
            w.probe.clear()
            return
        log.debug("overlay: writing %s at %dx%d, %.2f fps, %s", w.path, width, height, w.fps,
                  self.video_codec)
        probe, w.probe = w.probe, []
        if flush:
            for bgr, state, _ in probe:
                self._encode(w, bgr, state)

    def _encode(self, w: _Writer, bgr: np.ndarray, state: OverlayState) -> None:
        assert w.writer is not None and w.size is not None
        image = draw_overlay(bgr, state)
        if (image.shape[1], image.shape[0]) != w.size:   # the source changed resolution
            image = cv2.resize(image, w.size, interpolation=cv2.INTER_AREA)
        w.writer.write(image)
        w.frames += 1

    # ------------------------------------------------------------------ the window (main thread)
    def main_thread_step(self) -> bool:
        """Show the newest frame of each stream; False when the user asked to quit."""
        if not self.showing:
            return True
        if self._quit:
            return False
        with self._lock:
            windows = [v.window for v in self._streams.values() if v.window]
        if windows:
            key = cv2.waitKey(1)
            if key != -1 and (key & 0xFF) in QUIT_KEYS:
                log.info("overlay: quit key pressed")
                self._quit = True
                return False
            if key != -1 and (key & 0xFF) in REQUEST_KEYS and self.on_request is not None:
                self.on_request(REQUEST_KEYS[key & 0xFF], None)
            for window in windows:
                try:
                    visible = cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE)
                except cv2.error:
                    visible = -1
                if visible < 1:
                    log.info("overlay: window %r closed", window)
                    self._quit = True
                    return False
        with self._lock:
            todo = [(s, v, v.frame, v.state, v.frame_seq) for s, v in self._streams.items()
                    if v.frame is not None and v.frame_seq != v.shown_seq]
        for stream, view, bgr, state, seq in todo:
            if state.fps is None and view.dt_ema:
                state = dataclasses.replace(state, fps=1.0 / view.dt_ema)
            image = draw_overlay(bgr, state)
            if view.window is None:
                view.window = self._create_window(stream, image.shape[1], image.shape[0])
            cv2.imshow(view.window, image)
            with self._lock:
                view.shown_seq = seq
        return True

    def _create_window(self, stream: str, width: int, height: int) -> str:
        name = f"{self.title} - {stream}"
        self._gui_thread = threading.get_ident()
        cv2.namedWindow(name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        scale = min(1.0, MAX_WINDOW[0] / width, MAX_WINDOW[1] / height)
        cv2.resizeWindow(name, max(1, int(width * scale)), max(1, int(height * scale)))
        return name
