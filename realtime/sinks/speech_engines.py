"""Speech engines: which one speaks (pyttsx3 or Speech Dispatcher), sound-device checks, players.

``engine: auto`` speaks through Speech Dispatcher (the speech service Linux screen readers
such as Orca use) when it is installed, so announcements take their turn with the screen
reader instead of talking over it; otherwise through pyttsx3 (espeak-ng on Linux). WAV
files (``save_dir``) are always made with pyttsx3, which can write them.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

from realtime.core.errors import SinkError
from realtime.sinks.speech_policy import Priority

PYTTSX3 = "pyttsx3"
SPEECH_DISPATCHER = "speech-dispatcher"
ENGINES = ("auto", PYTTSX3, SPEECH_DISPATCHER)

# Speech Dispatcher's own priorities do what ours mean: "important" interrupts the speech of
# every client (screen reader included, for urgent labels only); "message" waits its turn;
# "notification" is dropped when anything else is being said.
SPD_PRIORITY = {Priority.URGENT: "important", Priority.ON_DEMAND: "message",
                Priority.ROUTINE: "message", Priority.BACKGROUND: "notification"}


class EngineChoice(NamedTuple):
    name: str           # PYTTSX3 or SPEECH_DISPATCHER
    how: str            # for SPEECH_DISPATCHER: "speechd" (Python module) or "spd-say"
    why: str


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def choose_engine(requested: str, *, speak: bool, which: Callable[[str], Optional[str]] = shutil.which,
                  has_module: Callable[[str], bool] = _has_module) -> EngineChoice:
    """The engine for ``engine: auto | pyttsx3 | speech-dispatcher`` on this machine."""
    if requested not in ENGINES:
        raise SinkError(f"speech engine must be one of {', '.join(ENGINES)}, got {requested!r}")
    how = "speechd" if has_module("speechd") else "spd-say" if which("spd-say") else None
    if requested == PYTTSX3:
        return EngineChoice(PYTTSX3, "", "asked for")
    if requested == SPEECH_DISPATCHER:
        if how is None:
            raise SinkError("speech engine speech-dispatcher: neither the speechd Python module nor "
                            "spd-say is installed (apt install speech-dispatcher python3-speechd)")
        return EngineChoice(SPEECH_DISPATCHER, how, "asked for")
    if not speak:
        return EngineChoice(PYTTSX3, "", "not speaking aloud (saving WAV files only)")
    if how is None:
        return EngineChoice(PYTTSX3, "", "Speech Dispatcher is not installed")
    return EngineChoice(SPEECH_DISPATCHER, how, "Speech Dispatcher is installed: announcements take "
                        "turns with a screen reader")


def spd_say_command(text: str, priority: Priority, *, rate: Optional[int] = None,
                    volume: Optional[float] = None, voice: Optional[str] = None) -> list[str]:
    """The ``spd-say`` command that says ``text`` at ``priority`` and waits until it was said."""
    cmd = ["spd-say", "--wait", "--application-name", "realtime", "--priority", SPD_PRIORITY[priority]]
    if rate is not None:            # words per minute (pyttsx3's unit) -> Speech Dispatcher's -100..100
        cmd += ["--rate", str(max(-100, min(100, round((rate - 175) * 100 / 175))))]
    if volume is not None:          # 0..1 -> -100..100
        cmd += ["--volume", str(round(volume * 200 - 100))]
    if voice:
        cmd += ["--synthesis-voice", voice]
    return cmd + ["--", text]


class SpeechDispatcherVoice:
    """Says text through Speech Dispatcher; ``start`` returns a handle with ``done()`` and ``cancel()``."""

    def __init__(self, how: str, *, rate: Optional[int] = None, volume: Optional[float] = None,
                 voice: Optional[str] = None, popen: Callable[..., Any] = subprocess.Popen) -> None:
        self.how = how
        self.rate, self.volume, self.voice = rate, volume, voice
        self._popen = popen
        self._client: Any = None
        if how == "speechd":
            import speechd                                  # type: ignore[import-not-found]
            self._speechd = speechd
            self._client = speechd.SSIPClient("realtime")

    def start(self, text: str, priority: Priority) -> "_Utterance":
        if self._client is not None:
            return _SpeechdUtterance(self._client, self._speechd, text, SPD_PRIORITY[priority])
        cmd = spd_say_command(text, priority, rate=self.rate, volume=self.volume, voice=self.voice)
        return _ProcessUtterance(self._popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _Utterance:
    def done(self) -> bool: ...
    def cancel(self) -> None: ...


class _ProcessUtterance(_Utterance):
    """A player process (aplay, spd-say --wait): done when it exits; cancel terminates it."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc

    def done(self) -> bool:
        return self.proc.poll() is not None

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _SpeechdUtterance(_Utterance):
    def __init__(self, client: Any, speechd: Any, text: str, priority: str) -> None:
        import threading
        self._done = threading.Event()
        self._client = client
        client.set_priority(getattr(speechd.Priority, priority.upper()))
        client.speak(text, callback=lambda *_: self._done.set(),
                     event_types=(speechd.CallbackType.END, speechd.CallbackType.CANCEL))

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self._client.cancel()                               # this client's messages only


def play_wav(path: Path, popen: Callable[..., Any] = subprocess.Popen) -> _Utterance:
    """Start playing a WAV file with ``aplay`` (stoppable at once, unlike pyttsx3's own playback)."""
    return _ProcessUtterance(popen(["aplay", "-q", str(path)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL))


def audio_output_status() -> tuple[bool, str]:
    """(True, what) when sound can probably be played; else (False, why not).

    On Linux sound is played through ``aplay``, which needs an ALSA playback device
    (``/dev/snd/pcmC*D*p``) or a PulseAudio/PipeWire server. Other systems are assumed
    to have sound.
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


__all__: Sequence[str] = ("choose_engine", "spd_say_command", "SpeechDispatcherVoice", "play_wav",
                          "audio_output_status", "pyttsx3_engine", "EngineChoice")
