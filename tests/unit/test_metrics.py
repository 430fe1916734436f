"""realtime.core.metrics against scikit-learn, on seeded random tables and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.core.metrics import (accuracy, classification_metrics, confusion_matrix, macro_average,
                              precision_recall_f1_support, top_k_accuracy)

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (test extra) not installed")

CLASSES = ["a", "b", "c", "d", "e"]


def check_against_sklearn(y_true: list[str], y_pred: list[str], labels: list[str]) -> None:
    """Every metric of realtime.core.metrics equals scikit-learn's on (y_true, y_pred, labels)."""
    assert accuracy(y_true, y_pred) == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    p, r, f, s = precision_recall_f1_support(y_true, y_pred, labels)
    sp, sr, sf, ss = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    np.testing.assert_allclose(p, sp, atol=1e-12)
    np.testing.assert_allclose(r, sr, atol=1e-12)
    np.testing.assert_allclose(f, sf, atol=1e-12)
    np.testing.assert_array_equal(s, ss)
    mp, mr, mf, _ = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert macro_average(p) == pytest.approx(mp)
    assert macro_average(r) == pytest.approx(mr)
    assert macro_average(f) == pytest.approx(mf)
    # sklearn drops samples outside `labels`; the plain matrix does the same
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, labels),
                                  sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels))
    # with other=True the extra column sums sklearn's columns of every label outside `labels`
    outside = sorted(set(y_pred) - set(labels))
    full = sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels + outside)[:len(labels)]
    expected = np.concatenate([full[:, :len(labels)], full[:, len(labels):].sum(axis=1, keepdims=True)],
                              axis=1)
    mine = confusion_matrix(y_true, y_pred, labels, other=True)
    np.testing.assert_array_equal(mine, expected)
    assert mine.shape == (len(labels), len(labels) + 1)


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 6))
    labels = CLASSES[:n_classes]
    n = int(rng.integers(1, 80))
    y_true = list(rng.choice(labels, n))
    # predictions: mostly right, some wrong, some outside the classes ("zzz", "other")
    y_pred = [t if rng.random() < 0.5 else str(rng.choice(labels + ["zzz", "other"])) for t in y_true]
    check_against_sklearn([str(t) for t in y_true], y_pred, list(labels))


@pytest.mark.parametrize(("y_true", "y_pred", "labels"), [
    (["a", "a", "b", "b"], ["a", "a", "a", "a"], ["a", "b"]),                   # b never predicted
    (["a", "a", "b", "b"], ["a", "b", "a", "b"], ["a", "b", "c"]),              # c never present
    (["a", "b", "c", "a"], ["a", "b", "c", "a"], ["a", "b", "c"]),              # perfect
    (["a", "b", "c", "a"], ["b", "c", "a", "c"], ["a", "b", "c"]),              # all wrong
    (["a", "b"], ["x", "y"], ["a", "b"]),                                       # all outside
    (["a"], ["a"], ["a"]),                                                      # one sample
    (["a", "b", "x"], ["a", "a", "a"], ["a", "b"]),                             # a true label outside
], ids=["never-predicted", "never-present", "perfect", "all-wrong", "all-other", "single",
        "true-outside"])
@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
def test_edge_cases_match_sklearn(y_true: list[str], y_pred: list[str], labels: list[str]) -> None:
    check_against_sklearn(y_true, y_pred, labels)


def test_edge_case_values() -> None:
    p, r, f, s = precision_recall_f1_support(["a", "a", "b"], ["a", "a", "a"], ["a", "b", "c"])
    assert list(p) == pytest.approx([2 / 3, 0.0, 0.0])     # b, c never predicted: precision 0
    assert list(r) == pytest.approx([1.0, 0.0, 0.0])       # c never present: recall 0
    assert list(f) == pytest.approx([0.8, 0.0, 0.0])
    assert list(s) == [2, 1, 0]
    assert accuracy([], []) == 0.0
    assert macro_average(np.array([])) == 0.0


def test_classification_metrics_bundle() -> None:
    m = classification_metrics(["a", "a", "b"], ["a", "zzz", "b"], ["a", "b"])
    assert m.accuracy == pytest.approx(2 / 3)
    assert m.confusion.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert m.macro == pytest.approx({"precision": 1.0, "recall": 0.75, "f1": (2 / 3 + 1) / 2})
    assert m.per_class()["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                                "support": 2})


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy_matches_sklearn(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = 6
    y = rng.integers(0, n_classes, 50)
    scores = rng.random((50, n_classes))
    expected = sklearn_metrics.top_k_accuracy_score(y, scores, k=k, labels=np.arange(n_classes))
    assert top_k_accuracy(y, scores, k) == pytest.approx(expected)


def test_top_k_accuracy_bounds() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert top_k_accuracy([1, 2], scores, 1) == 0.5
    assert top_k_accuracy([1, 2], scores, 3) == 1.0
    assert top_k_accuracy([1, 2], scores, 10) == 1.0
    with pytest.raises(ValueError):
        top_k_accuracy([1], scores, 1)
    with pytest.raises(ValueError):
        top_k_accuracy([1, 2], scores, 0)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="length"):
        accuracy(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        confusion_matrix(["a"], ["a"], ["a", "a"])
