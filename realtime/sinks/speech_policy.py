"""What the speech sink says, and when: pure decisions, no threads, no engine, no clock of its own.

* :class:`Phrasing` turns a change into words at a :class:`Verbosity` (label only, the
  templates, or the templates with confidence and duration).
* :class:`AnnouncePolicy` turns one ``change`` event into at most one :class:`Announcement`
  of one or more :class:`Part` s (``ended`` then ``started``/``urgent``, or ``maybe``), each
  with a :class:`Kind`; the announcement has a :class:`Priority`.
* :class:`Budget` is the announcement budget: at most ``max_per_minute`` parts in any 60 s.
* :func:`choose` picks what the speaker says next from the pending slots (one per
  priority), honouring the cooldown, the budget and staleness.

Priorities (highest first), and what each may do:

========== ================================================================================
URGENT     an urgent label started: interrupts whatever is being said, skips the cooldown
           and the budget (urgent parts are counted apart, in ``SpeechStats.urgent``)
ON_DEMAND  the listener asked (``say_now``): interrupts routine and background speech,
           skips the cooldown and the budget
ROUTINE    an activity started (with the end of the one before): waits for the cooldown and
           the budget; a newer one replaces an unspoken older one (newest only)
BACKGROUND an end on its own, or "maybe": waits for everything above, the cooldown and the
           budget, and is dropped when it was not said within ``stale_seconds``
========== ================================================================================
"""

from __future__ import annotations

import enum
import re
import string
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Sequence

from realtime.core.errors import SinkError

TEMPLATE_FIELDS = ("label", "previous", "score", "stream", "confidence", "duration")
MINUTE = 60.0


class Kind(str, enum.Enum):
    """What an announcement part says; also the middle of its WAV file's name."""
    STARTED = "started"
    ENDED = "ended"
    MAYBE = "maybe"
    URGENT = "urgent"
    NOW = "now"            # on demand: the current activity
    REPEAT = "repeat"      # on demand: the last announcement again


class Priority(enum.IntEnum):
    BACKGROUND = 0
    ROUTINE = 1
    ON_DEMAND = 2
    URGENT = 3


class Verbosity(str, enum.Enum):
    MINIMAL = "minimal"    # the label only
    NORMAL = "normal"      # the templates
    DETAILED = "detailed"  # the templates, with confidence and duration


class EarconMode(str, enum.Enum):
    OFF = "off"
    WITH_WORDS = "with_words"
    ONLY = "only"


@dataclass(frozen=True)
class Part:
    kind: Kind
    label: str             # the model's (or friendly) label, not humanized
    text: str


@dataclass(frozen=True)
class Announcement:
    priority: Priority
    stream: str
    parts: tuple[Part, ...]
    created: float         # the sink's clock when it was made
    final: bool = False    # the stream's last words (it ended): no cooldown, said before the sink closes

    @property
    def label(self) -> str:
        return self.parts[-1].label

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.parts)


def humanize(label: Optional[str]) -> str:
    return (label or "").replace("_", " ").strip()


def confidence_words(score: float) -> str:
    if score >= 0.85:
        return "very sure"
    if score >= 0.7:
        return "fairly sure"
    if score >= 0.5:
        return "not very sure"
    return "unsure"


