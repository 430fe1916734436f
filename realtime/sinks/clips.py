"""Clips of events: each ``change`` of a stream recorded as a short H.264 video.

A clip holds ``pre_seconds`` of video before the change and ``post_seconds`` after it, named
``<stream>_<UTC time>Z_<label>.mp4`` (:func:`clip_name`), H.264 yuv420p in MP4 written with PyAV
(the overlay's writer, :class:`~realtime.sinks.overlay.video_file.H264File`), so browsers play it.
Its absolute path goes into the change event when the change is published, although the file is
finished only about ``post_seconds`` later: until then it is written as the hidden
``.<name>.part.mp4`` beside it and renamed when complete, so a file under a clip's name is always
whole (a program that got the event can wait for the path to exist, then play it).

Threads, and what each one does here:

- the capture thread of each stream calls :meth:`ClipRecorder.frame` with every raw frame; it never
  waits on encoding: it thins the frames to at most ``fps`` per second (a grid of frame times),
  scales a kept frame down to at most ``width`` pixels wide, appends it to the stream's buffer of
  recent frames and, while a clip of the stream records, to that clip's list of frames to encode;
  the lock it takes is only ever held for list operations;
- the inference thread calls :meth:`ClipRecorder.start_clip` for a change before publishing it:
  the clip's path is chosen there, and its frames from ``pre_seconds`` before the change's frame
  (the window's newest) are taken from the buffer (shared, not copied);
- the recorder's own thread (``clips-writer``) encodes the clips' frames as they come, each at its
  frame's timestamp (so a clip lasts as long as the frames did: ``pre + post`` seconds, within a
  frame interval, when the stream delivers frames steadily), finishes a file once its last frame
  is in, then deletes the oldest clips beyond ``max_clips`` or ``max_bytes``.

Memory is bounded. A stream's buffer holds the frames of the last ``pre_seconds + lag`` seconds
(``lag``: how long after its frame a change may be found and still get all its seconds before:
1 s for cameras and files in real time, a window's span for files read ``fast``), and never more
than ``ceil((pre_seconds + lag) * fps) + 1`` frames of at most ``width`` pixels wide: at the
defaults (3 s, 15 fps, 640 px) about 61 frames of a 16:9 camera, 42 MB. A stream has at most one
clip recording and :data:`MAX_UNFINISHED` clips not yet written (their frames are the buffer's
plus at most ``post_seconds * fps`` more each); a change beyond that gets no clip (``clip: null``,
counted as ``skipped``).

A change that comes while a clip of the same stream is still recording ends that clip there (it
is shorter than ``pre + post``) and starts the new one, whose seconds before its change repeat the
end of the previous clip: each clip shows its own change with what led to it, and one stream never
records two clips at once. A change early in a stream, or found more than ``lag`` after its
frame, gets fewer seconds before it.

:meth:`ClipRecorder.finish` (at ``Pipeline.stop``, once capture has stopped) ends every clip in
progress with the frames it has; :meth:`ClipRecorder.join` waits for the writer to encode them and
finish the files. A clip that cannot be written (the folder removed, the disk full, the encoder
failing) is logged once, counted (``failed``) and its partial file removed; the rest goes on.
"""

from __future__ import annotations

import collections
import errno
import functools
import logging
import math
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from realtime.core.errors import SinkError
from realtime.core.sampling import SampleGrid
from realtime.core.types import FrameMeta
from realtime.sinks.clip_files import (CLIP_NAME, PART_NAME, PART_SUFFIX, STALE_PART_SECONDS, clip_name,
                                       default_clips_dir, prune)
from realtime.sinks.overlay.video_file import H264File, VideoOpener, h264_encoders, try_open
from realtime.threads import start_thread

log = logging.getLogger(__name__)

__all__ = ["CLIP_NAME", "LAG_SECONDS", "MAX_UNFINISHED", "STALE_PART_SECONDS", "ClipRecorder", "clip_name",
           "default_clips_dir", "fit_width", "prune"]

