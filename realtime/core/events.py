"""Events sent to sinks and callbacks: one typed, read-only class per kind, JSON at the boundary.

Every event has ``schema_version``, ``type``, ``stream``, ``seq`` (per stream,
consecutive, so gaps are detectable) and ``time`` (unix epoch when emitted).
:class:`PredictionEvent`, :class:`ChangeEvent`, :class:`StatusEvent` and
:class:`HeartbeatEvent` give their fields as typed attributes; each is also a read-only
mapping of the JSON fields (``event["label"]``), and ``to_json()`` is its wire form, written
by the jsonl and ZeroMQ sinks exactly as ``events.schema.json`` describes it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar, Iterator, Optional

from realtime.core.smoothing import Change, Smoothed
from realtime.core.types import Prediction, StreamState, StreamStatus

SCHEMA_VERSION = 1


def _round(x: float, digits: int = 6) -> float:
    return round(float(x), digits)


def prediction_fields(pred: Prediction) -> dict[str, Any]:
    return {
        "window_start": _round(pred.window_start),
        "window_end": _round(pred.window_end),
        "media_start": None if pred.media_start is None else _round(pred.media_start, 4),
        "media_end": None if pred.media_end is None else _round(pred.media_end, 4),
        "frames": list(pred.frame_indices),
        "label": pred.label,
        "score": _round(pred.score),
        "top_k": [{"label": s.label, "score": _round(s.score)} for s in pred.top_k],
        "latency_ms": round(pred.latency_ms, 2),
        "inference_ms": round(pred.inference_ms, 2),
    }


def _pairs(items: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    return [{"label": label, "score": _round(score)} for label, score in items]


def smoothed_fields(pred: Prediction, sm: Smoothed) -> dict[str, Any]:
    """A prediction event: ``label``/``score``/``top_k`` smoothed, ``raw_top_k`` as the model said."""
    fields = prediction_fields(pred)
    fields.update({"label": sm.label, "score": _round(sm.score), "uncertain": sm.uncertain,
                   "top_k": _pairs(sm.top_k), "raw_top_k": _pairs(sm.raw_top_k)})
    return fields


def change_fields(pred: Prediction, sm: Smoothed, change: Change) -> dict[str, Any]:
    return {
        "label": change.label, "score": _round(change.score), "uncertain": change.uncertain,
        "previous": change.previous,
        "previous_duration": None if change.previous_duration is None else round(change.previous_duration, 3),
        "window_start": _round(pred.window_start), "window_end": _round(pred.window_end),
        "media_end": None if pred.media_end is None else _round(pred.media_end, 4),
        "top_k": _pairs(sm.top_k), "latency_ms": round(pred.latency_ms, 2),
    }


def status_fields(status: StreamStatus) -> dict[str, Any]:
    return {
        "state": str(status.state),
        "source": status.source,
        "detail": status.detail,
        "attempt": status.attempt,
        "retry_in": status.retry_in,
        "counters": dict(status.counters),
    }


class Event(Mapping[str, Any]):
    """One event: typed attributes over its JSON fields, which it never changes."""

    kind: ClassVar[str] = ""
    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self._fields = dict(fields)

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._fields!r})"

    def to_json(self) -> dict[str, Any]:
        """The event as it goes on the wire (a new dict, JSON-ready)."""
        return dict(self._fields)

    def _pairs(self, key: str) -> list[tuple[str, float]]:
        """A ``[{"label", "score"}, ...]`` field as (label, score) pairs."""
        return [(item["label"], item["score"]) for item in self._fields.get(key, ())]

    @property
    def type(self) -> str:
        return self._fields["type"]

    @property
    def stream(self) -> str:
        return self._fields["stream"]

    @property
    def seq(self) -> int:
        return self._fields["seq"]

    @property
    def time(self) -> float:
        """Unix epoch seconds when it was emitted."""
        return self._fields["time"]


class _Labelled(Event):
    __slots__ = ()

    @property
    def label(self) -> str:
        return self._fields["label"]

    @property
    def score(self) -> float:
        return self._fields["score"]

    @property
    def uncertain(self) -> bool:
        """The best label is below ``smoothing.enter``: maybe an activity the model does not know."""
        return bool(self._fields.get("uncertain", False))

    @property
    def top_k(self) -> list[tuple[str, float]]:
        return self._pairs("top_k")

    @property
    def media_end(self) -> Optional[float]:
        """Seconds into a file where the window ends (None for live sources)."""
        return self._fields.get("media_end")

    @property
    def latency_ms(self) -> float:
        """From the window's newest frame being captured to this event."""
        return self._fields["latency_ms"]


