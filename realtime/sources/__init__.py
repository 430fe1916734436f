"""Frame sources: what a source is (:mod:`.base`), OpenCV's cameras, streams and files
(:mod:`.opencv`), and finding out why a network source does not answer (:mod:`.netprobe`).

A new kind of source implements :class:`FrameSource`; :func:`open_source` picks one for a URI.
"""

from realtime.sources.base import NETWORK_SCHEMES, FrameSource, SourceInfo, check_source, classify_source
from realtime.sources.opencv import OpenCVSource, open_source, quiet_native_logs

__all__ = ["NETWORK_SCHEMES", "FrameSource", "SourceInfo", "check_source", "classify_source",
           "OpenCVSource", "open_source", "quiet_native_logs"]