LAG_SECONDS = 1.0        # a change found up to this long after its frame still gets all its pre seconds
MAX_UNFINISHED = 3       # clips of one stream recording or waiting to be written; a change beyond gets none


def fit_width(bgr: np.ndarray, width: int) -> np.ndarray:
    """``bgr`` scaled down to ``width`` pixels wide (aspect kept) if it is wider; else itself."""
    h, w = bgr.shape[:2]
    if w <= width:
        return bgr
    return cv2.resize(bgr, (width, max(2, round(h * width / w))), interpolation=cv2.INTER_AREA)


@dataclass(eq=False)
class _Frame:
    ts: float                   # the stream's sampling clock (FrameMeta.ts), seconds
    index: int                  # FrameMeta.index
    image: np.ndarray           # BGR, at most ``width`` wide; shared by the buffer and clips


@dataclass(eq=False)
class _Clip:
    """One clip: frames waiting for the writer, and the writer's state (its thread only)."""

    path: Path
    stream: str
    end_ts: float               # frames from here on belong to the next clip, if any
    fps: float                  # nominal rate of the file (how long its last frame shows)
    pending: list[_Frame] = field(default_factory=list)
    ended: bool = False         # no more frames will come
    first_ts: Optional[float] = None
    size: Optional[tuple[int, int]] = None
    video: Any = None
    frames: int = 0
    failed: bool = False

    @property
    def partial(self) -> Path:
        """Where it is written until finished (hidden, then renamed to ``path``)."""
        return self.path.with_name(f".{self.path.stem}{PART_SUFFIX}")


class _StreamBuffer:
    """One stream's recent frames (bounded by time and by count) and its clip recording."""

    def __init__(self, seconds: float, fps: float) -> None:
        self.seconds = seconds
        self.frames: collections.deque[_Frame] = collections.deque(maxlen=math.ceil(seconds * fps) + 1)
        self.grid = SampleGrid(1.0 / fps)
        self.last_ts: Optional[float] = None   # the capture thread's, for the grid
        self.recording: Optional[_Clip] = None
        self.unfinished = 0


