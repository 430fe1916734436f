"""Typed events: one class per kind, read-only, the wire form unchanged (events.schema.json)."""

from __future__ import annotations

import json

import pytest

from realtime.core.events import (
    ChangeEvent,
    Event,
    EventFactory,
    HeartbeatEvent,
    PredictionEvent,
    StatusEvent,
    from_json,
    wire,
)
from realtime.core.types import LabelScore, Prediction, StreamState, StreamStatus


def prediction(stream: str = "cam0") -> Prediction:
    top = (LabelScore("squat", 0.8), LabelScore("situp", 0.15))
    return Prediction(stream, 100.0, 102.1, 3.0, 5.1, top, 120.5, 110.25, (0, 4, 8))


def test_the_factory_makes_one_typed_class_per_kind_with_consecutive_seq() -> None:
    f = EventFactory()
    p = f.prediction(prediction())
    s = f.status(StreamStatus("cam0", StreamState.LOST, "camera:0", "no frame for 5 s"))
    c = f.make("change", "cam0", {"label": "squat", "score": 0.8, "previous": None,
                                  "previous_duration": None, "latency_ms": 1.0})
    h = f.make("heartbeat", "cam0", {"frames": 3})
    assert [type(e) for e in (p, s, c, h)] == [PredictionEvent, StatusEvent, ChangeEvent, HeartbeatEvent]
    assert [e.seq for e in (p, s, c, h)] == [0, 1, 2, 3] and {e.stream for e in (p, s, c, h)} == {"cam0"}
    assert (p.type, p.label, p.score, p.media_end, p.frames) == ("prediction", "squat", 0.8, 5.1, [0, 4, 8])
    assert p.top_k == [("squat", 0.8), ("situp", 0.15)] and p.latency_ms == 120.5
    assert s.state is StreamState.LOST and s.detail == "no frame for 5 s" and s.source == "camera:0"
    assert c.previous is None and c.label == "squat"


def test_events_are_read_only_mappings_whose_wire_form_is_plain_json() -> None:
    e = EventFactory().status(StreamStatus("cam0", StreamState.CONNECTED, "camera:0"))
    with pytest.raises(TypeError):
        e["state"] = "lost"                     # type: ignore[index]
    data = e.to_json()
    assert type(data) is dict and data == dict(e) and data["state"] == "connected"
    assert type(data["state"]) is str                    # the Enum member left at the boundary
    data["state"] = "lost"                               # a copy: the event is unchanged
    assert e["state"] == "connected"
    assert json.loads(json.dumps(wire(e))) == dict(e)
    assert wire({"type": "x"}) == {"type": "x"}          # sinks also take plain dicts


@pytest.mark.parametrize("kind,cls", [("prediction", PredictionEvent), ("change", ChangeEvent),
                                      ("status", StatusEvent), ("heartbeat", HeartbeatEvent),
                                      ("mystery", Event)])
def test_from_json_gives_the_typed_event_back(kind, cls) -> None:
    data = {"schema_version": 1, "type": kind, "stream": "s", "seq": 7, "time": 1.5}
    event = from_json(data)
    assert type(event) is cls and event.seq == 7 and event == data
