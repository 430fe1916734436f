"""Running ``realtime eval``: load the model once, classify every clip, score the predictions.

Each clip is classified whole with :func:`realtime.tools.classify.classify_file` (the
model is loaded once and shared by every clip through :class:`SharedClassifier`); a
clip that cannot be read is skipped and listed in the report. The metrics come from
:mod:`realtime.core.metrics`; the data set and its labels from
:mod:`realtime.tools.evaluate.dataset`, the report from :mod:`realtime.tools.evaluate.report`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import cv2
import numpy as np

from realtime.config import Config
from realtime.core.errors import ConfigError, RealtimeError, SourceError
from realtime.core.metrics import classification_metrics, top_k_accuracy
from realtime.core.types import InputSpec
from realtime.models import ClipClassifier, classifier_for
from realtime.tools.evaluate.dataset import load_dataset, match_labels, read_label_map
from realtime.tools.evaluate.report import ClipOutcome, EvalReport, Skipped, round_score

log = logging.getLogger(__name__)

OTHER_LABEL = "other"


# --------------------------------------------------------------------------- classifier
class SharedClassifier:
    """A classifier loaded once and shared by every ``classify_file`` call.

    ``Pipeline`` calls ``load()`` and ``close()`` on its classifier each run; here
    the first ``load()`` loads and the rest are no-ops, ``close()`` waits for
    :meth:`release`. Everything else is the wrapped classifier's.
    """

    def __init__(self, inner: ClipClassifier) -> None:
        self.inner = inner
        self._loaded = False

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def labels(self) -> Sequence[str]:
        return self.inner.labels

    @property
    def num_frames(self) -> int:
        return self.inner.num_frames

    @property
    def window_seconds(self) -> float:
        return self.inner.window_seconds

    @property
    def input_spec(self) -> InputSpec:
        return self.inner.input_spec

    @property
    def device(self) -> str:
        return self.inner.device

    def load(self) -> None:
        if not self._loaded:
            self.inner.load()
            self._loaded = True

    def predict(self, clips: np.ndarray) -> np.ndarray:
        return self.inner.predict(clips)

    def close(self) -> None:
        """Kept open between clips; see :meth:`release`."""

    def release(self) -> None:
        """Close the wrapped classifier, if it has a ``close()``."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def __getattr__(self, name: str) -> Any:   # anything else a backend offers
        return getattr(self.inner, name)


