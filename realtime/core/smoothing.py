"""Temporal smoothing: raw window probabilities in, stable labels and change events out.

Pure: no threads, no clocks (the caller passes the stream time). Steps, in order:

1. label filter: an allowlist and/or denylist of model labels; the remaining
   probabilities are renormalised to sum to 1 (scaled down when the model gave
   the allowed labels less than ``min_allowed_mass`` altogether);
2. smoothing over windows: exponential moving average (``alpha``) or the mean
   of the last ``window`` predictions (or none);
3. hysteresis: a new label must reach ``enter`` (and beat the current one); the
   current label is kept until it falls below ``exit``, then the state becomes
   the explicit uncertain label;
4. minimum dwell: a different state must persist for ``min_dwell_seconds``
   before the stable label switches (flicker shorter than that never shows);
5. friendly names: ``rename`` maps model labels to the words users see.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from realtime.core.errors import ConfigError


@dataclass(frozen=True)
class SmoothingParams:
    enabled: bool = True
    method: str = "ema"                 # ema | mean | none
    alpha: float = 0.5                  # ema weight of the newest window
    window: int = 4                     # mean over this many windows
    enter: float = 0.4                  # smoothed score a new label needs
    exit: float = 0.25                  # below this the current label is dropped
    min_dwell_seconds: float = 1.0      # a new state must last this long before it shows
    uncertain_label: str = "no activity"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    min_allowed_mass: float = 0.0       # below this total on allowed labels, confidence shrinks
    rename: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    label: str                          # the new stable label (friendly name)
    previous: Optional[str]             # None at the start of a stream
    previous_duration: Optional[float]  # seconds the previous label lasted
    score: float
    uncertain: bool                     # the new state is the uncertain label


@dataclass(frozen=True)
class Smoothed:
    label: str                          # stable label (friendly), or the uncertain label
    score: float                        # smoothed score of the stable label (1 - best's, if uncertain)
    uncertain: bool
    top_k: tuple[tuple[str, float], ...]  # smoothed, friendly names, best first
    raw_top_k: tuple[tuple[str, float], ...]
    change: Optional[Change]


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``values``, largest first, ties to the lower position: the
    first ``k`` of a stable descending sort, without sorting all of them (400 Kinetics classes,
    three times per window per stream)."""
    k = min(k, len(values))
    if k <= 0:
        return np.zeros(0, np.intp)
    kth = values[np.argpartition(-values, k - 1)[:k]].min()
    candidates = np.flatnonzero(values >= kth)          # every tie at the boundary, in order
    return candidates[np.argsort(-values[candidates], kind="stable")[:k]]


def _top(probs: np.ndarray, names: Sequence[str], k: int) -> tuple[tuple[str, float], ...]:
    return tuple((names[i], float(probs[i])) for i in top_indices(probs, k))


