"""Smoothing tables: flicker suppressed, bounded switch delay, uncertain state, filters."""

import numpy as np
import pytest

from realtime.core.errors import ConfigError
from realtime.core.smoothing import LabelSmoother, SmoothingParams, top_indices

LABELS = ["walk", "run", "jump", "sit"]


def onehot(label, p=0.9):
    v = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    v[LABELS.index(label)] = p
    return v


def run(smoother, seq, dt=0.5):
    """Feed (label, p) pairs at dt intervals; return (stable labels, changes)."""
    out, changes = [], []
    for i, (label, p) in enumerate(seq):
        r = smoother.update(onehot(label, p), i * dt)
        out.append(r.label)
        if r.change:
            changes.append((i, r.change))
    return out, changes


def test_single_window_flicker_is_suppressed():
    sm = LabelSmoother(LABELS, SmoothingParams(min_dwell_seconds=1.0))
    seq = [("walk", .9)] * 6 + [("run", .9)] + [("walk", .9)] * 3 + [("jump", .9)] + [("walk", .9)] * 3
    labels, changes = run(sm, seq)
    assert set(labels) == {"walk"}
    assert len(changes) == 1 and changes[0][1].previous is None


@pytest.mark.parametrize("dwell,dt", [(0.0, 0.5), (1.0, 0.5), (2.0, 0.5), (1.5, 0.25)])
def test_switch_delay_is_bounded_by_dwell(dwell, dt):
    params = SmoothingParams(min_dwell_seconds=dwell, alpha=0.5)
    sm = LabelSmoother(LABELS, params)
    seq = [("walk", .95)] * 10 + [("run", .95)] * 20
    labels, changes = run(sm, seq, dt)
    switch_at = labels.index("run")
    delay = (switch_at - 10) * dt
    # ema needs a window or two to cross over, then the dwell holds it back
    assert dwell <= delay <= dwell + 2 * dt, (delay, labels)
    c = changes[-1][1]
    assert (c.label, c.previous) == ("run", "walk")
    assert c.previous_duration == pytest.approx(switch_at * dt)


def test_uncertain_when_nothing_is_confident():
    params = SmoothingParams(min_dwell_seconds=0.5, enter=0.5, exit=0.3, uncertain_label="no activity")
    sm = LabelSmoother(LABELS, params)
    flat = [("walk", 0.26)] * 8                          # nearly uniform probabilities
    labels, changes = run(sm, [("sit", .9)] * 4 + flat)
    assert labels[0] == "sit" and labels[-1] == "no activity"
    c = changes[-1][1]
    assert c.uncertain and c.previous == "sit"
    r = sm.update(onehot("walk", 0.26), 100)
    assert r.uncertain and r.label == "no activity"


def test_hysteresis_keeps_label_between_exit_and_enter():
    params = SmoothingParams(method="none", enter=0.6, exit=0.3, min_dwell_seconds=0)
    sm = LabelSmoother(LABELS, params)
    labels, _ = run(sm, [("run", .8), ("run", .45), ("run", .35), ("run", .2)])
    # 0.45 and 0.35 are below enter but above exit: still "run"; 0.2 drops it
    assert labels == ["run", "run", "run", "no activity"]


def test_disabled_reports_raw_top_label_every_window():
    sm = LabelSmoother(LABELS, SmoothingParams(enabled=False))
    labels, changes = run(sm, [("walk", .9), ("run", .9), ("walk", .9), ("walk", .9)])
    assert labels == ["walk", "run", "walk", "walk"] and len(changes) == 3


def test_mean_method_averages_last_windows():
    sm = LabelSmoother(LABELS, SmoothingParams(method="mean", window=3, min_dwell_seconds=0))
    for label in ["walk", "walk", "run"]:
        r = sm.update(onehot(label), 0)
    scores = dict(r.top_k)
    assert scores["walk"] == pytest.approx((0.9 * 2 + 0.1 / 3) / 3)
    assert r.label == "walk"


