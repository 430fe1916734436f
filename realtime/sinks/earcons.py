"""Earcons: a short, distinct sound per kind of announcement, generated (no audio files shipped).

Each is a few tones with a smooth attack and release (no clicks), 16-bit mono at the
speech engine's rate, so it can be joined in front of the spoken words:

========  =======================================================  =========
kind      sound                                                     length
========  =======================================================  =========
started   a rising chirp, 520 -> 1040 Hz                            0.18 s
ended     a falling chirp, 1040 -> 520 Hz                           0.18 s
maybe     two soft wobbling tones around 660 Hz                     0.30 s
urgent    three loud, fast, high beeps (1760 Hz)                    0.36 s
now       one short mid beep (880 Hz)                               0.10 s
repeat    two short mid beeps (880 Hz)                              0.22 s
========  =======================================================  =========
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RATE = 22050          # pyttsx3's espeak driver writes 22050 Hz mono 16-bit


def _envelope(n: int, rate: int, attack: float = 0.008, release: float = 0.03) -> np.ndarray:
    env = np.ones(n)
    a, r = min(n // 2, int(attack * rate)), min(n // 2, int(release * rate))
    if a:
        env[:a] = np.linspace(0.0, 1.0, a)
    if r:
        env[-r:] = np.linspace(1.0, 0.0, r)
    return env


def tone(f0: float, f1: float, seconds: float, rate: int = RATE, amplitude: float = 0.5,
         vibrato: float = 0.0) -> np.ndarray:
    """A sine sweeping linearly from ``f0`` to ``f1`` Hz (a chirp when they differ), enveloped."""
    n = max(1, int(seconds * rate))
    t = np.arange(n) / rate
    freq = f0 + (f1 - f0) * t / seconds
    if vibrato:
        freq = freq * (1.0 + 0.03 * np.sin(2 * np.pi * vibrato * t))
    phase = 2 * np.pi * np.cumsum(freq) / rate
    return amplitude * np.sin(phase) * _envelope(n, rate)


def _silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate))


def _design(kind: str, rate: int) -> np.ndarray:
    if kind == "started":
        parts = [tone(520, 1040, 0.18, rate)]
    elif kind == "ended":
        parts = [tone(1040, 520, 0.18, rate)]
    elif kind == "maybe":
        parts = [tone(660, 660, 0.12, rate, 0.3, vibrato=12), _silence(0.06, rate),
                 tone(620, 620, 0.12, rate, 0.3, vibrato=12)]
    elif kind == "urgent":
        beep = tone(1760, 1760, 0.08, rate, 0.8)
        gap = _silence(0.06, rate)
        parts = [beep, gap, beep, gap, beep]
    elif kind == "now":
        parts = [tone(880, 880, 0.1, rate)]
    elif kind == "repeat":
        parts = [tone(880, 880, 0.08, rate), _silence(0.06, rate), tone(880, 880, 0.08, rate)]
    else:
        raise ValueError(f"no earcon for {kind!r}")
    return np.concatenate(parts)


@lru_cache(maxsize=32)
def _cached(kind: str, rate: int) -> bytes:
    return (np.clip(_design(kind, rate), -1, 1) * 32767).astype("<i2").tobytes()


def earcon(kind: str, rate: int = RATE) -> np.ndarray:
    """The earcon for ``kind`` (started, ended, maybe, urgent, now, repeat) as int16 samples."""
    return np.frombuffer(_cached(str(getattr(kind, "value", kind)), rate), dtype="<i2")


KINDS = ("started", "ended", "maybe", "urgent", "now", "repeat")