class LabelSmoother:
    """Stateful smoothing for one stream."""

    _NONE = -1          # state index: the uncertain label

    def __init__(self, labels: Sequence[str], params: SmoothingParams, top_k: int = 5) -> None:
        self.labels = list(labels)
        self.params = params
        self.top_k = top_k
        known = set(self.labels)
        for key in ("allow", "deny"):
            unknown = [x for x in getattr(params, key) if x not in known]
            if unknown:
                raise ConfigError(f"smoothing.{key}: unknown label(s) {unknown} for this model "
                                  f"({len(self.labels)} labels, e.g. {self.labels[:3]})")
        unknown = [x for x in params.rename if x not in known]
        if unknown:
            raise ConfigError(f"smoothing.rename: unknown label(s) {unknown} for this model")
        if params.method not in ("ema", "mean", "none"):
            raise ConfigError(f"smoothing.method must be ema, mean or none, got {params.method!r}")
        mask = np.ones(len(self.labels), bool)
        if params.allow:
            mask[:] = False
            mask[[self.labels.index(x) for x in params.allow]] = True
        if params.deny:
            mask[[self.labels.index(x) for x in params.deny]] = False
        if not mask.any():
            raise ConfigError("smoothing: allow/deny leave no label to report")
        self.mask = mask
        self.names = [params.rename.get(x, x) for x in self.labels]
        self.reset()

    def reset(self) -> None:
        """Forget everything (after a source gap or reconnect)."""
        self._ema: Optional[np.ndarray] = None
        self._recent: deque[np.ndarray] = deque(maxlen=max(1, self.params.window))
        self._state: Optional[int] = None      # None = nothing reported yet
        self._since: Optional[float] = None
        self._pending: Optional[int] = None
        self._pending_since = 0.0

    # ------------------------------------------------------------------ steps
    def _filter(self, probs: np.ndarray) -> np.ndarray:
        """Keep the allowed labels and renormalise them to sum to 1.

        With ``min_allowed_mass`` > 0 the result is scaled down when the model put
        less than that much probability on the allowed labels altogether, so an
        activity outside the list (someone resting, for a list of exercises) reads
        as uncertain instead of as the least unlikely allowed label.
        """
        p = np.where(self.mask, probs.astype(np.float64), 0.0)
        total = p.sum()
        if total <= 0:   # no evidence for any allowed label
            if self.params.min_allowed_mass > 0:
                return np.zeros_like(p)
            return np.where(self.mask, 1.0 / self.mask.sum(), 0.0)
        scale = 1.0 if self.params.min_allowed_mass <= 0 else min(1.0, total / self.params.min_allowed_mass)
        return p / total * scale

    def _smooth(self, p: np.ndarray) -> np.ndarray:
        method = self.params.method
        if method == "ema":
            a = self.params.alpha
            self._ema = p if self._ema is None else a * p + (1.0 - a) * self._ema
            return self._ema
        if method == "mean":
            self._recent.append(p)
            return np.mean(self._recent, axis=0)
        return p

    def _desired(self, s: np.ndarray) -> int:
        best = int(np.argmax(s))
        current = self._state
        prm = self.params
        if current is None or current == self._NONE:
            return best if s[best] >= prm.enter else self._NONE
        if best != current and s[best] >= prm.enter and s[best] > s[current]:
            return best
        if s[current] < prm.exit:
            return best if s[best] >= prm.enter else self._NONE
        return current

    def _name(self, state: int) -> str:
        return self.params.uncertain_label if state == self._NONE else self.names[state]

    # ------------------------------------------------------------------ public
    def update(self, probs: np.ndarray, t: float) -> Smoothed:
        """Fold one window's probabilities (model label order) observed at stream time ``t``."""
        raw = self._filter(np.asarray(probs))
        raw_top = _top(raw, self.names, self.top_k)
        if not self.params.enabled:
            best = int(np.argmax(raw))
            change = None
            if best != self._state:
                change = self._switch(best, float(raw[best]), t)
            return Smoothed(self.names[best], float(raw[best]), False, raw_top, raw_top, change)
        s = self._smooth(raw)
        desired = self._desired(s)
        change = None
        if self._state is None:
            # The first window decides the initial state at once: nothing to flicker from.
            change = self._switch(desired, self._score(s, desired), t)
        elif desired != self._state:
            if self._pending != desired:
                self._pending, self._pending_since = desired, t
            if t - self._pending_since >= self.params.min_dwell_seconds - 1e-9:
                change = self._switch(desired, self._score(s, desired), t)
        else:
            self._pending = None
        state = self._state if self._state is not None else self._NONE
        return Smoothed(self._name(state), self._score(s, state), state == self._NONE,
                        _top(s, self.names, self.top_k), raw_top, change)

    def _score(self, s: np.ndarray, state: int) -> float:
        """The score of the reported label: its smoothed probability, or for the uncertain label
        what no label has (1 - the best smoothed score), so it always belongs to the label."""
        return float(1.0 - s.max() if state == self._NONE else s[state])

    def _switch(self, new: int, score: float, t: float) -> Change:
        previous = None if self._state is None else self._name(self._state)
        duration = None if self._since is None else t - self._since
        self._state, self._since, self._pending = new, t, None
        return Change(self._name(new), previous, duration, score, new == self._NONE)
