"""Webcams, network streams (RTSP/RTSPS/HTTP(S)) and video files read through OpenCV.

Open and read timeouts are always set, so a hung camera fails a read instead of blocking it for
30 s. Nothing here retries or sleeps: that policy lives in :mod:`realtime.stream.capture`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from realtime.core.errors import SourceError
from realtime.core.redact import for_opener
from realtime.core.types import DEFAULT_FPS
from realtime.sources.base import SourceInfo, check_source, classify_source

log = logging.getLogger(__name__)

_native_logs_quieted = False


def quiet_native_logs() -> None:
    """Silence FFmpeg's and OpenCV's own console chatter (unless the user configured it).

    Their lines repeat on every reconnect attempt and can print a stream URL with
    its credentials; our own messages say what happened, redacted. Set
    OPENCV_FFMPEG_LOGLEVEL / OPENCV_LOG_LEVEL to see them again.
    """
    global _native_logs_quieted
    if _native_logs_quieted:
        return
    _native_logs_quieted = True
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")     # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        # Silent, not just errors: probing a missing camera prints an "[ERROR]" line per attempt.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _device_path(uri: str) -> Optional[Path]:
    """The Linux device node of a camera index or /dev/videoN (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    return Path(f"/dev/video{uri}" if uri.isdigit() else uri)


def camera_missing(uri: str) -> Optional[str]:
    """Why the camera ``uri`` cannot exist here, without asking OpenCV (None when it may)."""
    path = _device_path(uri)
    if path is None or path.exists():
        return None
    found = sorted(p.name for p in Path("/dev").glob("video*"))
    there = f"cameras here: {', '.join(found)}" if found else "no camera is connected"
    return f"no such camera ({path} does not exist; {there})"


def camera_busy_reason(uri: str) -> str:
    """Why an existing camera did not open."""
    path = _device_path(uri)
    if path is not None and not os.access(path, os.R_OK | os.W_OK):
        return f"permission denied on {path} (add the user to the 'video' group)"
    return "the camera is in use by another program, or is not a video capture device"


class OpenCVSource:
    """A camera, network stream or file read through ``cv2.VideoCapture``."""

    def __init__(self, info: SourceInfo, *, open_timeout: float = 5.0, read_timeout: float = 5.0,
                 rtsp_transport: str = "tcp", decoder_threads: int = 1) -> None:
        self.info = info
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.rtsp_transport = rtsp_transport
        # FFmpeg's frame-threaded decoding holds frames back: more latency, and after
        # a stall it hands out stale frames one slow read at a time. 0 = OpenCV's default.
        self.decoder_threads = decoder_threads
        self._cap: Optional[cv2.VideoCapture] = None
        self._fps: Optional[float] = None
        self._frames_read = 0
        self._last_pos: float = -1.0
        self.frame_count: Optional[int] = None   # files: the container's frame count, if known

    @property
    def fps(self) -> Optional[float]:
        return self._fps

    def open(self) -> None:
        self.close()
        quiet_native_logs()
        info = self.info
        check_source(info)
        if info.kind == "file":
            cap = cv2.VideoCapture(info.uri)
            if not cap.isOpened():
                raise SourceError(f"cannot open video file {info.uri}: not a video, or a codec "
                                  f"OpenCV cannot decode")
        elif info.kind == "camera":
            missing = camera_missing(info.uri)
            if missing:
                raise SourceError(f"cannot open {info.name}: {missing}")
            index: int | str = int(info.uri) if info.uri.isdigit() else info.uri
            cap = cv2.VideoCapture(index)
            if not cap.isOpened():
                raise SourceError(f"cannot open {info.name}: {camera_busy_reason(info.uri)}")
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        else:
            if info.uri.lower().startswith(("rtsp://", "rtsps://")):
                self._set_ffmpeg_option("rtsp_transport", self.rtsp_transport)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
            if self.decoder_threads > 0:
                params += [cv2.CAP_PROP_N_THREADS, self.decoder_threads]
            started = time.monotonic()
            cap = cv2.VideoCapture(for_opener(info.uri), cv2.CAP_FFMPEG, params)
            if not cap.isOpened():
                waited = time.monotonic() - started
                from realtime.sources.netprobe import diagnose
                cause = diagnose(info.uri, timeout=min(3.0, self.open_timeout))
                if cause is None:
                    cause = (f"no answer within {self.open_timeout:g} s" if waited >= 0.95 * self.open_timeout
                             else "the stream could not be opened")
                raise SourceError(f"cannot open {info.name}: {cause}")
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(fps) if 1.0 <= fps <= 240.0 else None
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT) if info.kind == "file" else 0
        self.frame_count = int(count) if count and count > 0 else None
        self._cap = cap
        self._frames_read = 0
        self._last_pos = -1.0

    @staticmethod
    def _set_ffmpeg_option(key: str, value: str) -> None:
        # OpenCV's FFmpeg backend only takes demuxer options from this variable.
        current = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS", "")
        options = dict(item.split(";", 1) for item in current.split("|") if ";" in item)
        if options.get(key) != value:
            options[key] = value
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "|".join(f"{k};{v}" for k, v in options.items())

    def read(self) -> Optional[tuple[np.ndarray, Optional[float]]]:
        cap = self._cap
        if cap is None:
            raise SourceError(f"{self.info.name} is not open")
        started = time.monotonic()
        ok, frame = cap.read()
        waited = time.monotonic() - started
        if self.info.kind == "network" and waited >= 0.95 * self.read_timeout:
            # FFmpeg's read timeout fired, but it may still hand out a frame it held
            # back; the connection is dead either way (it does not recover by itself).
            raise SourceError(f"no frame from {self.info.name} within {self.read_timeout:g} s "
                              f"(stream stalled)")
        if not ok or frame is None:
            if self.info.kind == "file":
                if self._frames_read == 0:
                    raise SourceError(f"no frame could be decoded from {self.info.uri}")
                return None       # end of file (end_note() says whether it came early)
            if self.info.kind == "camera":
                raise SourceError(f"{self.info.name} stopped delivering frames (unplugged, or "
                                  f"taken by another program)")
            raise SourceError(f"{self.info.name} stopped sending after {waited:.1f} s without a "
                              f"frame (the connection closed or the stream ended)")
        self._frames_read += 1
        return frame, self._timestamp(cap)

    def end_note(self) -> Optional[str]:
        """At the end of a file: what went wrong if it ended well before the frame count its
        header gives (a truncated download or recording), else None. Header counts may be
        estimates, so a few frames short is not reported."""
        count, read = self.frame_count, self._frames_read
        if self.info.kind != "file" or not count or read >= count * 0.95 or count - read < 2:
            return None
        return (f"{self.info.uri} ended early: {read} of the {count} frames its header lists "
                f"could be read (the file is truncated or damaged)")

    def _timestamp(self, cap: cv2.VideoCapture) -> Optional[float]:
        """The decoder's presentation time of this frame, if it is sane (files only)."""
        if self.info.kind != "file":
            return None
        pos = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if pos > self._last_pos or (self._frames_read == 1 and pos >= 0):
            self._last_pos = pos
            return pos
        # Some containers report no timestamps: fall back to the nominal rate.
        fps = self._fps or DEFAULT_FPS
        self._last_pos = max(self._last_pos + 1e-6, (self._frames_read - 1) / fps)
        return self._last_pos

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def open_source(uri: str | int, *, open_timeout: float = 5.0, read_timeout: float = 5.0,
                rtsp_transport: str = "tcp", decoder_threads: int = 1) -> OpenCVSource:
    """Build (without opening) the source named by ``uri``."""
    return OpenCVSource(classify_source(uri), open_timeout=open_timeout, read_timeout=read_timeout,
                        rtsp_transport=rtsp_transport, decoder_threads=decoder_threads)
