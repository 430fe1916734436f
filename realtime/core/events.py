"""Events sent to sinks: plain JSON-ready dicts with a per-stream sequence number.

Every event has ``schema_version``, ``type``, ``stream``, ``seq`` (per stream,
consecutive, so gaps are detectable) and ``time`` (unix epoch when emitted).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

from realtime.core.smoothing import Change, Smoothed
from realtime.core.types import Prediction, StreamStatus

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


class EventFactory:
    """Stamps events with the schema version, sequence number and time (thread-safe)."""

    def __init__(self) -> None:
        self._seq: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def make(self, kind: str, stream: str, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            seq = self._seq[stream]
            self._seq[stream] = seq + 1
        event = {"schema_version": SCHEMA_VERSION, "type": kind, "stream": stream, "seq": seq,
                 "time": _round(time.time())}
        event.update(fields)
        return event

    def prediction(self, pred: Prediction) -> dict[str, Any]:
        return self.make("prediction", pred.stream, prediction_fields(pred))

    def status(self, status: StreamStatus) -> dict[str, Any]:
        return self.make("status", status.stream, status_fields(status))