def duration_words(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return "1 second" if s == 1 else f"{s} seconds"
    m = int(round(seconds / 60))
    return "1 minute" if m == 1 else f"{m} minutes"


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
        template.format(label="x", previous="y", score=0.5, stream="s", confidence="c", duration="d")
    except (ValueError, IndexError, KeyError, AttributeError) as exc:
        raise SinkError(f"speech template {template!r}: {exc}") from None


@dataclass(frozen=True)
class Phrasing:
    """Words for each kind of part. Templates take {label} {previous} {score} {stream}
    {confidence} {duration} (``duration``: how long ``previous`` lasted)."""
    verbosity: Verbosity = Verbosity.NORMAL
    template: str = "{label}"
    end_template: str = "Stopped {label}."
    maybe_template: str = "Maybe {label}."
    urgent_template: str = "Warning: {label}!"
    now_template: str = "Now {label}."

    def templates(self) -> tuple[str, ...]:
        return (self.template, self.end_template, self.maybe_template, self.urgent_template,
                self.now_template)

    def text(self, kind: Kind, label: str, *, score: float = 1.0, previous: Optional[str] = None,
             duration: Optional[float] = None, stream: str = "") -> str:
        words = humanize(label)
        if self.verbosity is Verbosity.MINIMAL:
            return {Kind.ENDED: f"{words} ended", Kind.MAYBE: f"maybe {words}"}.get(kind, words)
        template = {Kind.STARTED: self.template, Kind.ENDED: self.end_template,
                    Kind.MAYBE: self.maybe_template, Kind.URGENT: self.urgent_template,
                    Kind.NOW: self.now_template}.get(kind, self.template)
        text = template.format(label=words, previous=humanize(previous), score=score, stream=stream,
                               confidence=confidence_words(score), duration=duration_words(duration))
        if self.verbosity is Verbosity.DETAILED:
            extra = []
            if kind in (Kind.STARTED, Kind.URGENT, Kind.MAYBE, Kind.NOW):
                extra.append(confidence_words(score))
            if duration is not None and kind is Kind.ENDED:
                extra.append(f"after {duration_words(duration)}")
            elif duration is not None and kind is Kind.NOW:
                extra.append(f"for {duration_words(duration)}")
            elif duration is not None and previous:
                extra.append(f"after {duration_words(duration)} of {humanize(previous)}")
            if extra:
                end = text[-1] if text and text[-1] in ".!?" else "."
                text = ", ".join([text.rstrip(".!? ")] + extra) + end
        return text


class AnnouncePolicy:
    """Which change events are announced, as what, at which priority.

    ``last_said`` (stream -> label whose start was said last, None after its end was said) is
    the speaker's memory; the policy only reads it.
    """

    def __init__(self, phrasing: Phrasing, *, min_score: float = 0.5, announce_endings: bool = False,
                 announce_uncertain: bool = False, maybe_min_score: float = 0.2,
                 urgent_labels: Sequence[str] = ()) -> None:
        self.phrasing = phrasing
        self.min_score = min_score
        self.announce_endings = announce_endings
        self.announce_uncertain = announce_uncertain
        self.maybe_min_score = maybe_min_score
        self.urgent_labels = frozenset(urgent_labels)

    def on_end(self, stream: str, said: Optional[str], now: float) -> Optional[Announcement]:
        """The stream ended (a file's last frame, a camera closed for good): the activity
        announced last for it ended too, said as background information when endings are on."""
        if not self.announce_endings or not said:
            return None
        return Announcement(Priority.BACKGROUND, stream, (Part(Kind.ENDED, said, self.phrasing.text(
            Kind.ENDED, said, stream=stream)),), now, final=True)

    def on_change(self, event: Mapping[str, Any], said: Optional[str], now: float) -> Optional[Announcement]:
        """The announcement for one ``change`` event, given the label said last for its stream."""
        stream = str(event.get("stream", ""))
        label = str(event.get("label") or "")
        try:
            score = float(event.get("score", 0.0))
        except (TypeError, ValueError):
            score = 0.0
        uncertain = event.get("uncertain") is True
        previous = event.get("previous")
        duration = event.get("previous_duration")
        duration = float(duration) if isinstance(duration, (int, float)) else None
        text = self.phrasing.text
        parts: list[Part] = []
        if self.announce_endings and said is not None and previous == said and (uncertain or label != said):
            parts.append(Part(Kind.ENDED, said, text(Kind.ENDED, said, duration=duration, stream=stream)))
        priority = Priority.BACKGROUND
        if label and not uncertain and score >= self.min_score and label != said:
            kind = Kind.URGENT if label in self.urgent_labels else Kind.STARTED
            parts.append(Part(kind, label, text(kind, label, score=score, previous=previous,
                                                duration=duration, stream=stream)))
            priority = Priority.URGENT if kind is Kind.URGENT else Priority.ROUTINE
        elif self.announce_uncertain:
            guess, guess_score = self._guess(event, label, score, uncertain)
            if guess is not None and guess != said and guess_score >= self.maybe_min_score:
                parts.append(Part(Kind.MAYBE, guess, text(Kind.MAYBE, guess, score=guess_score,
                                                          previous=previous, duration=duration,
                                                          stream=stream)))
                if guess in self.urgent_labels:      # "maybe falling" is never dropped as background
                    priority = Priority.ROUTINE
        if not parts:
            return None
        return Announcement(priority, stream, tuple(parts), now)

    def _guess(self, event: Mapping[str, Any], label: str, score: float,
               uncertain: bool) -> tuple[Optional[str], float]:
        """What the stream may be doing when the change is not confident enough to announce."""
        if label and not uncertain:
            return label, score                      # a stable label below min_score
        for item in event.get("top_k") or ():        # the uncertain label: the best guess behind it
            try:
                guess, guess_score = str(item["label"]), float(item["score"])
            except (KeyError, TypeError, ValueError):
                continue
            if guess != label:
                return guess, guess_score
        return None, 0.0


def merge(pending: Optional[Announcement], new: Announcement) -> Announcement:
    """``new`` replacing ``pending`` of the same stream: an unspoken end is still true, so it is kept
    in front (once); an unspoken start or "maybe" is stale."""
    if pending is None or pending.stream != new.stream:
        return new
    ends = tuple(p for p in pending.parts if p.kind is Kind.ENDED
                 and all(q.kind is not Kind.ENDED or q.label != p.label for q in new.parts))
    if not ends:
        return new
    return replace(new, parts=ends + new.parts)


class Budget:
    """At most ``per_minute`` parts in any 60 s window (0: no budget)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] >= MINUTE:
            self._times.popleft()

    def room(self, now: float) -> int:
        if self.per_minute <= 0:
            return 1 << 30
        self._expire(now)
        return self.per_minute - len(self._times)

    def wait(self, now: float) -> float:
        """Seconds until there is room for one more part (0 if there is now)."""
        if self.room(now) > 0:
            return 0.0
        return max(0.0, self._times[0] + MINUTE - now)

    def spend(self, now: float, n: int = 1) -> None:
        if self.per_minute > 0:
            self._times.extend([now] * n)


@dataclass
class Choice:
    item: Optional[Announcement] = None           # say this now
    wait: Optional[float] = None                  # else wake up after this long (None: on news)
    stale: tuple[Announcement, ...] = ()          # dropped: no longer worth saying


def choose(slots: dict[Priority, Announcement], now: float, *, ready_at: float, budget: Budget,
           stale_seconds: float) -> Choice:
    """Pick the next announcement from ``slots`` (one per priority); removes what it returns or drops.

    When the budget has room for only part of a routine announcement, its ends are left out.
    """
    stale = []
    bg = slots.get(Priority.BACKGROUND)
    if bg is not None and now - bg.created > stale_seconds:
        stale.append(slots.pop(Priority.BACKGROUND))
    for prio in (Priority.URGENT, Priority.ON_DEMAND):
        if prio in slots:
            return Choice(item=slots.pop(prio), stale=tuple(stale))
    waits = []
    for prio in (Priority.ROUTINE, Priority.BACKGROUND):
        item = slots.get(prio)
        if item is None:
            continue
        wait = max(0.0 if item.final else ready_at - now, budget.wait(now))
        if wait > 0:
            waits.append(wait if prio is Priority.ROUTINE else min(wait, item.created + stale_seconds - now))
            break                                # a waiting routine one goes first
        room = budget.room(now)
        if len(item.parts) > room:
            item = replace(item, parts=item.parts[-room:])
        del slots[prio]
        return Choice(item=item, stale=tuple(stale))
    return Choice(wait=max(0.0, min(waits)) if waits else None, stale=tuple(stale))
