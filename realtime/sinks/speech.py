"""Speech sink: says activity changes aloud by priority, and/or saves them as WAV files.

What is said, and when (the pure rules are in :mod:`realtime.sinks.speech_policy`):

* a ``change`` to an activity at ``score >= min_score`` is *started* (or *urgent* for a label
  in ``urgent_labels``); with ``announce_endings`` the end of an announced activity is said
  ("Stopped abseiling."), with ``announce_uncertain`` a change the model is unsure of is said
  as "Maybe abseiling.";
* priorities: urgent interrupts whatever is being said (within a few ms: playback is a
  process or a timed wait, stopped at once); on-demand requests (:meth:`SpeechSink.say_now`)
  interrupt routine and background speech; a routine announcement replaces an unspoken
  older one (newest only, never a backlog); background ones wait and go stale;
* ``cooldown_seconds`` of quiet after each announcement, and a budget of ``max_per_minute``
  announced parts in any 60 s (urgent and on-demand ones are not counted against it).

pyttsx3 engines must be created and used in one thread, so the sink has its own speaker
thread that creates the engine and does all the talking; ``write`` (the sink runner
thread) and ``say_now`` only fill the slots.

Each part is synthesized to audio with pyttsx3 (``save_to_file``), then *played*: with
``aplay`` when speaking aloud on Linux (a process the speaker can stop), through Speech
Dispatcher when that is the engine, or, when only saving WAV files, as a timed wait as long
as the audio, so a saved session has the timing a listener would have had. A part that is
interrupted is saved cut where the listener stopped hearing it. Files are named
``NNNN_KIND_LABEL.wav`` (``0003_ended_abseiling.wav``, ``0004_urgent_falling.wav``), earcons
beside them as ``NNNN_KIND_LABEL.earcon.wav``.

Without a speech engine (pyttsx3 or espeak missing) the sink warns once and drops
announcements. Without ``aplay`` and a playback device it only saves WAV files (if
``save_dir`` is set), with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TextIO

import numpy as np

from realtime.core.errors import SinkError
from realtime.core.types import STOPPED_DETAIL, StreamState
from realtime.sinks import earcons as earcons_mod
from realtime.sinks.speech_engines import (PYTTSX3, SPEECH_DISPATCHER, EngineChoice, SpeechDispatcherVoice,
                                           audio_output_status, choose_engine, play_wav, pyttsx3_engine)
from realtime.sinks.speech_policy import (TEMPLATE_FIELDS, AnnouncePolicy, Announcement, Budget, EarconMode,
                                          Kind, Part, Phrasing, Priority, Verbosity, check_template, choose)
from realtime.threads import start_thread

log = logging.getLogger(__name__)

__all__ = ["SpeechSink", "SpeechStats", "SpokenPart", "check_template", "slugify", "audio_output_status",
           "pyttsx3_engine", "Kind", "Priority", "TEMPLATE_FIELDS"]

CLOSE_TIMEOUT = 2.0                 # seconds close() waits for the speaker thread
DRAIN_SECONDS = 4.0                 # close() lets a video's last words finish this long first
LOST_STATES = tuple(state.value for state in StreamState if state.down)
EARCON_GAP = 0.05                   # seconds of silence between an earcon and the words
RATE = earcons_mod.RATE

EngineFactory = Callable[[], Any]   # returns an object with pyttsx3.Engine's methods

_ENGINE_LOCK = threading.Lock()     # pyttsx3 shares one engine per driver in a process
SAVE_ATTEMPTS = 3                   # syntheses of one announcement before an empty WAV is an error


def _wav_frames(path: Path) -> int:
    """Audio frames in the WAV file at ``path`` (0 if it is missing, empty or unreadable)."""
    try:
        with wave.open(str(path), "rb") as f:
            return f.getnframes()
    except (OSError, EOFError, wave.Error):
        return 0


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the rate of a WAV file (empty if it is missing or unreadable)."""
    try:
        with wave.open(str(path), "rb") as f:
            data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
            if f.getnchannels() > 1:
                data = data[::f.getnchannels()]
            return data, f.getframerate()
    except (OSError, EOFError, wave.Error):
        return np.zeros(0, "<i2"), RATE


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.asarray(samples, dtype="<i2").tobytes())


