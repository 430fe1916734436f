"""The speech sink with the real engine (pyttsx3 + espeak-ng), listened to through its WAV files:
names and order for real change events, urgent labels interrupting, no backlog, the budget,
on-demand answers and earcons."""

from __future__ import annotations

import ctypes.util
import time
import wave
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from realtime.core.events import EventFactory, change_fields
from realtime.core.smoothing import LabelSmoother, SmoothingParams
from realtime.core.types import LabelScore, Prediction
from realtime.sinks import earcons
from realtime.sinks.speech import SpeechSink


def _espeak_available() -> bool:
    try:
        import pyttsx3  # noqa: F401
    except ImportError:
        return False
    return bool(ctypes.util.find_library("espeak-ng") or ctypes.util.find_library("espeak"))


pytestmark = pytest.mark.skipif(not _espeak_available(), reason="pyttsx3 or espeak-ng is not installed")

LABELS = ["abseiling", "arm_wrestling", "falling", "juggling"]


def change_events(segments: list[tuple[Optional[str], float]], stream: str = "cam") -> list:
    """Real change events: a LabelSmoother fed one window every 0.5 s for each (label, seconds)
    segment (None: no clear activity), stamped by an EventFactory."""
    smoother = LabelSmoother(LABELS, SmoothingParams(alpha=0.6, enter=0.5, exit=0.3, min_dwell_seconds=1.0,
                                                     uncertain_label="no activity"))
    factory, events, t = EventFactory(), [], 1000.0
    for label, seconds in segments:
        probs = np.full(len(LABELS), 0.25) if label is None else np.where(
            np.array(LABELS) == label, 0.91, 0.03)
        for _ in range(int(seconds / 0.5)):
            sm = smoother.update(probs, t)
            if sm.change is not None:
                pred = Prediction(stream, t - 2, t, None, None,
                                  tuple(LabelScore(n, float(p)) for n, p in zip(LABELS, probs)), 50.0, 40.0, (0, 15))
                events.append(factory.make("change", stream, change_fields(pred, sm, sm.change)))
            t += 0.5
    return events


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def wav_rms(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        s = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
    return float(np.sqrt(np.mean(s ** 2))) if len(s) else 0.0


def make_sink(tmp_path: Path, **kw) -> SpeechSink:
    kw.setdefault("cooldown_seconds", 0.0)
    kw.setdefault("rate", 320)
    sink = SpeechSink(speak=False, save_dir=str(tmp_path), **kw)
    sink.open()
    return sink


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def names(sink: SpeechSink) -> list[str]:
    return [p.name for p in sink.saved]


def test_real_change_events_are_announced_in_order_with_endings_and_named_files(tmp_path):
    events = change_events([("abseiling", 3), ("arm_wrestling", 3), (None, 3), ("falling", 2),
                            ("juggling", 3)])
    assert [(e["previous"], e["label"]) for e in events] == [
        (None, "abseiling"), ("abseiling", "arm_wrestling"), ("arm_wrestling", "no activity"),
        ("no activity", "falling"), ("falling", "juggling")]
    sink = make_sink(tmp_path, announce_endings=True, urgent_labels=["falling"], template="Now {label}.")
    t0 = time.monotonic()
    for event in events:
        sink.write(event)
        assert sink.wait_idle(10)
    sink.close()
    assert time.monotonic() - t0 < 15
    assert names(sink) == ["0001_started_abseiling.wav", "0002_ended_abseiling.wav",
                           "0003_started_arm-wrestling.wav", "0004_ended_arm-wrestling.wav",
                           "0005_urgent_falling.wav", "0006_ended_falling.wav", "0007_started_juggling.wav"]
    assert [p.text for p in sink.spoken] == ["Now abseiling.", "Stopped abseiling.", "Now arm wrestling.",
                                            "Stopped arm wrestling.", "Warning: falling!", "Stopped falling.",
                                            "Now juggling."]
    for path in sink.saved:
        assert wav_seconds(path) > 0.2 and wav_rms(path) > 300, path.name
    assert sink.stats.errors == 0 and sink.stats.interrupted == 0


def test_maybe_and_minimal_verbosity(tmp_path):
    sink = make_sink(tmp_path, announce_uncertain=True, verbosity="minimal", min_score=0.95)
    for event in change_events([("abseiling", 3)]):     # smoothed score about 0.9: below min_score
        sink.write(event)
        assert sink.wait_idle(10)
    sink.close()
    assert names(sink) == ["0001_maybe_abseiling.wav"] and sink.spoken[0].text == "maybe abseiling"


LONG = ("{label}. This is a long routine announcement that goes on and on, so that something "
        "urgent has to cut it short, and it keeps going for a good while longer.")


def test_urgent_label_interrupts_a_long_routine_phrase(tmp_path):
    sink = make_sink(tmp_path, template=LONG, urgent_labels=["falling"])
    sink.write({"type": "change", "stream": "cam", "label": "abseiling", "score": 0.9, "previous": None})
    assert wait_until(lambda: sink._current is not None)
    time.sleep(0.6)
    sink.write({"type": "change", "stream": "hall", "label": "falling", "score": 0.9, "previous": None})
    assert sink.wait_idle(10)
    sink.write({"type": "change", "stream": "cam", "label": "juggling", "score": 0.9, "previous": None})
    assert sink.wait_idle(20)                                    # the same long phrase, uncut
    sink.close()
    assert names(sink) == ["0001_started_abseiling.wav", "0002_urgent_falling.wav", "0003_started_juggling.wav"]
    cut, urgent, full = (wav_seconds(p) for p in sink.saved)
    assert full > 4.0 and 0.2 < cut < min(2.0, full / 2), (cut, full)   # the long phrase's WAV is cut ...
    assert urgent > 0.5 and wav_rms(sink.saved[1]) > 300        # ... the urgent one is complete
    assert [p.completed for p in sink.spoken] == [False, True, True]
    assert sink.stats.interrupted == 1
    (latency,) = sink.stats.interrupt_latency_ms
    assert latency < 200, latency
    print(f"interruption latency: {latency:.1f} ms")


def test_a_flood_of_changes_leaves_no_backlog(tmp_path):
    sink = make_sink(tmp_path)
    sink.write({"type": "change", "stream": "cam", "label": "abseiling", "score": 0.9, "previous": None})
    assert wait_until(lambda: sink._current is not None)
    t0 = time.monotonic()
    for i in range(500):
        sink.write({"type": "change", "stream": "cam", "label": f"label{i}", "score": 0.9, "previous": None})
    assert time.monotonic() - t0 < 1.0
    assert sink.wait_idle(10)
    sink.close()
    assert names(sink) == ["0001_started_abseiling.wav", "0002_started_label499.wav"]
    assert sink.stats.replaced == 499


def test_the_budget_collapses_changes_and_is_never_exceeded_but_urgent_gets_through(tmp_path):
    sink = make_sink(tmp_path, max_per_minute=3, urgent_labels=["falling"], announce_endings=True)
    previous = None
    for i, label in enumerate(["abseiling", "juggling", "arm_wrestling", "abseiling", "juggling", "arm_wrestling"]):
        sink.write({"type": "change", "stream": "cam", "label": label, "score": 0.9, "previous": previous})
        previous = label
        sink.wait_idle(3.0 if i < 2 else 0.3)
    sink.write({"type": "change", "stream": "hall", "label": "falling", "score": 0.9, "previous": None})
    assert wait_until(lambda: any(p.kind.value == "urgent" for p in sink.spoken))
    sink.close()
    routine = [p for p in sink.spoken if p.kind.value != "urgent"]
    assert len(routine) == 3, names(sink)                       # 3 in the minute, whatever the changes
    assert names(sink)[:2] == ["0001_started_abseiling.wav", "0002_ended_abseiling.wav"]
    assert names(sink)[-1].endswith("_urgent_falling.wav")
    assert sink.stats.urgent == 1


def test_say_now_and_repeat_answer_within_300_ms_even_during_a_long_phrase(tmp_path):
    sink = make_sink(tmp_path, template="{label}, a phrase of several more words.")
    sink.say_now("now")
    assert sink.wait_idle(5)
    sink.write({"type": "change", "stream": "cam", "label": "abseiling", "score": 0.9, "previous": None})
    assert wait_until(lambda: sink._current is not None)
    time.sleep(0.3)
    sink.say_now("now")
    assert sink.wait_idle(10)
    sink.say_now("repeat")
    assert wait_until(lambda: len(sink.spoken) == 4)
    sink.close()
    assert names(sink) == ["0001_now_nothing.wav", "0002_started_abseiling.wav", "0003_now_abseiling.wav",
                           "0004_repeat_abseiling.wav"]
    first, cut, now, repeat = sink.spoken
    assert first.text == "Nothing seen yet." and now.text == "Now abseiling."
    assert not cut.completed and repeat.text == cut.text                  # the last announcement again
    for answer in (now, repeat):
        assert answer.started - answer.requested < 0.3, answer
    assert sink.stats.on_demand == 3


@pytest.mark.parametrize("mode", ["with_words", "only"])
def test_earcons_are_saved_beside_the_words(tmp_path, mode):
    sink = make_sink(tmp_path, earcons=mode, urgent_labels=["falling"], announce_endings=True)
    for event in change_events([("abseiling", 2), ("falling", 2)]):
        sink.write(event)
        assert sink.wait_idle(10)
    sink.close()
    # abseiling -> falling: the urgent words first, the end of abseiling after them (background)
    stems = ["0001_started_abseiling", "0002_urgent_falling", "0003_ended_abseiling"]
    if mode == "with_words":
        expected = [f"{s}{ext}" for s in stems for ext in (".earcon.wav", ".wav")]
    else:
        expected = [f"{s}.earcon.wav" for s in stems]
    assert names(sink) == expected
    for kind, stem in zip(("started", "urgent", "ended"), stems):
        path = tmp_path / f"{stem}.earcon.wav"
        assert wav_seconds(path) == pytest.approx(len(earcons.earcon(kind)) / earcons.RATE, abs=0.01)
        assert wav_rms(path) > 2000


def test_the_end_of_a_video_ends_its_activity_and_close_says_it(tmp_path):
    sink = make_sink(tmp_path, announce_endings=True, cooldown_seconds=5.0)    # the last words skip it
    sink.write({"type": "change", "stream": "cam", "label": "abseiling", "score": 0.9, "previous": None})
    assert sink.wait_idle(10)
    sink.write({"type": "status", "stream": "cam", "state": "ended"})
    sink.close()                             # right after the end, as a pipeline stops: still said
    assert names(sink) == ["0001_started_abseiling.wav", "0002_ended_abseiling.wav"]
    lost = make_sink(tmp_path / "lost", announce_endings=True)
    lost.write({"type": "change", "stream": "cam", "label": "abseiling", "score": 0.9, "previous": None})
    assert lost.wait_idle(10)
    lost.write({"type": "status", "stream": "cam", "state": "lost"})   # it may come back: nothing said
    lost.close()
    assert names(lost) == ["0001_started_abseiling.wav"]
    stopped = make_sink(tmp_path / "stopped", announce_endings=True)
    stopped.write({"type": "change", "stream": "cam", "label": "abseiling", "score": 0.9, "previous": None})
    assert stopped.wait_idle(10)
    stopped.write({"type": "status", "stream": "cam", "state": "ended", "detail": "stopped"})   # Ctrl-C
    started = time.monotonic()
    stopped.close()
    assert names(stopped) == ["0001_started_abseiling.wav"] and time.monotonic() - started < 1.0
