"""Console sink: one readable line per label change (or per prediction) and per status."""

from __future__ import annotations

import sys
from typing import Any, Mapping, Optional, TextIO

from realtime.core.types import STATUS_STATES


def format_event(event: dict[str, Any]) -> Optional[str]:
    kind = event.get("type")
    stream = event.get("stream", "?")
    if kind == "prediction":
        return (f"[{stream}] {event['label']} ({event['score']:.2f})  "
                f"latency {event['latency_ms']:.0f} ms")
    if kind == "status":
        detail = f": {event['detail']}" if event.get("detail") else ""
        return f"[{stream}] {event['state']} {event['source']}{detail}"
    if kind == "change":
        prev = event.get("previous")
        lasted = event.get("previous_duration")
        after = f"  (after {prev}, {lasted:.1f} s)" if prev is not None and lasted is not None else ""
        return f"[{stream}] -> {event['label']} ({event['score']:.2f}){after}"
    if kind == "heartbeat":
        return (f"[{stream}] heartbeat: {event.get('fps', 0):.1f} fps, "
                f"{event.get('predictions_per_second', 0):.2f} windows/s, "
                f"latency p50 {event.get('latency_ms_p50') or 0:.0f} ms")
    return None


class ConsoleSink:
    """Prints label changes and connection changes (``every="change"``), or every prediction."""

    def __init__(self, every: str = "change", stream: Optional[TextIO] = None) -> None:
        self.name = "console"
        self.every = every
        self._out = stream

    def open(self) -> None:
        if self._out is None:
            self._out = sys.stdout

    def write(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        wanted = {"status", "prediction" if self.every == "prediction" else "change"}
        if kind not in wanted or (kind == "status" and event.get("state") not in STATUS_STATES):
            return
        line = format_event(event)
        if line is not None and self._out is not None:
            print(line, file=self._out, flush=True)

    def close(self) -> None:
        if self._out is not None:
            self._out.flush()
