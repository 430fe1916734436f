"""The speech sink: newest-only announcements with a cooldown, filters, engine threading, real espeak WAVs."""

from __future__ import annotations

import ctypes.util
import threading
import time
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest

from realtime.config import build_config
from realtime.core.errors import SinkError
from realtime.sinks import SinkRunner, build_sink
from realtime.sinks import speech as speech_mod
from realtime.sinks.speech import SpeechSink, check_template, slugify


def change(label: str, score: float = 0.9, stream: str = "cam", previous: Optional[str] = None,
           **extra) -> dict:
    return {"type": "change", "stream": stream, "label": label, "score": score,
            "previous": previous, "previous_duration": 1.0, **extra}


class FakeEngine:
    """Counts what it is asked to say; ``gate`` (when set up) holds runAndWait until released."""

    def __init__(self, hold: bool = False, fail: bool = False) -> None:
        self.said: list[str] = []
        self.saved: list[tuple[str, str]] = []
        self.props: dict[str, object] = {}
        self.threads: set[int] = set()
        self.started = threading.Event()      # set when an utterance starts
        self.gate = threading.Event()
        if not hold:
            self.gate.set()
        self.fail = fail
        self.times: list[tuple[float, float]] = []   # (start, end) of each runAndWait
        self._queued: list[str] = []

    def factory(self) -> "FakeEngine":
        self.threads.add(threading.get_ident())
        return self

    def setProperty(self, name, value):
        self.threads.add(threading.get_ident())
        self.props[name] = value

    def getProperty(self, name):
        if name == "voices":
            return [SimpleNamespace(id="gmw/en-gb", name="English (Great Britain)"),
                    SimpleNamespace(id="roa/fr", name="French")]
        return self.props.get(name)

    def say(self, text):
        self.threads.add(threading.get_ident())
        if self.fail:
            raise RuntimeError("the synthesizer broke")
        self.said.append(text)
        self._queued.append(text)

    def save_to_file(self, text, path):
        self.threads.add(threading.get_ident())
        self.saved.append((text, path))
        self._queued.append(text)

    def runAndWait(self):
        self.threads.add(threading.get_ident())
        start = time.monotonic()
        self.started.set()
        assert self.gate.wait(10), "the test never released the engine"
        self._queued.clear()
        self.times.append((start, time.monotonic()))


def make_sink(engine: FakeEngine, **kw) -> SpeechSink:
    kw.setdefault("cooldown_seconds", 0.0)
    sink = SpeechSink(engine_factory=engine.factory, **kw)
    sink.open()
    return sink


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def test_engine_is_made_and_used_in_one_thread_of_its_own(engine):
    sink = make_sink(engine, rate=150, volume=0.5, voice="english (great britain)")
    sink.write(change("running"))
    assert sink.wait_idle(5)
    sink.close()
    assert engine.said == ["running"]
    assert len(engine.threads) == 1 and threading.get_ident() not in engine.threads
    assert engine.props == {"rate": 150, "volume": 0.5, "voice": "gmw/en-gb"}


# Each case: the events, written one at a time (waiting until the sink is idle), and what is said.
@pytest.mark.parametrize("events, said", [
    ([change("running")], ["running"]),
    ([change("playing_guitar")], ["playing guitar"]),
    ([change("running", 0.49)], []),                                  # below min_score
    ([change("running", 0.5)], ["running"]),                          # min_score is inclusive
    ([change("no_activity", 0.9, uncertain=True)], []),               # the uncertain label
    ([change("running", uncertain=False)], ["running"]),
    ([{"type": "prediction", "stream": "cam", "label": "running", "score": 0.99}], []),
    ([{"type": "heartbeat", "stream": "cam", "fps": 30}], []),
    ([change("running"), change("walking", 0.2), change("running")], ["running"]),  # no repeat
    ([change("running"), change("jumping"), change("running")], ["running", "jumping", "running"]),
    ([change("running"), {"type": "status", "stream": "cam", "state": "reconnecting"},
      change("running")], ["running", "running"]),                     # said again after a loss
    ([change("running", stream="a"), change("running", stream="b")], ["running", "running"]),
    ([{"type": "change", "stream": "cam", "label": None, "score": 0.9}], []),
    ([change("running", score="bad")], []),
])
def test_what_is_announced(engine, events, said):
    sink = make_sink(engine, min_score=0.5)
    for event in events:
        sink.write(event)
        assert sink.wait_idle(5)
    sink.close()
    assert engine.said == said


