"""The current state of every stream, from the events that pass: what a late subscriber needs.

A stream's state is one JSON document: the stable label and its score since when (from the last
``change``), and the stream's connection state (from the last ``status``)::

    {"stream": "camera0", "label": "abseiling", "score": 0.91, "uncertain": false,
     "since": 1764410105.2, "stream_state": "connected", "seq": 412, "time": 1764410110.8}

``seq`` and ``time`` are those of the last event that changed it, so a subscriber that also reads
the live events can drop the ones its snapshot already covers (``seq`` <= the snapshot's). The
MQTT sink publishes it retained; the ZeroMQ sink answers requests for it (docs/events-and-feed.md).
Thread-safe: updated by a sink's writer thread, read by others.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Mapping, Optional

from realtime.core.events import wire


class StreamStates:
    def __init__(self) -> None:
        self._states: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def update(self, event: Mapping[str, Any]) -> Optional[dict[str, Any]]:
        """Take one event; the stream's new state when this event changed it, else None."""
        data = wire(event)
        kind, stream = data.get("type"), data.get("stream")
        if kind not in ("change", "status") or not isinstance(stream, str):
            return None
        with self._lock:
            state = self._states.setdefault(stream, {"stream": stream, "label": None, "score": None,
                                                     "uncertain": None, "since": None, "stream_state": None,
                                                     "seq": None, "time": None})
            if kind == "change":
                state.update(label=data.get("label"), score=data.get("score"), uncertain=data.get("uncertain"),
                             since=data.get("time"))
            else:
                state["stream_state"] = data.get("state")
            state.update(seq=data.get("seq"), time=data.get("time"))
            return dict(state)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every stream's state, by stream name (copies)."""
        with self._lock:
            return copy.deepcopy(self._states)

    def streams(self) -> list[str]:
        with self._lock:
            return list(self._states)