class PredictionEvent(_Labelled):
    """A classified window, smoothed (``label``, ``score``, ``top_k``) and raw (``raw_top_k``)."""

    kind = "prediction"
    __slots__ = ()

    @property
    def window_start(self) -> float:
        return self._fields["window_start"]

    @property
    def window_end(self) -> float:
        return self._fields["window_end"]

    @property
    def media_start(self) -> Optional[float]:
        return self._fields.get("media_start")

    @property
    def frames(self) -> list[int]:
        return list(self._fields.get("frames", ()))

    @property
    def raw_top_k(self) -> list[tuple[str, float]]:
        return self._pairs("raw_top_k")

    @property
    def inference_ms(self) -> float:
        return self._fields["inference_ms"]


class ChangeEvent(_Labelled):
    """The stable (smoothed) label changed: from ``previous``, held ``previous_duration`` s."""

    kind = "change"
    __slots__ = ()

    @property
    def previous(self) -> Optional[str]:
        return self._fields.get("previous")

    @property
    def previous_duration(self) -> Optional[float]:
        return self._fields.get("previous_duration")

    @property
    def clip(self) -> Optional[str]:
        """With ``clips.enabled``: the absolute path of this change's video, finished about
        ``clips.post_seconds`` after the event; None when clips are off or none was recorded."""
        return self._fields.get("clip")


class StatusEvent(Event):
    """A stream's connection state changed (connected, lost, reconnecting, ...)."""

    kind = "status"
    __slots__ = ()

    @property
    def state(self) -> StreamState:
        return StreamState(self._fields["state"])

    @property
    def source(self) -> str:
        """The source, with any credentials hidden."""
        return self._fields["source"]

    @property
    def detail(self) -> str:
        return self._fields.get("detail", "")


class HeartbeatEvent(Event):
    """Rates, latency, drops and sink health, every ``events.heartbeat_seconds``."""

    kind = "heartbeat"
    __slots__ = ()


EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (PredictionEvent, ChangeEvent,
                                                                   StatusEvent, HeartbeatEvent)}


def from_json(data: Mapping[str, Any]) -> Event:
    """The typed event for a JSON event (e.g. one read from the feed); unknown types: Event."""
    return EVENT_TYPES.get(data.get("type", ""), Event)(data)


def wire(event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-ready dict of ``event`` (an :class:`Event`, or a dict already)."""
    return event.to_json() if isinstance(event, Event) else dict(event)


class EventFactory:
    """Stamps events with the schema version, sequence number and time (thread-safe)."""

    def __init__(self) -> None:
        self._seq: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def make(self, kind: str, stream: str, fields: dict[str, Any]) -> Event:
        with self._lock:
            seq = self._seq[stream]
            self._seq[stream] = seq + 1
        data = {"schema_version": SCHEMA_VERSION, "type": kind, "stream": stream, "seq": seq,
                "time": _round(time.time())}
        data.update(fields)
        return EVENT_TYPES.get(kind, Event)(data)

    def prediction(self, pred: Prediction) -> Event:
        return self.make("prediction", pred.stream, prediction_fields(pred))

    def status(self, status: StreamStatus) -> Event:
        return self.make("status", status.stream, status_fields(status))