def test_template_fields(engine):
    sink = make_sink(engine, template="{stream}: {previous} then {label} ({score:.0%})")
    sink.write(change("jumping_jacks", 0.87, previous="sitting_down"))
    assert sink.wait_idle(5)
    sink.close()
    assert engine.said == ["cam: sitting down then jumping jacks (87%)"]


@pytest.mark.parametrize("template, message", [
    ("{label} {certainty}", "unknown field {certainty}"),
    ("{label", "speech template"),
    ("{score:d}", "speech template"),
    ("{0}", "unknown field {0}"),
])
def test_bad_template_fails_at_open(template, message):
    with pytest.raises(SinkError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_template(template)
    with pytest.raises(SinkError):
        SpeechSink(template=template, engine_factory=FakeEngine().factory).open()


def test_newest_only_a_newer_change_replaces_the_unspoken_one():
    engine = FakeEngine(hold=True)
    sink = make_sink(engine)
    sink.write(change("running"))
    assert engine.started.wait(5)               # "running" is being said and held there
    for label in ("walking", "jumping", "dancing"):
        sink.write(change(label))
    engine.gate.set()
    assert sink.wait_idle(5)
    sink.close()
    assert engine.said == ["running", "dancing"]
    assert sink.stats.replaced == 2 and sink.stats.announced == 2


def test_pending_announcement_dropped_when_it_is_no_longer_true():
    engine = FakeEngine(hold=True)
    sink = make_sink(engine)
    sink.write(change("running"))
    assert engine.started.wait(5)
    sink.write(change("walking"))               # pending ...
    sink.write(change("blur", 0.1))             # ... but the scene moved on to something unsure
    engine.gate.set()
    assert sink.wait_idle(5)
    sink.close()
    assert engine.said == ["running"] and sink.stats.stale == 1


def test_cooldown_waits_then_says_only_the_newest():
    engine = FakeEngine()
    cooldown = 0.4
    sink = make_sink(engine, cooldown_seconds=cooldown)
    sink.write(change("running"))
    assert sink.wait_idle(5)
    sink.write(change("walking"))               # both arrive within the cooldown
    sink.write(change("jumping"))
    assert sink.wait_idle(5)
    sink.close()
    assert engine.said == ["running", "jumping"]
    (_, first_end), (second_start, _) = engine.times
    assert second_start - first_end >= cooldown - 0.01


def test_close_drops_pending_and_returns_quickly_during_cooldown(engine):
    sink = make_sink(engine, cooldown_seconds=30)
    sink.write(change("running"))
    assert sink.wait_idle(5)
    sink.write(change("walking"))
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 1.0
    assert engine.said == ["running"]


def test_close_gives_up_on_a_hung_engine(monkeypatch, caplog):
    monkeypatch.setattr(speech_mod, "CLOSE_TIMEOUT", 0.3)
    engine = FakeEngine(hold=True)
    sink = make_sink(engine)
    sink.write(change("running"))
    assert engine.started.wait(5)
    t0 = time.monotonic()
    sink.close()
    assert time.monotonic() - t0 < 1.5
    assert "did not finish" in caplog.text
    engine.gate.set()                           # let the abandoned thread end


def test_write_never_blocks_while_the_engine_talks():
    engine = FakeEngine(hold=True)
    sink = make_sink(engine)
    sink.write(change("running"))
    assert engine.started.wait(5)
    t0 = time.monotonic()
    for i in range(1000):
        sink.write(change(f"label{i}"))
    assert time.monotonic() - t0 < 1.0
    engine.gate.set()
    assert sink.wait_idle(5)
    sink.close()
    assert engine.said == ["running", "label999"]


def test_no_engine_warns_once_and_drops(caplog):
    def broken():
        raise RuntimeError("could not initialize espeak")
    sink = SpeechSink(engine_factory=broken, cooldown_seconds=0)
    sink.open()
    for label in ("running", "walking", "jumping"):
        sink.write(change(label))
        assert sink.wait_idle(5)
    sink.close()
    warnings = [r for r in caplog.records if "no speech engine" in r.getMessage()]
    assert len(warnings) == 1 and "could not initialize espeak" in warnings[0].getMessage()
    assert sink.stats.dropped == 3 and sink.stats.announced == 0


def test_failing_engine_is_counted_and_logged_once(caplog):
    engine = FakeEngine(fail=True)
    sink = make_sink(engine)
    for label in ("running", "walking"):
        sink.write(change(label))
        assert sink.wait_idle(5)
    sink.close()
    assert sink.stats.errors == 2
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1


def test_without_a_sound_device_it_saves_only(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(speech_mod, "audio_output_status", lambda: (False, "no sound device"))
    engine = FakeEngine()
    sink = make_sink(engine, speak=True, save_dir=str(tmp_path), check_audio=True)
    sink.write(change("running"))
    assert sink.wait_idle(5)
    sink.close()
    assert "no sound device; saving announcements to" in caplog.text
    assert engine.said == [] and [p.name for p in sink.saved] == ["0001_started_running.wav"]


def test_wav_numbers_continue_after_existing_files(engine, tmp_path):
    (tmp_path / "0007_old.wav").write_bytes(b"")
    sink = make_sink(engine, speak=False, save_dir=str(tmp_path))
    sink.write(change("Jumping Jacks!"))
    assert sink.wait_idle(5)
    sink.close()
    assert [p.name for p in sink.saved] == ["0008_started_jumping-jacks.wav"]


def test_unwritable_save_dir_fails_at_open(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SinkError, match="cannot save speech to .*file/sub"):
        SpeechSink(save_dir=str(tmp_path / "file" / "sub"), engine_factory=FakeEngine().factory).open()


def test_registry_builds_the_speech_sink():
    config = build_config({"sinks": [{"type": "speech", "min_score": 0.6, "cooldown_seconds": 0,
                                      "speak": False, "template": "now {label}"}]})
    sink = build_sink(config.sinks[0])
    assert isinstance(sink, SpeechSink)
    assert (sink.min_score, sink.template, sink.speak) == (0.6, "now {label}", False)


@pytest.mark.parametrize("label, slug", [("running", "running"), ("playing_guitar", "playing-guitar"),
                                         ("Tai Chi (slow)", "tai-chi-slow"), ("!!!", "label")])
def test_slugify(label, slug):
    assert slugify(label) == slug


# --------------------------------------------------------------------------- the real engine
def _espeak_available() -> bool:
    try:
        import pyttsx3  # noqa: F401
    except ImportError:
        return False
    return bool(ctypes.util.find_library("espeak-ng") or ctypes.util.find_library("espeak"))


def _wav_stats(path: Path) -> tuple[float, float]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64)
        return w.getnframes() / w.getframerate(), float(np.sqrt(np.mean(samples ** 2)))


@pytest.mark.skipif(not _espeak_available(), reason="pyttsx3 or espeak-ng is not installed")
def test_real_espeak_saves_one_wav_per_stable_segment(tmp_path, capsys):
    sink = SpeechSink(speak=False, save_dir=str(tmp_path), cooldown_seconds=0, min_score=0.5,
                      template="{label}")
    runner = SinkRunner(sink)
    runner.start()
    segments = [("running", 0.9), ("jumping", 0.3), ("playing_guitar", 0.85),
                ("no_activity", 0.8), ("running", 0.8)]
    previous, offered = None, 0
    for label, score in segments:
        for _ in range(5):                          # predictions inside the segment are ignored
            runner.offer({"type": "prediction", "stream": "cam", "label": label, "score": score})
        runner.offer(change(label, score, previous=previous,
                            uncertain=label == "no_activity"))
        previous, offered = label, offered + 6
        deadline = time.monotonic() + 10
        while runner.written < offered and time.monotonic() < deadline:
            time.sleep(0.01)                        # until the runner handed all to the sink
        assert sink.wait_idle(10)                   # and the segment was announced
    assert runner.close(5)
    assert sink.stats.errors == 0, sink.stats
    files = sorted(tmp_path.glob("*.wav"))
    assert [f.name for f in files] == ["0001_started_running.wav", "0002_started_playing-guitar.wav",
                                       "0003_started_running.wav"]
    for f in files:
        duration, rms = _wav_stats(f)
        assert duration > 0.2 and rms > 300, (f.name, duration, rms)
    assert _wav_stats(files[1])[0] > _wav_stats(files[0])[0]    # "playing guitar" takes longer
    assert "Audio saved" not in capsys.readouterr().out          # pyttsx3's print is kept off stdout


@pytest.mark.skipif(not _espeak_available(), reason="pyttsx3 or espeak-ng is not installed")
@pytest.mark.skipif(speech_mod.audio_output_status()[0], reason="this machine can play sound")
def test_real_say_without_a_sound_device_does_not_hang():
    # Forced past the sound-device check: pyttsx3's espeak driver synthesizes, then its
    # ``aplay`` fails at once (missing, or no device); say + runAndWait returns within ms.
    sink = SpeechSink(speak=True, check_audio=False, cooldown_seconds=0)
    sink.open()
    t0 = time.monotonic()
    sink.write(change("running"))
    assert sink.wait_idle(10)
    sink.close()
    assert time.monotonic() - t0 < 5
    assert sink.stats.errors == 0 and sink.stats.announced == 1


@pytest.mark.skipif(not _espeak_available(), reason="pyttsx3 or espeak-ng is not installed")
@pytest.mark.parametrize("empty_results", [1, 99])
def test_real_espeak_synthesises_again_when_a_wav_comes_out_empty(tmp_path, monkeypatch, empty_results):
    """pyttsx3's espeak driver can write a short phrase's WAV before adding its audio: the sink
    synthesises again (up to SAVE_ATTEMPTS times), and an announcement that stays empty is an error."""
    checks = []
    real_frames = speech_mod._wav_frames

    def frames(path):            # the first ``empty_results`` checks see an empty file
        checks.append(path)
        return 0 if len(checks) <= empty_results else real_frames(path)

    monkeypatch.setattr(speech_mod, "_wav_frames", frames)
    sink = SpeechSink(speak=False, save_dir=str(tmp_path), cooldown_seconds=0, min_score=0.5,
                      template="{label}")
    runner = SinkRunner(sink)
    runner.start()
    runner.offer(change("running", 0.9))
    deadline = time.monotonic() + 10
    while runner.written < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.wait_idle(10)
    assert runner.close(5)
    if empty_results == 1:
        # (the real synthesis can come out empty once more under load: that is what the retries are for)
        assert sink.stats.errors == 0 and 2 <= len(checks) <= speech_mod.SAVE_ATTEMPTS, (sink.stats, checks)
        assert [p.name for p in sink.saved] == ["0001_started_running.wav"] and real_frames(sink.saved[0]) > 0
    else:
        assert sink.stats.errors == 1 and sink.saved == [], sink.stats
        assert len(checks) == speech_mod.SAVE_ATTEMPTS               # one check per attempt
