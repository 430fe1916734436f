"""Speech sink: says the new activity aloud when the label changes, and/or saves it as WAV.

Only ``change`` events are announced, when ``score >= min_score`` and the event
is not marked ``"uncertain": true``, at most one per ``cooldown_seconds``.
Announcements never queue up: there is a slot of one pending announcement and a
newer change replaces an older unspoken one, so what is said is always the
newest state. A pending announcement is also dropped when it went stale before
it was said (its stream changed again to a label that will not be announced, or
back to the label said last, or the stream was lost).

pyttsx3 engines must be created and used in one thread, so the sink has its
own speaker thread that creates the engine and does all the talking; ``write``
(the sink runner thread) only fills the slot.

Without a speech engine (pyttsx3 or espeak missing) the sink warns once and
drops announcements. pyttsx3's espeak driver synthesizes in memory and plays
the result with ``aplay``; it does not check that this worked (on a machine
without ``aplay`` ``say`` + ``runAndWait`` returns in about 10 ms having played
nothing, after the shell printed "aplay: not found" on stderr). So before
speaking aloud the sink checks for ``aplay`` and a playback device and,
without them, only saves WAV files (if ``save_dir`` is set), with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import string
import sys
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, TextIO

from realtime.core.errors import SinkError
from realtime.core.types import StreamState
from realtime.threads import start_thread

log = logging.getLogger(__name__)

TEMPLATE_FIELDS = ("label", "previous", "score", "stream")
CLOSE_TIMEOUT = 2.0                 # seconds close() waits for the speaker thread
LOST_STATES = tuple(state.value for state in StreamState if state.down)

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


@dataclass(frozen=True)
class Announcement:
    stream: str
    label: str
    previous: Optional[str]
    score: float
    text: str


@dataclass
class SpeechStats:
    announced: int = 0      # said and/or saved
    replaced: int = 0       # pending announcements replaced by a newer change
    stale: int = 0          # pending announcements dropped as no longer true
    skipped: int = 0        # change events not announced (low score, uncertain, repeat)
    dropped: int = 0        # announcements lost because there is no engine or it failed
    errors: int = 0


def _humanize(label: Optional[str]) -> str:
    return (label or "").replace("_", " ").strip()


def slugify(label: str) -> str:
    """A file-name-safe form of a label: ``"Playing guitar!"`` -> ``"playing-guitar"``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "label"


