"""Classification metrics in plain numpy (no scikit-learn at run time).

Labels are any hashable values (strings in ``realtime eval``). Every function
takes the list of classes to report, ``labels``, like scikit-learn's
``labels=`` argument, and gives the same numbers as scikit-learn:

* :func:`accuracy`: the fraction of samples whose prediction equals the truth
  (all samples count, whatever ``labels`` holds), as ``accuracy_score``.
* :func:`precision_recall_f1_support`: per class of ``labels``, as
  ``precision_recall_fscore_support(..., labels=labels, average=None,
  zero_division=0)``. A class that is never predicted has precision 0; a class
  that never occurs (support 0) has recall 0; F1 is ``2 TP / (2 TP + FP + FN)``,
  0 when both are 0. Predictions outside ``labels`` are false negatives of the
  true class and false positives of no reported class.
* :func:`macro_average`: the unweighted mean over ``labels`` (zero-support and
  never-predicted classes included, with the zeros above), as ``average="macro"``.
* :func:`confusion_matrix`: rows = true class, columns = predicted class, in the
  order of ``labels``; with ``other=True`` an extra last column counts the
  predictions outside ``labels`` (scikit-learn drops those samples).
* :func:`top_k_accuracy`: the fraction of samples whose true class is among the
  ``k`` highest scores, as ``top_k_accuracy_score`` (ties broken by class index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

__all__ = ["ClassificationMetrics", "accuracy", "classification_metrics", "confusion_matrix",
           "macro_average", "precision_recall_f1_support", "top_k_accuracy"]


def _encode(values: Sequence[Hashable], labels: Sequence[Hashable]) -> np.ndarray:
    """Index of each value in ``labels``; -1 for a value that is not there."""
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError("labels must be unique")
    return np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))


def _check_pair(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} != {len(y_pred)}")


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Fraction of samples predicted correctly; 0.0 for no samples."""
    _check_pair(y_true, y_pred)
    if not len(y_true):
        return 0.0
    return sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)


def confusion_matrix(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                     labels: Sequence[Hashable], *, other: bool = False) -> np.ndarray:
    """Counts (len(labels), len(labels) [+ 1]): rows true class, columns predicted class.

    Samples whose true label is not in ``labels`` are left out. A prediction outside
    ``labels`` is left out too, unless ``other`` is true: then it is counted in an
    extra last column.
    """
    _check_pair(y_true, y_pred)
    n = len(labels)
    t = _encode(y_true, labels)
    p = _encode(y_pred, labels)
    cols = n + 1 if other else n
    if other:
        p = np.where(p < 0, n, p)
    keep = (t >= 0) & (p >= 0)
    flat = np.bincount(t[keep] * cols + p[keep], minlength=n * cols)
    return flat.reshape(n, cols).astype(np.int64)


def precision_recall_f1_support(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                                labels: Sequence[Hashable]
                                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per class of ``labels``: precision, recall, F1 (float64) and support (int64).

    Zero divisions give 0 (a never-predicted class has precision 0, a class without
    samples recall 0), as scikit-learn's ``zero_division=0``.
    """
    _check_pair(y_true, y_pred)
    n = len(labels)
    t = _encode(y_true, labels)
    p = _encode(y_pred, labels)
    tp = np.bincount(t[(t == p) & (t >= 0)], minlength=n)
    true_sum = np.bincount(t[t >= 0], minlength=n)
    pred_sum = np.bincount(p[p >= 0], minlength=n)
    precision = _safe_divide(tp, pred_sum)
    recall = _safe_divide(tp, true_sum)
    f1 = _safe_divide(2 * tp, true_sum + pred_sum)
    return precision, recall, f1, true_sum.astype(np.int64)


def macro_average(values: np.ndarray) -> float:
    """The unweighted mean of per-class values; 0.0 for no classes."""
    return float(np.mean(values)) if len(values) else 0.0


def top_k_accuracy(y_true: Sequence[int] | np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of rows of ``scores`` (N, C) whose true class index is among the k best.

    Ties are broken by the lower class index first. ``k`` >= C gives 1.0.
    """
    scores = np.asarray(scores)
    y = np.asarray(y_true, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(y):
        raise ValueError(f"scores must be (N, C) with N = len(y_true), got {scores.shape} and {len(y)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not len(y):
        return 0.0
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(order == y[:, None], axis=1)))


@dataclass(frozen=True)
class ClassificationMetrics:
    """All the metrics of one evaluation, over the classes ``labels``."""

    labels: list[str]
    accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    confusion: np.ndarray            # (n, n + 1): the last column counts predictions outside labels
    other_label: str                 # the name of that last column

    @property
    def macro(self) -> dict[str, float]:
        """Macro (unweighted mean over ``labels``) precision, recall and F1."""
        return {"precision": macro_average(self.precision), "recall": macro_average(self.recall),
                "f1": macro_average(self.f1)}

    def per_class(self) -> dict[str, dict[str, Any]]:
        return {label: {"precision": float(self.precision[i]), "recall": float(self.recall[i]),
                        "f1": float(self.f1[i]), "support": int(self.support[i])}
                for i, label in enumerate(self.labels)}


def classification_metrics(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                           labels: Sequence[str], other_label: str = "other") -> ClassificationMetrics:
    """Accuracy, per-class and macro P/R/F1, and the confusion matrix with an "other" column.

    Any prediction that is not one of ``labels`` (another string, None) counts as "other".
    """
    p, r, f, s = precision_recall_f1_support(y_true, y_pred, labels)
    return ClassificationMetrics(list(labels), accuracy(y_true, y_pred), p, r, f, s,
                                 confusion_matrix(y_true, y_pred, labels, other=True), other_label)
