"""The overlay's video files: H.264 with PyAV, or any OpenCV FourCC with ``cv2.VideoWriter``.

``codec="h264"`` (the overlay's default) writes H.264, yuv420p, with PyAV
(FFmpeg's libx264), which browsers and QuickTime play; OpenCV's own FFmpeg has
no H.264 encoder. :func:`h264_encoders` lists the H.264 encoders PyAV has, and
:func:`try_open` checks that a writer can write at a path before the first frame
arrives. The sink (:mod:`realtime.sinks.overlay.sink`) chooses among them and
falls back to ``mp4v``; this module only opens, writes and closes files.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import cv2
import numpy as np

from realtime.core.errors import SinkError
from realtime.core.types import DEFAULT_FPS

H264 = "h264"                   # the codec value meaning H.264 through PyAV; others are FourCCs
FALLBACK_FOURCC = "mp4v"        # what OpenCV writes when H.264 cannot be written
H264_ENCODERS = ("libx264", "h264")   # libx264 first, then the FFmpeg build's default H.264 encoder
# Fast enough to keep up with a live stream beside the model on a small CPU; crf 23 is x264's
# default quality.
X264_OPTIONS = {"preset": "superfast", "crf": "23"}
# Frames are converted with OpenCV's BGR->I420 (BT.601 matrix, limited range); camera frames are
# sRGB-like (BT.709 primaries and transfer). Tagged, so players convert back to the same colours.
COLOUR_TAGS = {"colorspace": "smpte170m", "color_range": "tv",
               "color_primaries": "bt709", "color_trc": "bt709"}
TIMED_BASE = Fraction(1, 1000)   # the time unit of a timed file's frames: a millisecond


class VideoFile(Protocol):
    """An open video file that takes BGR frames of one size at a constant frame rate."""

    def write(self, bgr: np.ndarray) -> None: ...

    def close(self) -> None: ...


# (path, (width, height), fps) -> an open VideoFile; raises when it cannot be opened
VideoOpener = Callable[[Path, tuple[int, int], float], VideoFile]


def _frame_rate(fps: float) -> Fraction:
    return Fraction(round(fps * 1000), 1000)


class H264File:
    """H.264, yuv420p, in the container the file name implies, written with PyAV.

    yuv420p needs an even width and height: an odd frame gets its last column
    and/or row repeated (padded by one pixel; nothing of the frame is lost).

    By default the frame rate is constant (``fps``; the n-th frame is shown at n/fps).
    ``timed=True`` writes each frame at the time given to :meth:`write` instead (seconds
    from the file's start, in milliseconds: a variable frame rate), so a file of frames
    that came irregularly, or of a stream thinned to fewer frames, still lasts as long as
    they did; ``fps`` is then the nominal rate, which also sets how long the last frame shows.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: float,
                 encoder: str = "libx264", *, timed: bool = False) -> None:
        import av

        self._av = av
        width, height = size
        self._pad = (width % 2, height % 2)
        self.size = (width + self._pad[0], height + self._pad[1])
        self._pts = 0
        self._timed = timed
        self._container: Any = av.open(str(path), "w")
        try:
            self._stream = self._container.add_stream(encoder, rate=_frame_rate(fps))
            if timed:
                self._stream.codec_context.time_base = TIMED_BASE
            self._stream.width, self._stream.height = self.size
            self._stream.pix_fmt = "yuv420p"
            options = dict(COLOUR_TAGS)
            if self._stream.codec_context.name == "libx264":
                options.update(X264_OPTIONS)
            self._stream.options = options
            self._container.start_encoding()     # opens the encoder, writes the header: fail now
        except BaseException:
            try:
                self._container.close()
            except Exception:               # the first error is the one worth reporting
                pass
            raise

    def write(self, bgr: np.ndarray, t: Optional[float] = None) -> None:
        """Encode one frame; ``t``: its time in seconds from the file's start (``timed`` only)."""
        if (t is not None) != self._timed:
            raise ValueError("a frame's time is given exactly when the file was opened with timed=True")
        if self._pad != (0, 0):
            bgr = cv2.copyMakeBorder(bgr, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_REPLICATE)
        frame = self._av.VideoFrame.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420),
                                                 format="yuv420p")
        if t is None:
            frame.pts = self._pts                # constant frame rate: pts counts frames
        else:                                    # strictly increasing, in milliseconds
            frame.pts = max(self._pts, round(t / TIMED_BASE))
            frame.time_base = TIMED_BASE
        self._pts = frame.pts + 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the frames the encoder still holds, then write the trailer (the index)."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
        finally:
            container.close()


class OpenCvFile:
    """Any FourCC OpenCV's FFmpeg can write, with ``cv2.VideoWriter``."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, fourcc: str) -> None:
        self.size = size
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            self._writer.release()
            raise SinkError(f"OpenCV cannot open a writer for codec {fourcc!r} and this file type")

    def write(self, bgr: np.ndarray) -> None:
        self._writer.write(bgr)

    def close(self) -> None:
        self._writer.release()


def h264_encoders() -> tuple[list[str], str]:
    """The H.264 encoders PyAV has here, best first; else ([], why not)."""
    try:
        import av
    except ImportError as exc:
        return [], f"PyAV is not installed ({exc})"
    found: list[str] = []
    for name in H264_ENCODERS:
        try:
            codec = av.Codec(name, "w")
        except ValueError:                      # av's UnknownCodecError
            continue
        if codec.name not in found:
            found.append(codec.name)
    return found, "" if found else "PyAV's FFmpeg has no H.264 encoder"


def try_open(opener: VideoOpener, target: Path) -> Optional[str]:
    """None when ``opener`` can write a small video at ``target``; else why not.

    The probe file is removed unless ``target`` existed before.
    """
    existed = target.exists()
    try:
        video = opener(target, (64, 48), DEFAULT_FPS)
        try:
            video.write(np.zeros((48, 64, 3), np.uint8))
        finally:
            video.close()
        return None
    except Exception as exc:       # FFmpeg, OpenCV and OS errors alike: the reason is reported
        return str(exc) or type(exc).__name__
    finally:
        if not existed:
            try:
                target.unlink()
            except FileNotFoundError:
                pass