def check_template(template: str) -> None:
    """Raise SinkError if ``template`` uses a field other than TEMPLATE_FIELDS or is malformed."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise SinkError(f"speech template {template!r}: {exc}") from None
    for name in names:
        root = re.split(r"[.\[]", name, maxsplit=1)[0]
        if root not in TEMPLATE_FIELDS:
            raise SinkError(f"speech template {template!r}: unknown field {{{name}}} "
                            f"(allowed: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})")
    try:
        template.format(label="x", previous="y", score=0.5, stream="s")
    except (ValueError, IndexError, KeyError, AttributeError) as exc:
        raise SinkError(f"speech template {template!r}: {exc}") from None


def audio_output_status() -> tuple[bool, str]:
    """(True, what) when sound can probably be played; else (False, why not).

    On Linux pyttsx3's espeak driver plays through ``aplay``, which needs an
    ALSA playback device (``/dev/snd/pcmC*D*p``) or a PulseAudio/PipeWire
    server. Other systems are assumed to have sound.
    """
    if not sys.platform.startswith("linux"):
        return True, sys.platform
    if shutil.which("aplay") is None:
        return False, "aplay (alsa-utils), which pyttsx3's espeak driver plays through, is missing"
    snd = Path("/dev/snd")
    if snd.is_dir() and any(snd.glob("pcmC*D*p")):
        return True, "an ALSA playback device"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if os.environ.get("PULSE_SERVER") or (runtime and (
            Path(runtime, "pulse", "native").exists() or Path(runtime, "pipewire-0").exists())):
        return True, "a PulseAudio/PipeWire server"
    return False, "no sound device (/dev/snd has no playback device and no PulseAudio/PipeWire)"


def pyttsx3_engine() -> Any:
    """A pyttsx3 engine: the espeak driver on Linux, the system default elsewhere."""
    import pyttsx3
    return pyttsx3.init("espeak" if sys.platform.startswith("linux") else None)


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


class SpeechSink:
    """Announces activity changes with text-to-speech (newest only, with a cooldown).

    ``engine_factory`` makes the engine in the speaker thread (default:
    pyttsx3). ``check_audio`` (default: only for the default engine) checks
    for a sound device before speaking aloud.
    """

    def __init__(self, *, min_score: float = 0.5, cooldown_seconds: float = 3.0,
                 template: str = "{label}", voice: Optional[str] = None,
                 rate: Optional[int] = None, volume: Optional[float] = None, speak: bool = True,
                 save_dir: Optional[str] = None, engine_factory: Optional[EngineFactory] = None,
                 check_audio: Optional[bool] = None,
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
        self._factory: EngineFactory = engine_factory or pyttsx3_engine
        self._real_engine = engine_factory is None
        self._check_audio = self._real_engine if check_audio is None else check_audio
        self._clock = clock
        self.stats = SpeechStats()
        self.saved: list[Path] = []                      # WAV files written, in order
        self._cond = threading.Condition()
        self._pending: Optional[Announcement] = None
        self._busy = False
        self._stopping = False
        self._ready_at = 0.0                             # end of the cooldown
        self._last_said: dict[str, str] = {}             # stream -> label announced last
        self._next_number = 0
        self._thread: Optional[threading.Thread] = None

    @classmethod
    def from_config(cls, config: Any) -> "SpeechSink":
        return cls(min_score=config.min_score, cooldown_seconds=config.cooldown_seconds,
                   template=config.template, voice=config.voice, rate=config.rate,
                   volume=config.volume, speak=config.speak, save_dir=config.save_dir)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        check_template(self.template)
        if self.save_dir is not None:
            try:
                self.save_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SinkError(f"cannot save speech to {self.save_dir}: {exc.strerror}") from None
            if not os.access(self.save_dir, os.W_OK | os.X_OK):
                raise SinkError(f"cannot save speech to {self.save_dir}: permission denied")
            numbers = [int(m.group(1)) for p in self.save_dir.glob("*.wav")
                       if (m := re.match(r"(\d{4,})_", p.name))]
            self._next_number = max(numbers, default=-1) + 1
        if self.speak and self._check_audio:
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
        self._thread = start_thread(self._run, "sink-speech-speaker")

    def close(self) -> None:
        """Stop the speaker thread: the utterance in progress is finished, pending ones dropped."""
        with self._cond:
            self._stopping = True
            if self._pending is not None:
                self._pending = None
                self.stats.stale += 1
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)
            if self._thread.is_alive():
                log.warning("speech: the speech engine did not finish within %.1f s; abandoning it",
                            CLOSE_TIMEOUT)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending or being said; True if so within ``timeout``."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    # ------------------------------------------------------------------ events (runner thread)
    def write(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        stream = str(event.get("stream", ""))
        if kind == "status" and event.get("state") in LOST_STATES:
            with self._cond:
                self._drop_pending_of(stream)
                self._last_said.pop(stream, None)
            return
        if kind != "change" or not event.get("label"):
            return
        label = str(event["label"])
        try:
            score = float(event.get("score", 0.0))
        except (TypeError, ValueError):
            score = 0.0
        with self._cond:
            if (event.get("uncertain") is True or score < self.min_score
                    or self._last_said.get(stream) == label):
                self.stats.skipped += 1
                self._drop_pending_of(stream)       # what was pending for it is no longer true
                return
            previous = event.get("previous")
            text = self.template.format(label=_humanize(label), previous=_humanize(previous),
                                        score=score, stream=stream)
            if self._pending is not None:
                self.stats.replaced += 1
            self._pending = Announcement(stream, label, previous, score, text)
            self._cond.notify_all()

    def _drop_pending_of(self, stream: str) -> None:
        if self._pending is not None and self._pending.stream == stream:
            self._pending = None
            self.stats.stale += 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ the speaker thread
    def _run(self) -> None:
        engine = self._make_engine()
        while True:
            with self._cond:
                while not self._stopping:
                    if self._pending is not None:
                        left = self._ready_at - self._clock()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    else:
                        self._cond.wait()
                if self._stopping:
                    break
                item, self._pending = self._pending, None
                self._busy = True
                self._last_said[item.stream] = item.label
            try:
                self._announce(engine, item)
            finally:
                with self._cond:
                    self._ready_at = self._clock() + self.cooldown_seconds
                    self._busy = False
                    self._cond.notify_all()

    def _make_engine(self) -> Any:
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

    def _announce(self, engine: Any, item: Announcement) -> None:
        if engine is None or (not self.speak and self.save_dir is None):
            self.stats.dropped += 1
            return
        try:
            guard = _ENGINE_LOCK if self._real_engine else contextlib.nullcontext()
            quiet = _quiet_stdout() if self._real_engine else contextlib.nullcontext()
            with guard, quiet:
                if self.speak:
                    engine.say(item.text)
                    engine.runAndWait()
                if self.save_dir is not None:
                    self.save_dir.mkdir(parents=True, exist_ok=True)
                    path = self.save_dir / f"{self._next_number:04d}_{slugify(item.label)}.wav"
                    self._next_number += 1
                    for attempt in range(SAVE_ATTEMPTS):
                        engine.save_to_file(item.text, str(path))
                        engine.runAndWait()
                        if not self._real_engine or _wav_frames(path) != 0:
                            break
                        # pyttsx3's espeak driver writes the file when espeak says the message
                        # ended, before adding the audio that came with that same callback: a
                        # short phrase can come out empty. Synthesising again fixes it.
                        log.debug("speech: %s came out empty (attempt %d)", path.name, attempt + 1)
                    else:                                 # pyttsx3 only prints its errors
                        if not path.exists():
                            raise OSError(f"the speech engine did not write {path}")
                        raise OSError(f"the speech engine wrote no audio to {path} ({SAVE_ATTEMPTS} attempts)")
                    self.saved.append(path)
        except Exception as exc:
            self.stats.errors += 1
            self.stats.dropped += 1
            if self.stats.errors == 1:
                log.error("speech: announcing %r failed (further failures are counted): %s: %s",
                          item.text, type(exc).__name__, exc)
            return
        self.stats.announced += 1
        log.debug("speech: announced %r", item.text)
