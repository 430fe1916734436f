"""What a frame source is: the ``FrameSource`` protocol, and telling cameras, URLs and files apart.

Every source follows ``FrameSource``. ``read()`` returns one BGR frame with the source's own
timestamp, ``None`` at the end of a file, and raises ``SourceError`` when a live stream fails or
stalls past its read timeout (the capture worker then reconnects).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol
from urllib.parse import urlsplit

import numpy as np

from realtime.core.errors import SourceError
from realtime.core.redact import expand_env, host_of, redact_url, remember

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


@dataclass(frozen=True, slots=True)
class SourceInfo:
    kind: str                 # camera | network | file
    uri: str                  # as given (may hold credentials: never log it)
    name: str                 # redacted, safe for logs and events

    @property
    def live(self) -> bool:
        return self.kind != "file"


def classify_source(uri: str | int) -> SourceInfo:
    """Decide what kind of source ``uri`` names: a camera index, a URL or a file."""
    text = str(uri).strip()
    if not text:
        raise SourceError("source is empty: give a camera index (0), a stream URL or a video file")
    if re.fullmatch(r"\d+", text):
        return SourceInfo("camera", text, f"camera:{text}")
    if text.startswith("/dev/video"):
        return SourceInfo("camera", text, text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in NETWORK_SCHEMES:
        try:
            text = expand_env(text)
        except KeyError as exc:
            raise SourceError(f"{exc.args[0]} ({redact_url(text)})") from None
        remember(text)
        return SourceInfo("network", text, redact_url(text))
    if scheme == "file":
        text = urlsplit(text).path
    elif scheme:
        raise SourceError(f"unsupported source URL scheme {scheme!r} in {redact_url(text)}: "
                          f"use one of {', '.join(NETWORK_SCHEMES)}, a camera index or a file path")
    return SourceInfo("file", text, text)


class FrameSource(Protocol):
    """What the capture worker needs from a source."""

    info: SourceInfo

    def open(self) -> None:
        """Connect or open; raise SourceError naming the source on failure."""

    def read(self) -> Optional[tuple[np.ndarray, Optional[float]]]:
        """Next (BGR frame, source timestamp in seconds or None); None at end of file."""

    @property
    def fps(self) -> Optional[float]:
        """Nominal frame rate if the source reports a plausible one."""

    def close(self) -> None: ...


def check_source(info: SourceInfo) -> None:
    """Raise SourceError for what is wrong with ``info`` before any attempt to open it: a file
    that is not there, a URL without a host. (A run checks this before loading its model.)"""
    if info.kind == "file":
        path = Path(info.uri)
        if not path.exists():
            raise SourceError(f"video file not found: {info.uri}")
        if not path.is_file():
            raise SourceError(f"not a video file: {info.uri}")
    elif info.kind == "network" and not host_of(info.uri):
        raise SourceError(f"cannot open {info.name}: the URL names no host (or its host cannot be "
                          f"parsed: an IPv6 address goes in brackets, rtsp://[::1]:8554/path)")