# --------------------------------------------------------------------------- running
def evaluate(data: str | Path, config: Config, *, classifier: Optional[ClipClassifier] = None,
             labels_map: Optional[str | Path] = None, stride: Optional[float] = None, k: int = 5,
             progress: bool = True) -> EvalReport:
    """Classify every clip of ``data`` with the config's model (or ``classifier``) and score it.

    The classifier is built from ``config.model`` unless given, loaded once, and
    passed to every :func:`~realtime.tools.classify.classify_file` call. Raises
    ConfigError for a bad data set, labels map or unknown label (before any clip is
    classified) and SourceError when no clip at all could be classified.
    """
    from realtime.tools.classify import classify_file

    if k < 1:
        raise ConfigError(f"top-k must be >= 1, got {k}")
    if stride is not None and not stride > 0:
        raise ConfigError(f"stride must be > 0, got {stride}")
    started = time.monotonic()
    dataset = load_dataset(data)
    mapping = read_label_map(labels_map) if labels_map is not None else None
    owned = classifier is None
    if classifier is None:
        classifier = classifier_for(config.model)
    shared = SharedClassifier(classifier)
    try:
        t0 = time.monotonic()
        if not list(shared.labels):      # transformers models know their labels once loaded
            shared.load()
        model_labels = list(shared.labels)
        label_map = match_labels(dataset.classes, model_labels, shared.name, mapping)
        shared.load()
        model_seconds = time.monotonic() - t0
        log.info("model %s ready in %.1f s; %d clips in %d classes", shared.name, model_seconds,
                 len(dataset.samples), len(dataset.classes))
        index = {label: i for i, label in enumerate(model_labels)}
        back = {target: cls for cls, target in label_map.items()}
        k = min(k, len(model_labels))
        clips: list[ClipOutcome] = []
        skipped: list[Skipped] = []
        true_index: list[int] = []
        probs: list[np.ndarray] = []
        with _progress_bar(len(dataset.samples), progress) as bar, _quiet_capture_logs():
            for sample in dataset.samples:
                done = f"acc {sum(c.correct for c in clips) / len(clips):.2f}, " if clips else ""
                bar.set_postfix_str(done + _short(dataset.display(sample.path)), refresh=False)
                t1 = time.monotonic()
                try:
                    if not sample.path.is_file():
                        raise SourceError("file not found")
                    result = classify_file(str(sample.path), config, classifier=shared,
                                           stride=stride, progress=False)
                    assert result.mean_probs is not None
                    p = np.asarray(result.mean_probs, dtype=np.float64)
                    if p.shape != (len(model_labels),) or not np.all(np.isfinite(p)):
                        raise SourceError(f"the model gave {p.shape} probabilities for "
                                          f"{len(model_labels)} labels")
                except (RealtimeError, OSError, ValueError, RuntimeError, cv2.error) as exc:
                    reason = str(exc) if isinstance(exc, RealtimeError) else f"{type(exc).__name__}: {exc}"
                    log.warning("skipped %s: %s", sample.path, reason)
                    skipped.append(Skipped(sample.path, sample.label, reason))
                    bar.update(1)
                    continue
                truth = label_map[sample.label]
                order = np.argsort(-p, kind="stable")
                best = model_labels[int(order[0])]
                top = [{"label": model_labels[int(j)], "score": round_score(p[j])} for j in order[:k]]
                clips.append(ClipOutcome(
                    sample.path, sample.label, truth, back.get(best, best), best, back.get(best),
                    float(p[order[0]]), float(p[index[truth]]), top,
                    any(t["label"] == truth for t in top), len(result.windows),
                    time.monotonic() - t1))
                true_index.append(index[truth])
                probs.append(p)
                bar.update(1)
    finally:
        if owned:
            shared.release()
    if not clips:
        first = skipped[0]
        raise SourceError(f"none of the {len(dataset.samples)} clips in {dataset.source} could be "
                          f"classified (first: {dataset.display(first.path)}: {first.reason})")
    classes = dataset.classes
    other = OTHER_LABEL if OTHER_LABEL not in classes else f"({OTHER_LABEL})"
    # A prediction outside the data set's classes (None here) is counted in the confusion
    # matrix's "other" column and is a false negative of the true class.
    metrics = classification_metrics([c.label for c in clips], [c.predicted_class for c in clips],
                                     classes, other_label=other)
    for i, label in enumerate(classes):
        if metrics.support[i] == 0:
            log.warning("class %s: every clip was skipped; its recall counts as 0 in the macro "
                        "average", label)
    topk = top_k_accuracy(np.array(true_index), np.stack(probs), k)
    return EvalReport(dataset, shared.name, label_map, k, stride, clips, skipped, metrics, topk,
                      time.monotonic() - started, model_seconds)


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool) -> Iterator[Any]:
    """One tqdm bar over the clips on stderr (shown on a terminal), log lines kept above it."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with tqdm(total=total, unit="clip", desc="eval", file=sys.stderr, dynamic_ncols=True,
              disable=None if enabled else True) as bar:
        if bar.disable:
            yield bar
        else:
            with logging_redirect_tqdm():
                yield bar


@contextlib.contextmanager
def _quiet_capture_logs() -> Iterator[None]:
    """The capture thread logs an unreadable file's error too; the skip warning says it once."""
    capture = logging.getLogger("realtime.stream.capture")
    if capture.getEffectiveLevel() <= logging.INFO:
        yield
        return
    level = capture.level
    capture.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        capture.setLevel(level)