@dataclass
class SpeechStats:
    announced: int = 0      # parts said and/or saved
    urgent: int = 0         # of which urgent (not counted against the budget)
    on_demand: int = 0      # of which asked for with say_now (not counted against the budget)
    replaced: int = 0       # pending announcements replaced by a newer change
    stale: int = 0          # pending announcements dropped as no longer true or too old
    skipped: int = 0        # change events not announced (low score, uncertain, repeat)
    interrupted: int = 0    # parts cut short by a more urgent announcement
    dropped: int = 0        # announcements lost because there is no engine or it failed
    errors: int = 0
    interrupt_latency_ms: list[float] = field(default_factory=list)   # request -> playback stopped


@dataclass(frozen=True)
class SpokenPart:
    """One part as the listener got it: when it started and ended, and whether it was cut."""
    number: int
    kind: Kind
    label: str
    text: str
    stream: str
    priority: Priority
    requested: float        # the sink's clock when its announcement was made
    started: float
    ended: float
    completed: bool
    path: Optional[Path]    # its WAV file (None when not saved)


def slugify(label: str) -> str:
    """A file-name-safe form of a label: ``"Playing guitar!"`` -> ``"playing-guitar"``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "label"


_DummyThread: Any = getattr(threading, "_DummyThread", ())


class _SpeechStdout:
    """A stdout that logs (at debug level) what the speech engine prints, passing the rest on.

    The engine's writes come from the speaker thread or, with espeak, from
    espeak's own thread, which Python sees as a foreign ("dummy") thread.
    """

    def __init__(self, original: TextIO, thread_id: int) -> None:
        self._original = original
        self._thread_id = thread_id

    def _from_engine(self) -> bool:
        return (threading.get_ident() == self._thread_id
                or isinstance(threading.current_thread(), _DummyThread))

    def write(self, text: str) -> int:
        if self._from_engine():
            if text.strip():
                log.debug("speech engine: %s", text.strip())
            return len(text)
        return self._original.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """pyttsx3 prints ("Audio saved to ...") on stdout, which may carry JSON lines: log it instead."""
    original = sys.stdout
    proxy = _SpeechStdout(original, threading.get_ident())
    sys.stdout = proxy  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.stdout is proxy:
            sys.stdout = original


class _Player:
    """How a part is played: aloud with aplay, through Speech Dispatcher, with the engine's own
    ``say`` (not interruptible inside a part), or silently as a timed wait (saving only)."""
    APLAY = "aplay"
    DISPATCHER = "speech-dispatcher"
    ENGINE = "engine"
    TIMED = "timed"


class SpeechSink:
    """Announces activity changes with text-to-speech, by priority, newest only, within a budget.

    ``engine_factory`` makes the engine in the speaker thread (default: pyttsx3). ``check_audio``
    (default: only for the default engine) checks for a sound device before speaking aloud.
    """

    def __init__(self, *, min_score: float = 0.5, cooldown_seconds: float = 3.0,
                 template: str = "{label}", voice: Optional[str] = None,
                 rate: Optional[int] = None, volume: Optional[float] = None, speak: bool = True,
                 save_dir: Optional[str] = None, engine_factory: Optional[EngineFactory] = None,
                 check_audio: Optional[bool] = None, engine: str = "auto",
                 verbosity: str = "normal", announce_endings: bool = False,
                 end_template: str = "Stopped {label}.", announce_uncertain: bool = False,
                 maybe_template: str = "Maybe {label}.", maybe_min_score: float = 0.2,
                 urgent_labels: Sequence[str] = (), urgent_template: str = "Warning: {label}!",
                 now_template: str = "Now {label}.", max_per_minute: int = 0,
                 stale_seconds: float = 10.0, earcons: str = "off",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = "speech"
        self.min_score = min_score
        self.cooldown_seconds = cooldown_seconds
        self.template = template
        self.voice = voice
        self.rate = rate
        self.volume = volume
        self.speak = speak
        self.save_dir = Path(save_dir) if save_dir else None
        self.engine = engine
        try:
            self.verbosity = Verbosity(verbosity)
            self.earcons = EarconMode(earcons)
        except ValueError as exc:
            raise SinkError(f"speech: {exc}") from None
        self.phrasing = Phrasing(self.verbosity, template, end_template, maybe_template, urgent_template,
                                 now_template)
        self.policy = AnnouncePolicy(self.phrasing, min_score=min_score, announce_endings=announce_endings,
                                     announce_uncertain=announce_uncertain, maybe_min_score=maybe_min_score,
                                     urgent_labels=urgent_labels)
        self.stale_seconds = stale_seconds
        self._budget = Budget(max_per_minute)
        self._factory: EngineFactory = engine_factory or pyttsx3_engine
        self._real_engine = engine_factory is None
        self._check_audio = self._real_engine if check_audio is None else check_audio
        self._clock = clock
        self.stats = SpeechStats()
        self.saved: list[Path] = []                      # WAV files written, in order
        self.spoken: deque[SpokenPart] = deque(maxlen=1000)
        self._cond = threading.Condition()
        self._slots: dict[Priority, Announcement] = {}
        self._current: Optional[Announcement] = None      # being said
        self._interrupt_at: Optional[float] = None        # when a more urgent one asked to interrupt
        self._stopping = False
        self._ready_at = 0.0                             # end of the cooldown
        self._last_said: dict[str, Optional[str]] = {}   # stream -> label whose start was said last
        self._state: dict[str, tuple[str, bool, float, float]] = {}   # stream -> label, unsure, score, since
        self._latest_stream: Optional[str] = None
        self._last_item: Optional[Announcement] = None   # for say_now("repeat")
        self._next_number = 1
        self._choice: Optional[EngineChoice] = None
        self._player = _Player.TIMED
        self._tmp: Optional[Path] = None
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def from_config(cls, config: Any) -> "SpeechSink":
        return cls(min_score=config.min_score, cooldown_seconds=config.cooldown_seconds,
                   template=config.template, voice=config.voice, rate=config.rate,
                   volume=config.volume, speak=config.speak, save_dir=config.save_dir,
                   engine=config.engine, verbosity=config.verbosity,
                   announce_endings=config.announce_endings, end_template=config.end_template,
                   announce_uncertain=config.announce_uncertain, maybe_template=config.maybe_template,
                   maybe_min_score=config.maybe_min_score, urgent_labels=tuple(config.urgent_labels),
                   urgent_template=config.urgent_template, now_template=config.now_template,
                   max_per_minute=config.max_per_minute, stale_seconds=config.stale_seconds,
                   earcons=config.earcons)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        for template in self.phrasing.templates():
            check_template(template)
        if self.save_dir is not None:
            try:
                self.save_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SinkError(f"cannot save speech to {self.save_dir}: {exc.strerror}") from None
            if not os.access(self.save_dir, os.W_OK | os.X_OK):
                raise SinkError(f"cannot save speech to {self.save_dir}: permission denied")
            numbers = [int(m.group(1)) for p in self.save_dir.glob("*.wav")
                       if (m := re.match(r"(\d{4,})_", p.name))]
            self._next_number = max(numbers, default=0) + 1
        if self._real_engine:
            self._choice = choose_engine(self.engine, speak=self.speak)
        else:
            self._choice = EngineChoice(PYTTSX3, "", "a given engine")
        dispatcher = self._choice.name == SPEECH_DISPATCHER
        if self.speak and self._check_audio and not dispatcher:
            ok, why = audio_output_status()
            if not ok:
                self.speak = False
                if self.save_dir is not None:
                    log.warning("speech: %s; saving announcements to %s without saying them",
                                why, self.save_dir)
                else:
                    log.warning("speech: %s; announcements will not be heard "
                                "(set save_dir to keep them as WAV files)", why)
        if not self.speak and self.save_dir is None:
            log.warning("speech: speak is off and there is no save_dir: nothing will be announced")
        if not self.speak:
            self._player = _Player.TIMED
        elif dispatcher:
            self._player = _Player.DISPATCHER
        elif self._real_engine and sys.platform.startswith("linux") and shutil.which("aplay"):
            self._player = _Player.APLAY
        else:
            self._player = _Player.ENGINE
        self._tmp = Path(tempfile.mkdtemp(prefix="realtime-speech-"))
        self._thread = start_thread(self._run, "sink-speech-speaker")

    def close(self) -> None:
        """Stop the speaker thread. What is still to say (the end of a video's last activity) gets
        up to DRAIN_SECONDS; then the utterance in progress is stopped and pending ones dropped."""
        with self._cond:
            final = any(item.final for item in (*self._slots.values(), self._current) if item is not None)
        if final and self._thread is not None and self._thread.is_alive():
            self.wait_idle(DRAIN_SECONDS)
        with self._cond:
            self._stopping = True
            self.stats.stale += len(self._slots)
            self._slots.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)
            if self._thread.is_alive():
                log.warning("speech: the speech engine did not finish within %.1f s; abandoning it",
                            CLOSE_TIMEOUT)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or being said; True if so within ``timeout``.

        Background announcements waiting for the cooldown or the budget count as pending."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._slots and self._current is None, timeout)

    # ------------------------------------------------------------------ events (runner thread)
    def write(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        stream = str(event.get("stream", ""))
        if kind == "status" and event.get("state") in LOST_STATES:
            with self._cond:
                self._drop_pending_of(stream)
                said = self._last_said.pop(stream, None)
                self._state.pop(stream, None)
                if event.get("state") == StreamState.ENDED.value and event.get("detail") != STOPPED_DETAIL:
                    # the video is over, so is what it showed (a lost camera says nothing: it may come
                    # back; a stopped run says nothing: the listener stopped it)
                    ending = self.policy.on_end(stream, said, self._clock())
                    if ending is not None:
                        self._put(ending)
                        self._cond.notify_all()
            return
        if kind != "change" or not event.get("label"):
            return
        now = self._clock()
        with self._cond:
            try:
                score = float(event.get("score", 0.0))
            except (TypeError, ValueError):
                score = 0.0
            label = str(event["label"])
            self._state[stream] = (label, event.get("uncertain") is True, score, now)
            self._latest_stream = stream
            new = self.policy.on_change(event, self._last_said.get(stream), now)
            old = [self._slots.pop(p) for p in (Priority.ROUTINE, Priority.BACKGROUND)
                   if p in self._slots and self._slots[p].stream == stream]
            # An unspoken end is still true (unless that activity is back): keep it, once, in front.
            ends = tuple(part for a in old for part in a.parts if part.kind is Kind.ENDED and part.label != label)
            if new is not None:
                ends = tuple(e for e in ends if all(p.kind is not Kind.ENDED or p.label != e.label
                                                    for p in new.parts))
            if new is None:
                self.stats.skipped += 1
            dropped = len(old)
            if ends and (new is None or new.priority is Priority.URGENT):
                created = min(a.created for a in old)
                self._put(Announcement(Priority.BACKGROUND, stream, ends, created))
                dropped -= 1
            elif ends:
                new = Announcement(new.priority, stream, ends + new.parts, new.created)
            if new is not None and new.priority is Priority.URGENT:
                # urgent words first: its end-of-before goes on as background information
                urgent = tuple(p for p in new.parts if p.kind is not Kind.ENDED)
                before = tuple(p for p in new.parts if p.kind is Kind.ENDED)
                if before:
                    self._put(Announcement(Priority.BACKGROUND, stream, before, now))
                new = Announcement(Priority.URGENT, stream, urgent, now)
            if new is not None:
                self.stats.replaced += dropped
                self._put(new)
            else:
                self.stats.stale += dropped
            self._cond.notify_all()

    def say_now(self, kind: str = "now", stream: Optional[str] = None) -> str:
        """Queue an on-demand answer: ``"now"`` says the current activity (of ``stream``, default
        the one that changed last), ``"repeat"`` the last announcement again. Thread-safe, never
        blocks; it interrupts routine and background speech and skips the cooldown and budget.
        Returns the words that will be said."""
        wanted = Kind(kind)
        if wanted not in (Kind.NOW, Kind.REPEAT):
            raise ValueError(f"say_now: kind must be 'now' or 'repeat', got {kind!r}")
        now = self._clock()
        with self._cond:
            if wanted is Kind.REPEAT:
                last = self._last_item
                parts = ((Part(Kind.REPEAT, "nothing", "Nothing was announced yet."),) if last is None
                         else tuple(Part(Kind.REPEAT, p.label, p.text) for p in last.parts))
                stream = last.stream if last is not None else (stream or "")
            else:
                stream = stream if stream is not None else self._latest_stream
                state = self._state.get(stream) if stream is not None else None
                if state is None:
                    parts = (Part(Kind.NOW, "nothing", "Nothing seen yet."),)
                else:
                    label, _, score, since = state
                    parts = (Part(Kind.NOW, label, self.phrasing.text(
                        Kind.NOW, label, score=score, duration=now - since, stream=stream)),)
            self._put(Announcement(Priority.ON_DEMAND, stream or "", parts, now))
            self._cond.notify_all()
        return " ".join(p.text for p in parts)

    def _put(self, item: Announcement) -> None:
        """Fill ``item``'s slot (lock held); ask the speaker to stop a less urgent utterance."""
        old = self._slots.get(item.priority)
        if old is not None and old.stream != item.stream:
            self.stats.replaced += 1
        self._slots[item.priority] = item
        current = self._current
        if (item.priority >= Priority.ON_DEMAND and current is not None
                and current.priority < item.priority and self._interrupt_at is None):
            self._interrupt_at = self._clock()

    def _drop_pending_of(self, stream: str) -> None:
        for prio in [p for p, a in self._slots.items() if a.stream == stream and p < Priority.ON_DEMAND]:
            del self._slots[prio]
            self.stats.stale += 1
        self._cond.notify_all()

    # ------------------------------------------------------------------ the speaker thread
    def _run(self) -> None:
        voice = self._make_voice()                    # first: if it fails, pyttsx3 speaks instead
        engine = self._make_engine()
        while True:
            with self._cond:
                item = None
                while not self._stopping:
                    choice = choose(self._slots, self._clock(), ready_at=self._ready_at,
                                    budget=self._budget, stale_seconds=self.stale_seconds)
                    self.stats.stale += len(choice.stale)
                    if choice.item is not None:
                        item = choice.item
                        break
                    if choice.stale:
                        self._cond.notify_all()
                    self._cond.wait(choice.wait)
                if self._stopping or item is None:
                    break
                self._current, self._interrupt_at = item, None
                if item.priority < Priority.ON_DEMAND:
                    self._budget.spend(self._clock(), len(item.parts))
                    self._last_item = item
                for part in item.parts:
                    if part.kind in (Kind.STARTED, Kind.URGENT):
                        self._last_said[item.stream] = part.label
                    elif part.kind is Kind.ENDED and self._last_said.get(item.stream) == part.label:
                        self._last_said[item.stream] = None
            try:
                self._announce(engine, voice, item)
            finally:
                with self._cond:
                    self._ready_at = self._clock() + self.cooldown_seconds
                    self._current, self._interrupt_at = None, None
                    self._cond.notify_all()
        if voice is not None:
            with contextlib.suppress(Exception):
                voice.close()

    def _make_voice(self) -> Optional[SpeechDispatcherVoice]:
        choice = self._choice or EngineChoice(PYTTSX3, "", "")
        if choice.name == SPEECH_DISPATCHER and self.speak:
            log.info("speech: speaking through Speech Dispatcher (%s; %s)", choice.how, choice.why)
            try:
                return SpeechDispatcherVoice(choice.how, rate=self.rate, volume=self.volume, voice=self.voice)
            except Exception as exc:
                log.warning("speech: Speech Dispatcher failed (%s: %s); speaking with pyttsx3 instead",
                            type(exc).__name__, exc)
                self._player = _Player.APLAY if shutil.which("aplay") else _Player.ENGINE
        elif self._real_engine:
            how = {_Player.APLAY: "played with aplay", _Player.ENGINE: "played by pyttsx3",
                   _Player.TIMED: "saved as WAV files only"}.get(self._player, self._player)
            log.info("speech: speaking with pyttsx3, %s (%s)", how, choice.why)
        return None

    def _make_engine(self) -> Any:
        if self._player == _Player.DISPATCHER and self.save_dir is None and self.earcons is not EarconMode.ONLY:
            return "dispatcher-only"                  # Speech Dispatcher synthesizes; nothing to save
        try:
            engine = self._factory()
        except Exception as exc:      # ImportError, RuntimeError("could not initialize espeak"), ...
            log.warning("speech: no speech engine (%s: %s); announcements are dropped",
                        type(exc).__name__, exc)
            return None
        for prop, value in (("rate", self.rate), ("volume", self.volume)):
            if value is not None:
                try:
                    engine.setProperty(prop, value)
                except Exception as exc:
                    log.warning("speech: cannot set %s=%r: %s", prop, value, exc)
        if self.voice:
            self._set_voice(engine, self.voice)
        return engine

    @staticmethod
    def _set_voice(engine: Any, wanted: str) -> None:
        """Select a voice by id or (case-insensitive) name; warn if there is none."""
        try:
            voices = list(engine.getProperty("voices") or [])
        except Exception:
            voices = []
        match = next((v.id for v in voices if wanted in (v.id, getattr(v, "name", None))), None)
        if match is None:
            match = next((v.id for v in voices
                          if wanted.lower() in (str(v.id).lower(), str(getattr(v, "name", "")).lower())),
                         wanted)
        try:
            engine.setProperty("voice", match)
        except Exception as exc:
            log.warning("speech: no voice %r (%s); using the default voice", wanted, exc)

    def _interrupted(self) -> bool:
        return self._interrupt_at is not None or self._stopping

    def _announce(self, engine: Any, voice: Optional[SpeechDispatcherVoice], item: Announcement) -> None:
        if engine is None or (not self.speak and self.save_dir is None):
            self.stats.dropped += len(item.parts)
            return
        for part in item.parts:
            with self._cond:
                if self._interrupted():
                    self._note_interrupt()
                    return
            try:
                completed = self._say_part(engine, voice, item, part)
            except Exception as exc:
                self.stats.errors += 1
                self.stats.dropped += 1
                if self.stats.errors == 1:
                    log.error("speech: announcing %r failed (further failures are counted): %s: %s",
                              part.text, type(exc).__name__, exc)
                continue
            self.stats.announced += 1
            self.stats.urgent += item.priority is Priority.URGENT
            self.stats.on_demand += item.priority is Priority.ON_DEMAND
            log.debug("speech: announced %r%s", part.text, "" if completed else " (interrupted)")
            if not completed:
                return

    def _note_interrupt(self) -> None:
        """Count an interruption and how long it took (lock held)."""
        if self._interrupt_at is not None and not self._stopping:
            self.stats.interrupted += 1
            self.stats.interrupt_latency_ms.append((self._clock() - self._interrupt_at) * 1000)
            self._interrupt_at = self._clock() + 1e9     # counted once

    def _synthesize(self, engine: Any, text: str) -> tuple[np.ndarray, int]:
        """The words as int16 samples, made with pyttsx3's ``save_to_file``."""
        if engine == "dispatcher-only":
            return np.zeros(0, "<i2"), RATE
        assert self._tmp is not None
        path = self._tmp / "words.wav"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        guard = _ENGINE_LOCK if self._real_engine else contextlib.nullcontext()
        quiet = _quiet_stdout() if self._real_engine else contextlib.nullcontext()
        with guard, quiet:
            for attempt in range(SAVE_ATTEMPTS):
                engine.save_to_file(text, str(path))
                engine.runAndWait()
                if not self._real_engine or _wav_frames(path) != 0:
                    break
                # pyttsx3's espeak driver writes the file when espeak says the message
                # ended, before adding the audio that came with that same callback: a
                # short phrase can come out empty. Synthesising again fixes it.
                log.debug("speech: %r came out empty (attempt %d)", text, attempt + 1)
            else:                                     # pyttsx3 only prints its errors
                if not path.exists():
                    raise OSError(f"the speech engine did not write {path}")
                raise OSError(f"the speech engine wrote no audio for {text!r} ({SAVE_ATTEMPTS} attempts)")
        return _read_wav(path)

    def _say_part(self, engine: Any, voice: Optional[SpeechDispatcherVoice], item: Announcement,
                  part: Part) -> bool:
        """Synthesize, play and save one part; False if it was interrupted."""
        words_wanted = self.earcons is not EarconMode.ONLY
        need_audio = self.save_dir is not None or self._player in (_Player.APLAY, _Player.TIMED)
        words, rate = (self._synthesize(engine, part.text) if words_wanted and need_audio
                       else (np.zeros(0, "<i2"), RATE))
        ear = (earcons_mod.earcon(part.kind, rate) if self.earcons is not EarconMode.OFF
               else np.zeros(0, "<i2"))
        gap = np.zeros(int(EARCON_GAP * rate) if len(ear) and len(words) else 0, "<i2")
        audio = np.concatenate([ear, gap, words])
        started = self._clock()
        heard = self._play(engine, voice, item, part, audio, rate, words_wanted)
        ended = self._clock()
        completed = heard >= len(audio)
        path = None
        if self.save_dir is not None:
            number, self._next_number = self._next_number, self._next_number + 1
            stem = f"{number:04d}_{part.kind.value}_{slugify(part.label)}"
            if len(ear):
                ear_path = self.save_dir / f"{stem}.earcon.wav"
                write_wav(ear_path, ear[:heard], rate)
                self.saved.append(ear_path)
            if words_wanted:
                path = self.save_dir / f"{stem}.wav"
                write_wav(path, words[:max(0, heard - len(ear) - len(gap))], rate)
                self.saved.append(path)
            else:
                path = ear_path
        else:
            number = 0
        self.spoken.append(SpokenPart(number, part.kind, part.label, part.text, item.stream, item.priority,
                                      item.created, started, ended, completed, path))
        return completed

    def _play(self, engine: Any, voice: Optional[SpeechDispatcherVoice], item: Announcement, part: Part,
              audio: np.ndarray, rate: int, words: bool) -> int:
        """Play ``audio`` (or say ``part``); the number of samples heard (all of them if completed)."""
        total = len(audio)
        if self._player == _Player.ENGINE:
            if words:
                guard = _ENGINE_LOCK if self._real_engine else contextlib.nullcontext()
                quiet = _quiet_stdout() if self._real_engine else contextlib.nullcontext()
                with guard, quiet:
                    engine.say(part.text)
                    engine.runAndWait()
            return total
        utterance = None
        if self._player == _Player.APLAY and total:
            assert self._tmp is not None
            wav = self._tmp / "play.wav"
            write_wav(wav, audio, rate)
            utterance = play_wav(wav)
        elif self._player == _Player.DISPATCHER and voice is not None and words:
            utterance = voice.start(part.text, item.priority)
        start = self._clock()
        deadline = start + total / rate
        with self._cond:
            while not self._interrupted():
                if utterance is not None:
                    if utterance.done():
                        break
                    self._cond.wait(0.05)             # woken at once by an interruption
                else:
                    left = deadline - self._clock()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            interrupted = self._interrupted()
            if interrupted:
                if utterance is not None:
                    utterance.cancel()
                if self._stopping and utterance is None:
                    return total                      # closing a silent session: keep the whole WAV
                self._note_interrupt()
        if not interrupted:
            return total
        return min(total, int((self._clock() - start) * rate))


