"""Console sink: one readable line per label change (or per prediction) and per status."""

from __future__ import annotations

import sys
from typing import Any, Optional, TextIO


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
        return f"[{stream}] -> {event['label']} ({event['score']:.2f})"
    return None


class ConsoleSink:
    """Prints predictions when the top label changes (``every="change"``) or always."""

    def __init__(self, every: str = "change", stream: Optional[TextIO] = None) -> None:
        self.name = "console"
        self.every = every
        self._out = stream
        self._last: dict[str, str] = {}

    def open(self) -> None:
        if self._out is None:
            self._out = sys.stdout

    def write(self, event: dict[str, Any]) -> None:
        if event.get("type") == "prediction" and self.every == "change":
            if self._last.get(event["stream"]) == event["label"]:
                return
            self._last[event["stream"]] = event["label"]
        if event.get("type") == "status" and event.get("state") in ("lost", "reconnecting",
                                                                    "recovered", "ended"):
            self._last.pop(event["stream"], None)
        line = format_event(event)
        if line is not None and self._out is not None:
            print(line, file=self._out, flush=True)

    def close(self) -> None:
        if self._out is not None:
            self._out.flush()