class ClipRecorder:
    """Records each change of a stream as a short H.264 clip in ``directory`` (see the module).

    Args:
        directory: where clips go (created at ``open()``); None = :func:`default_clips_dir`.
        pre_seconds, post_seconds: video before and after the change.
        max_clips, max_bytes: keep at most this many clips, and at most this many bytes of them.
        fps: frames kept per second at most (a faster stream is thinned).
        width: frames wider than this are scaled down to it.
    """

    def __init__(self, directory: Optional[str | Path] = None, *, pre_seconds: float = 3.0,
                 post_seconds: float = 3.0, max_clips: int = 100, max_bytes: float = 2e9,
                 fps: float = 15.0, width: int = 640) -> None:
        if pre_seconds < 0 or post_seconds < 0 or pre_seconds + post_seconds <= 0:
            raise ValueError("pre_seconds and post_seconds must be >= 0, and not both 0")
        if fps <= 0 or width < 2 or max_clips < 1 or max_bytes <= 0:
            raise ValueError("fps, width, max_clips and max_bytes must be positive")
        base = Path(directory).expanduser() if directory else default_clips_dir()
        self.directory = Path(os.path.abspath(base))
        self.pre_seconds = float(pre_seconds)
        self.post_seconds = float(post_seconds)
        self.max_clips = int(max_clips)
        self.max_bytes = float(max_bytes)
        self.fps = float(fps)
        self.width = int(width)
        self.written = 0          # clips finished
        self.failed = 0           # clips that could not be written
        self.skipped = 0          # changes that got no clip (too many unfinished, or no frames)
        self.removed = 0          # old clips deleted to keep the bounds
        self._cond = threading.Condition()
        self._buffers: dict[str, _StreamBuffer] = {}
        self._jobs: list[_Clip] = []
        self._names: set[str] = set()      # names of clips not finished yet
        self._names_lock = threading.Lock()
        self._open_video: Optional[VideoOpener] = None
        self._thread: Optional[threading.Thread] = None
        self._closing = False
        self._warned: set[str] = set()
        self._last_mtime = 0

    # ------------------------------------------------------------------ lifecycle
    def add_stream(self, stream: str, lag_seconds: float = LAG_SECONDS) -> None:
        """Buffer ``stream``'s frames for ``pre_seconds + lag_seconds`` (see the module)."""
        with self._cond:
            self._buffers[stream] = _StreamBuffer(self.pre_seconds + max(0.0, lag_seconds), self.fps)

    def open(self) -> None:
        """Create the folder and check that H.264 clips can be written there; start the writer.

        Raises SinkError naming the folder when they cannot."""
        target = self.directory
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"clips.dir: cannot write clips to {target}: {exc.strerror}") from None
        if not target.is_dir():
            raise SinkError(f"clips.dir: cannot write clips to {target}: not a folder")
        if not os.access(target, os.W_OK | os.X_OK):
            raise SinkError(f"clips.dir: cannot write clips to {target}: {os.strerror(errno.EACCES)}")
        encoders, why = h264_encoders()
        failures = [why] if why else []
        probe = target / f".probe-{os.getpid()}.mp4"
        for encoder in encoders:
            opener = functools.partial(H264File, encoder=encoder, timed=True)
            why = try_open(_untimed(opener), probe)
            if why is None:
                self._open_video = opener
                break
            failures.append(f"{encoder}: {why}")
        if self._open_video is None:
            raise SinkError(f"clips.dir: cannot write H.264 clips to {target}: {'; '.join(failures)}")
        self._remove_stale_parts()
        self._prune()
        self._thread = start_thread(self._write_loop, "clips-writer")
        log.info("clips: each change recorded to %s (%.3g s before, %.3g s after; the newest %d, "
                 "under %.3g GB)", target, self.pre_seconds, self.post_seconds, self.max_clips,
                 self.max_bytes / 1e9)

    def _remove_stale_parts(self) -> None:
        """Partial clips left by a run that died (another run may be writing to the same folder,
        so only old ones)."""
        cutoff = time.time() - STALE_PART_SECONDS
        with os.scandir(self.directory) as entries:
            for entry in entries:
                try:
                    if PART_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False) \
                            and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    pass

    def finish(self) -> None:
        """End every clip in progress with the frames it has; no clip starts after this."""
        with self._cond:
            self._closing = True
            for buf in self._buffers.values():
                if buf.recording is not None:
                    buf.recording.ended = True
                    buf.recording = None
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the writer to finish every clip; False if it did not."""
        if self._thread is None:
            return True
        self._thread.join(max(0.0, timeout))
        if self._thread.is_alive():
            with self._cond:
                left = [str(c.path) for c in self._jobs]
            log.warning("clips: not finished within %.1f s: %s", timeout, ", ".join(left) or "?")
            return False
        return True

    def close(self, timeout: float = 2.0) -> bool:
        """:meth:`finish`, then :meth:`join`."""
        self.finish()
        return self.join(timeout)

    def buffered(self, stream: str) -> tuple[int, int]:
        """(frames, bytes) held for ``stream``'s seconds before a change."""
        with self._cond:
            buf = self._buffers.get(stream)
            frames = list(buf.frames) if buf is not None else []
        return len(frames), sum(f.image.nbytes for f in frames)

    def stats(self) -> dict[str, int]:
        with self._cond:
            recording = len(self._jobs)
        return {"written": self.written, "failed": self.failed, "skipped": self.skipped,
                "removed": self.removed, "recording": recording}

    # ------------------------------------------------------------------ capture threads
    def frame(self, stream: str, bgr: np.ndarray, meta: FrameMeta) -> None:
        """A raw frame of ``stream`` (the capture thread; never waits on encoding).

        The array is kept by reference when it is narrow enough: sources hand over a fresh one
        per frame."""
        buf = self._buffers.get(stream)
        if buf is None:
            with self._cond:
                buf = self._buffers.setdefault(stream, _StreamBuffer(self.pre_seconds + LAG_SECONDS, self.fps))
        if buf.last_ts is not None and meta.ts < buf.last_ts:
            buf.grid.reset()                 # the clock went back (a new source): a new grid
        keep = buf.grid.keep(meta.ts)
        image = fit_width(bgr, self.width) if keep else None
        with self._cond:
            if self._closing:
                return
            if buf.last_ts is not None and meta.ts < buf.last_ts:
                buf.frames.clear()
            buf.last_ts = meta.ts
            item = None
            if image is not None:
                item = _Frame(meta.ts, meta.index, image)
                buf.frames.append(item)
                while buf.frames and buf.frames[0].ts < meta.ts - buf.seconds:
                    buf.frames.popleft()
            clip = buf.recording
            if clip is None:
                return
            if meta.ts >= clip.end_ts:
                clip.ended = True
                buf.recording = None
            elif item is not None:
                clip.pending.append(item)
            else:
                return
            self._cond.notify_all()

    # ------------------------------------------------------------------ the inference thread
    def start_clip(self, stream: str, frame_index: int, label: str, wall: float) -> Optional[str]:
        """Start the clip of a change whose window ends on frame ``frame_index``, captured at
        ``wall`` (unix epoch); returns its absolute path, or None when it gets no clip."""
        if self._thread is None:
            return None
        path = self._reserve(clip_name(stream, wall, label))   # looks at the disk: not under the lock
        with self._cond:
            if self._closing:
                return None
            buf = self._buffers.setdefault(stream, _StreamBuffer(self.pre_seconds + LAG_SECONDS, self.fps))
            if buf.recording is not None:        # the running clip ends where this one starts
                buf.recording.ended = True
                buf.recording = None
                self._cond.notify_all()
            if not buf.frames or buf.unfinished >= MAX_UNFINISHED:
                self._skip(stream, "no frames yet" if not buf.frames else
                           f"{MAX_UNFINISHED} clips still being written")
                self._names.discard(path.name)
                return None
            t0 = self._change_ts(buf, frame_index)
            frames = [f for f in buf.frames if t0 - self.pre_seconds <= f.ts < t0 + self.post_seconds]
            clip = _Clip(path, stream, end_ts=t0 + self.post_seconds, fps=self._nominal_fps(buf),
                         pending=frames)
            if buf.last_ts is not None and buf.last_ts >= clip.end_ts:
                clip.ended = True                # every frame it needs has come already
            else:
                buf.recording = clip
            buf.unfinished += 1
            self._jobs.append(clip)
            self._cond.notify_all()
            return str(clip.path)

    @staticmethod
    def _change_ts(buf: _StreamBuffer, frame_index: int) -> float:
        """The time of the change's frame: the newest kept frame up to it (else the oldest kept)."""
        for f in reversed(buf.frames):
            if f.index <= frame_index:
                return f.ts
        return buf.frames[0].ts

    def _nominal_fps(self, buf: _StreamBuffer) -> float:
        """The buffer's frame rate (median spacing), at most ``fps``: how long a last frame shows."""
        times = [f.ts for f in buf.frames]
        deltas = [b - a for a, b in zip(times, times[1:]) if b > a]
        if not deltas:
            return self.fps
        return min(self.fps, max(1.0, 1.0 / statistics.median(deltas)))

    def _reserve(self, name: str) -> Path:
        """``directory / name``, or ``<stem>-2.mp4``, ... when that is taken (same second)."""
        stem, n = name[:-len(".mp4")], 2
        with self._names_lock:
            while name in self._names or (self.directory / name).exists():
                name, n = f"{stem}-{n}.mp4", n + 1
            self._names.add(name)            # until its file is finished (or given up)
        return self.directory / name

    def _skip(self, stream: str, why: str) -> None:
        self.skipped += 1
        if why not in self._warned:
            self._warned.add(why)
            log.warning("clips: a change of %s gets no clip: %s (further ones are counted)", stream, why)

    # ------------------------------------------------------------------ the writer thread
    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: (self._closing and not self._jobs)
                                    or any(c.pending or c.ended for c in self._jobs), 0.5)
                if self._closing and not self._jobs:
                    return
                work = []
                for clip in self._jobs:
                    if clip.pending or clip.ended:
                        work.append((clip, clip.pending, clip.ended))
                        clip.pending = []
            done = []
            for clip, frames, ended in work:
                self._encode(clip, frames)
                if ended:                        # its last frames were taken with ``ended``
                    self._finish(clip)
                    done.append(clip)
            if done:
                with self._cond:
                    for clip in done:
                        self._jobs.remove(clip)
                        self._buffers[clip.stream].unfinished -= 1
                self._prune()

    def _encode(self, clip: _Clip, frames: list[_Frame]) -> None:
        if clip.failed or not frames:
            return
        try:
            if clip.video is None:
                assert self._open_video is not None
                h, w = frames[0].image.shape[:2]
                clip.size = (w, h)
                clip.first_ts = frames[0].ts
                clip.video = self._open_video(clip.partial, clip.size, clip.fps)
            assert clip.size is not None and clip.first_ts is not None
            for f in frames:
                image = f.image
                if (image.shape[1], image.shape[0]) != clip.size:     # the source changed size
                    image = cv2.resize(image, clip.size, interpolation=cv2.INTER_AREA)
                clip.video.write(image, f.ts - clip.first_ts)
                clip.frames += 1
        except Exception as exc:        # FFmpeg and OS errors alike: this clip is lost, not the run
            self._fail(clip, exc)

    def _finish(self, clip: _Clip) -> None:
        try:
            if clip.failed:
                return
            if clip.video is None:
                with self._cond:
                    self._skip(clip.stream, "no frames")
                return
            try:
                video, clip.video = clip.video, None
                video.close()                # flushes the encoder, writes the index
                os.replace(clip.partial, clip.path)     # complete under its name, or not there
            except Exception as exc:
                self._fail(clip, exc)
                return
            now = max(time.time_ns(), self._last_mtime + 1)   # finishing order, even within a tick
            self._last_mtime = now
            try:
                os.utime(clip.path, ns=(now, now))
            except OSError:
                pass
            self.written += 1
            log.debug("clips: %s: %d frames", clip.path, clip.frames)
        finally:
            with self._names_lock:
                self._names.discard(clip.path.name)

    def _fail(self, clip: _Clip, exc: BaseException) -> None:
        clip.failed = True
        self.failed += 1
        video, clip.video = clip.video, None
        if video is not None:
            try:
                video.close()
            except Exception:
                pass
        try:
            clip.partial.unlink()
        except OSError:
            pass
        reason = str(exc) or type(exc).__name__
        if self.failed == 1:
            log.error("clips: cannot write %s: %s (further failures are counted)", clip.path, reason)
        else:
            log.debug("clips: cannot write %s: %s", clip.path, reason)

    def _prune(self) -> None:
        with self._cond:
            busy = [c.path for c in self._jobs]
        try:
            removed = prune(self.directory, self.max_clips, self.max_bytes, keep=busy)
        except OSError as exc:
            if "prune" not in self._warned:
                self._warned.add("prune")
                log.warning("clips: cannot list %s to keep its bounds: %s", self.directory, exc.strerror)
            return
        if removed:
            self.removed += len(removed)
            log.debug("clips: deleted %d old clips: %s", len(removed), ", ".join(p.name for p in removed))


class _TimedProbe:
    """A timed video file seen as the untimed one :func:`try_open` writes a frame to."""

    def __init__(self, video: H264File) -> None:
        self._video = video

    def write(self, bgr: np.ndarray) -> None:
        self._video.write(bgr, 0.0)

    def close(self) -> None:
        self._video.close()


def _untimed(opener: VideoOpener) -> VideoOpener:
    """``opener`` of timed files, as :func:`try_open` calls an opener (frames without times)."""
    def open_untimed(path: Path, size: tuple[int, int], fps: float) -> _TimedProbe:
        return _TimedProbe(opener(path, size, fps))   # type: ignore[arg-type]
    return open_untimed
