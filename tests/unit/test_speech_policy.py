"""The speech sink's pure parts: phrasing by verbosity, which change is announced as what, the
budget, picking the next announcement, earcons and the engine choice."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytest

from realtime.core.errors import SinkError
from realtime.sinks import earcons
from realtime.sinks.speech_engines import choose_engine, spd_say_command
from realtime.sinks.speech_policy import (AnnouncePolicy, Announcement, Budget, Kind, Part, Phrasing, Priority,
                                          Verbosity, choose)


def change(label: str, score: float = 0.9, previous: Optional[str] = None, uncertain: bool = False,
           duration: Optional[float] = 12.0, top_k=()) -> dict:
    return {"type": "change", "stream": "cam", "label": label, "score": score, "uncertain": uncertain,
            "previous": previous, "previous_duration": duration, "top_k": list(top_k)}


@pytest.mark.parametrize("verbosity, kind, expected", [
    ("minimal", Kind.STARTED, "abseiling"),
    ("minimal", Kind.ENDED, "abseiling ended"),
    ("minimal", Kind.MAYBE, "maybe abseiling"),
    ("normal", Kind.STARTED, "Now abseiling."),
    ("normal", Kind.ENDED, "Stopped abseiling."),
    ("normal", Kind.MAYBE, "Maybe abseiling."),
    ("normal", Kind.URGENT, "Warning: abseiling!"),
    ("detailed", Kind.STARTED, "Now abseiling, fairly sure, after 12 seconds of arm wrestling."),
    ("detailed", Kind.ENDED, "Stopped abseiling, after 12 seconds."),
    ("detailed", Kind.URGENT, "Warning: abseiling, fairly sure, after 12 seconds of arm wrestling!"),
])
def test_phrasing_by_verbosity(verbosity, kind, expected):
    phrasing = Phrasing(Verbosity(verbosity), template="Now {label}.")
    assert phrasing.text(kind, "abseiling", score=0.75, previous="arm_wrestling", duration=12.2) == expected


def test_template_fields_confidence_and_duration():
    phrasing = Phrasing(template="{label} ({confidence}), {previous} lasted {duration}")
    assert (phrasing.text(Kind.STARTED, "running", score=0.9, previous="sitting", duration=61)
            == "running (very sure), sitting lasted 1 minute")


def kinds(a: Optional[Announcement]) -> list[tuple[str, str]]:
    return [] if a is None else [(p.kind.value, p.label) for p in a.parts]


# Each case: the change, the label said last for the stream, and (priority, parts) of the result.
@pytest.mark.parametrize("event, said, priority, parts", [
    (change("abseiling"), None, Priority.ROUTINE, [("started", "abseiling")]),
    (change("abseiling"), "abseiling", None, []),                                    # no repeat
    (change("abseiling", 0.4), None, Priority.BACKGROUND, [("maybe", "abseiling")]),  # below min_score
    (change("abseiling", 0.1), None, None, []),                                       # below maybe_min_score
    (change("nothing", 0.7, previous="abseiling", uncertain=True,
            top_k=[{"label": "abseiling", "score": 0.3}]),
     "abseiling", Priority.BACKGROUND, [("ended", "abseiling")]),                     # no "maybe" of the same
    (change("nothing", 0.7, previous="abseiling", uncertain=True,
            top_k=[{"label": "juggling", "score": 0.3}]),
     "abseiling", Priority.BACKGROUND, [("ended", "abseiling"), ("maybe", "juggling")]),
    (change("arm_wrestling", previous="abseiling"), "abseiling", Priority.ROUTINE,
     [("ended", "abseiling"), ("started", "arm_wrestling")]),
    (change("arm_wrestling", previous="juggling"), "abseiling", Priority.ROUTINE,
     [("started", "arm_wrestling")]),                                                 # juggling never said
    (change("falling", previous="abseiling"), "abseiling", Priority.URGENT,
     [("ended", "abseiling"), ("urgent", "falling")]),
    (change("falling", 0.4), None, Priority.ROUTINE, [("maybe", "falling")]),        # maybe-urgent: not dropped
])
def test_what_a_change_becomes(event, said, priority, parts):
    policy = AnnouncePolicy(Phrasing(), min_score=0.5, announce_endings=True, announce_uncertain=True,
                            maybe_min_score=0.2, urgent_labels=["falling"])
    result = policy.on_change(event, said, now=0.0)
    assert kinds(result) == parts
    assert (result.priority if result else None) == priority


def test_a_stream_that_ends_ends_its_announced_activity():
    policy = AnnouncePolicy(Phrasing(), announce_endings=True)
    ending = policy.on_end("cam", "abseiling", now=0.0)
    assert kinds(ending) == [("ended", "abseiling")] and ending.priority is Priority.BACKGROUND
    assert policy.on_end("cam", None, 0.0) is None                                  # nothing was said
    assert AnnouncePolicy(Phrasing()).on_end("cam", "abseiling", 0.0) is None       # endings off


def test_endings_and_maybe_are_off_by_default():
    policy = AnnouncePolicy(Phrasing())
    assert policy.on_change(change("nothing", previous="abseiling", uncertain=True), "abseiling", 0) is None
    assert policy.on_change(change("abseiling", 0.3), None, 0) is None


def test_budget_never_exceeded_in_any_minute():
    budget = Budget(3)
    spent = []
    t = 0.0
    while t < 180:
        if budget.room(t) > 0:
            budget.spend(t)
            spent.append(t)
        t += 0.5
    for start in spent:
        assert sum(start <= s < start + 60 for s in spent) <= 3
    assert len(spent) == 9
    assert Budget(0).room(0) > 1000                       # 0: no budget


def announcement(prio: Priority, created: float = 0.0, parts=(("started", "a"),)) -> Announcement:
    return Announcement(prio, "cam", tuple(Part(Kind(k), label, label) for k, label in parts), created)


def test_choose_priorities_cooldown_budget_and_staleness():
    budget = Budget(2)
    slots = {p: announcement(p) for p in Priority}
    # urgent and on-demand skip the cooldown, in that order
    assert choose(slots, 1.0, ready_at=5.0, budget=budget, stale_seconds=10).item.priority is Priority.URGENT
    assert choose(slots, 1.0, ready_at=5.0, budget=budget, stale_seconds=10).item.priority is Priority.ON_DEMAND
    c = choose(slots, 1.0, ready_at=5.0, budget=budget, stale_seconds=10)
    assert c.item is None and c.wait == pytest.approx(4.0)          # routine waits for the cooldown
    assert choose(slots, 5.0, ready_at=5.0, budget=budget, stale_seconds=10).item.priority is Priority.ROUTINE
    budget.spend(5.0, 2)
    c = choose(slots, 6.0, ready_at=0, budget=budget, stale_seconds=10)
    assert c.item is None and c.wait == pytest.approx(4.0)          # background: until it goes stale
    c = choose(slots, 10.5, ready_at=0, budget=budget, stale_seconds=10)
    assert c.item is None and [a.priority for a in c.stale] == [Priority.BACKGROUND] and not slots


def test_choose_leaves_out_the_end_when_the_budget_has_room_for_one():
    budget = Budget(2)
    budget.spend(0.0)
    slots = {Priority.ROUTINE: announcement(Priority.ROUTINE, parts=(("ended", "a"), ("started", "b")))}
    item = choose(slots, 1.0, ready_at=0, budget=budget, stale_seconds=10).item
    assert [(p.kind, p.label) for p in item.parts] == [(Kind.STARTED, "b")]


# --------------------------------------------------------------------------- earcons
def dominant_hz(samples: np.ndarray, rate: int = earcons.RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def test_earcons_are_distinct_short_and_not_silent():
    sounds = {kind: earcons.earcon(kind) for kind in earcons.KINDS}
    signatures = set()
    for kind, s in sounds.items():
        assert s.dtype == np.int16 and 0.05 < len(s) / earcons.RATE < 0.5, kind
        rms = float(np.sqrt(np.mean(s.astype(np.float64) ** 2)))
        assert rms > 2000, (kind, rms)
        assert abs(int(s[0])) < 500 and abs(int(s[-1])) < 500, kind            # no click at the ends
        signatures.add((round(dominant_hz(s), -1), len(s)))
    assert len(signatures) == len(sounds)                                       # each kind sounds different
    # started rises, ended falls: the first half's dominant pitch is below (above) the second's
    for kind, rising in (("started", True), ("ended", False)):
        s = sounds[kind]
        first, second = dominant_hz(s[: len(s) // 2]), dominant_hz(s[len(s) // 2:])
        assert (first < second) == rising, (kind, first, second)
    assert dominant_hz(sounds["urgent"]) > 1500                                 # urgent is the high one


# --------------------------------------------------------------------------- engines
@pytest.mark.parametrize("requested, speak, module, binary, name, how", [
    ("auto", True, False, False, "pyttsx3", ""),
    ("auto", True, False, True, "speech-dispatcher", "spd-say"),
    ("auto", True, True, True, "speech-dispatcher", "speechd"),
    ("auto", False, True, True, "pyttsx3", ""),           # saving WAV files only: pyttsx3 writes them
    ("pyttsx3", True, True, True, "pyttsx3", ""),
    ("speech-dispatcher", True, False, True, "speech-dispatcher", "spd-say"),
])
def test_engine_choice(requested, speak, module, binary, name, how):
    choice = choose_engine(requested, speak=speak, which=lambda b: "/usr/bin/spd-say" if binary else None,
                           has_module=lambda m: module)
    assert (choice.name, choice.how) == (name, how) and choice.why


def test_speech_dispatcher_asked_for_but_missing_fails_at_open():
    with pytest.raises(SinkError, match="apt install speech-dispatcher"):
        choose_engine("speech-dispatcher", speak=True, which=lambda b: None, has_module=lambda m: False)


def test_spd_say_command_maps_priorities_and_settings():
    assert spd_say_command("Warning: falling!", Priority.URGENT, rate=175, volume=1.0) == [
        "spd-say", "--wait", "--application-name", "realtime", "--priority", "important",
        "--rate", "0", "--volume", "100", "--", "Warning: falling!"]
    assert "notification" in spd_say_command("Stopped x.", Priority.BACKGROUND)
    assert "message" in spd_say_command("Now x.", Priority.ROUTINE)