def test_allow_deny_renormalise_and_rename():
    params = SmoothingParams(allow=("walk", "run"), rename={"run": "running"}, min_dwell_seconds=0)
    sm = LabelSmoother(LABELS, params)
    r = sm.update(np.array([0.1, 0.3, 0.6, 0.0]), 0)   # "jump" is best but not allowed
    assert r.label == "running"
    assert dict(r.raw_top_k) == pytest.approx({"running": 0.75, "walk": 0.25, "jump": 0.0, "sit": 0.0})
    deny = LabelSmoother(LABELS, SmoothingParams(deny=("jump",), min_dwell_seconds=0))
    assert deny.update(np.array([0.1, 0.3, 0.6, 0.0]), 0).label == "run"


def test_reset_forgets_history():
    sm = LabelSmoother(LABELS, SmoothingParams(min_dwell_seconds=5))
    run(sm, [("walk", .9)] * 5)
    sm.reset()
    r = sm.update(onehot("jump"), 10)
    assert r.label == "jump" and r.change.previous is None


def test_unknown_labels_are_config_errors():
    with pytest.raises(ConfigError, match="smoothing.allow.*'dance'"):
        LabelSmoother(LABELS, SmoothingParams(allow=("dance",)))
    with pytest.raises(ConfigError, match="smoothing.rename"):
        LabelSmoother(LABELS, SmoothingParams(rename={"dance": "x"}))
    with pytest.raises(ConfigError, match="no label"):
        LabelSmoother(LABELS, SmoothingParams(deny=tuple(LABELS)))


def test_min_allowed_mass_turns_outside_activities_uncertain():
    params = SmoothingParams(allow=("walk", "run"), min_allowed_mass=0.5, min_dwell_seconds=0)
    sm = LabelSmoother(LABELS, params)
    # the model is sure it is "sit" (not allowed): walk/run share only 0.1
    r = sm.update(np.array([0.06, 0.04, 0.0, 0.9]), 0)
    assert r.uncertain and r.label == "no activity"
    assert dict(r.raw_top_k)["walk"] == pytest.approx(0.6 * 0.1 / 0.5)
    # without the option the same input would name an allowed label
    plain = LabelSmoother(LABELS, SmoothingParams(allow=("walk", "run"), min_dwell_seconds=0))
    assert plain.update(np.array([0.06, 0.04, 0.0, 0.9]), 0).label == "walk"
    # enough mass on the allowed labels: reported as usual
    assert sm.update(np.array([0.7, 0.1, 0.0, 0.2]), 1).label == "walk"


def test_top_indices_is_the_head_of_a_stable_descending_sort():
    """Ties (zeroed labels, equal scores) go to the lower position, as a full stable sort would."""
    rng = np.random.default_rng(0)
    for trial in range(2000):
        n = int(rng.integers(1, 40))
        values = (rng.random(n) if trial % 2 else rng.integers(0, 4, n)).astype(np.float32)
        k = int(rng.integers(0, n + 3))
        expected = np.argsort(-values, kind="stable")[:k]
        np.testing.assert_array_equal(top_indices(values, k), expected)


def test_the_score_belongs_to_the_reported_label():
    """While a confident new label waits out its dwell, the state is still "no activity": its score
    is what no label has (1 - the best smoothed score), never the waiting label's 0.77."""
    params = SmoothingParams(min_dwell_seconds=1.0, enter=0.4, exit=0.25, alpha=1.0,
                             uncertain_label="no activity")
    sm = LabelSmoother(LABELS, params)
    first = sm.update(onehot("walk", 0.2), 0.0)             # nothing confident: uncertain at once
    assert first.label == "no activity" and first.uncertain
    assert first.score == pytest.approx(1 - 0.2667, abs=1e-3)  # the best is 'walk'... or a tie
    assert first.change is not None and first.change.score == pytest.approx(first.score)
    waiting = sm.update(onehot("run", 0.77), 0.5)            # confident, but within the dwell
    assert waiting.label == "no activity" and waiting.score == pytest.approx(0.23)
    assert waiting.top_k[0] == ("run", pytest.approx(0.77))  # the candidate stays visible in top_k
    switched = sm.update(onehot("run", 0.77), 1.5)
    assert switched.label == "run" and switched.score == pytest.approx(0.77)
