"""Decision thresholds chosen on a validation split, against scikit-learn's ``roc_curve``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_curriculum.evaluation import (
    EvalResult,
    apply_threshold,
    choose_threshold,
    classification_metrics,
    roc_points,
)

sk = pytest.importorskip("sklearn.metrics")


def _sk_choice(s: np.ndarray, y: np.ndarray, rule: str, target: float | None) -> float:
    fpr, tpr, thr = sk.roc_curve(y, s, drop_intermediate=False)
    if rule == "youden":
        return float(thr[np.argmax(tpr - fpr)])
    if rule == "sensitivity":
        return float(thr[np.argmax(tpr >= target - 1e-12)])
    ok = np.nonzero(1 - fpr >= target - 1e-12)[0]
    return float(thr[ok[-1]])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 1)), min_size=2, max_size=40),
    st.sampled_from([("youden", None), ("sensitivity", 0.9), ("sensitivity", 0.5),
                     ("specificity", 0.8), ("specificity", 1.0)]),
)  # fmt: skip
def test_choice_matches_sklearn_roc_curve(
    items: list[tuple[int, int]], rule: tuple[str, float | None]
) -> None:
    y = np.array([b for _, b in items])
    if len(set(y.tolist())) < 2:
        return
    s = np.array([a for a, _ in items], dtype=np.float64) / 7.0  # ties included
    chosen = choose_threshold(s, y, rule=rule[0], target=rule[1])  # type: ignore[arg-type]
    assert chosen == _sk_choice(s, y, *rule)
    thr, tpr, fpr = roc_points(s, y)
    ref_fpr, ref_tpr, ref_thr = sk.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(tpr.numpy(), ref_tpr)
    np.testing.assert_allclose(fpr.numpy(), ref_fpr)
    np.testing.assert_array_equal(thr.numpy(), ref_thr)
    pred = apply_threshold(s, chosen).numpy()
    if rule[0] == "sensitivity":
        assert sk.recall_score(y, pred) >= rule[1] - 1e-12
    if rule[0] == "specificity":
        assert sk.recall_score(1 - y, 1 - pred) >= rule[1] - 1e-12


def test_threshold_from_validation_applied_to_test_metrics() -> None:
    rng = np.random.default_rng(0)
    y_val, y_test = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    # Imbalanced, miscalibrated probabilities: class 1 scores sit low.
    p_val = 1 / (1 + np.exp(-(y_val * 1.5 - 2.0 + rng.normal(size=300))))
    p_test = 1 / (1 + np.exp(-(y_test * 1.5 - 2.0 + rng.normal(size=300))))
    t = choose_threshold(p_val, y_val, rule="youden")
    assert t < 0.5
    scores = torch.from_numpy(np.stack([1 - p_test, p_test], 1))
    m = classification_metrics(scores, y_test, threshold=t)
    pred = (p_test >= t).astype(int)
    assert m["sensitivity"] == pytest.approx(sk.recall_score(y_test, pred))
    assert m["specificity"] == pytest.approx(sk.recall_score(1 - y_test, 1 - pred))
    assert m["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_test, pred))
    assert m["f1"] == pytest.approx(sk.f1_score(y_test, pred))
    default = classification_metrics(scores, y_test)
    assert default["auroc"] == m["auroc"]  # AUROC does not depend on the threshold
    assert m["balanced_accuracy"] > default["balanced_accuracy"]
    res = EvalResult("knn", scores.float(), torch.from_numpy(y_test), None, 1.0, 0, 10)
    assert res.metrics(threshold=t)["sensitivity"] == pytest.approx(m["sensitivity"])
    ci = res.confidence_interval("sensitivity", n_resamples=100, threshold=t)
    assert ci.estimate == pytest.approx(m["sensitivity"])


def test_threshold_errors_are_clear() -> None:
    s, y = [0.1, 0.4, 0.8], [0, 1, 1]
    with pytest.raises(ValueError, match="rule must be one of"):
        choose_threshold(s, y, rule="f1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a target"):
        choose_threshold(s, y, rule="sensitivity")
    with pytest.raises(ValueError, match="takes no target"):
        choose_threshold(s, y, target=0.9)
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold(s, [1, 1, 1])
    with pytest.raises(ValueError, match="threshold= is for two classes"):
        classification_metrics(torch.rand(4, 3), [0, 1, 2, 0], threshold=0.5)
