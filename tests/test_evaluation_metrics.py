"""Metrics: parity with scikit-learn and hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_curriculum.evaluation import (
    accuracy,
    auroc,
    balanced_accuracy,
    classification_metrics,
    f1_score,
    sensitivity,
    specificity,
)

sk = pytest.importorskip("sklearn.metrics")


def _binary_case(seed: int, n: int = 50, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + y
    if ties:
        s = np.round(s, 0)
    return s, y


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_binary_auroc_matches_sklearn(seed: int, ties: bool) -> None:
    s, y = _binary_case(seed, ties=ties)
    assert auroc(torch.from_numpy(s), torch.from_numpy(y)) == pytest.approx(
        sk.roc_auc_score(y, s), abs=1e-12
    )
    two_col = np.stack([-s, s], axis=1)
    assert auroc(two_col, y) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("average", ["macro", "weighted"])
@pytest.mark.parametrize("seed", range(3))
def test_multiclass_ovr_auroc_matches_sklearn(average: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(4), rng.integers(0, 4, 56)])
    logits = rng.normal(size=(60, 4)) + np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ref = sk.roc_auc_score(y, probs, multi_class="ovr", average=average)
    assert auroc(torch.from_numpy(probs), y, average=average) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_threshold_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    y[:2] = [0, 1]
    assert accuracy(p, y) == pytest.approx(sk.accuracy_score(y, p))
    assert balanced_accuracy(p, y) == pytest.approx(sk.balanced_accuracy_score(y, p))
    assert f1_score(p, y) == pytest.approx(sk.f1_score(y, p))
    assert sensitivity(p, y) == pytest.approx(sk.recall_score(y, p))
    assert specificity(p, y) == pytest.approx(sk.recall_score(y, p, pos_label=0))
    y3, p3 = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
    y3[:3] = [0, 1, 2]
    assert f1_score(p3, y3, positive=None) == pytest.approx(sk.f1_score(y3, p3, average="macro"))
    assert balanced_accuracy(p3, y3) == pytest.approx(sk.balanced_accuracy_score(y3, p3))


def test_f1_zero_division_matches_sklearn() -> None:
    y, p = np.array([0, 0, 0]), np.array([0, 0, 0])
    assert f1_score(p, y) == sk.f1_score(y, p, zero_division=0) == 0.0


def test_classification_metrics_binary_and_undefined() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 0, 1])
    m = classification_metrics(probs, labels)
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(labels, probs[:, 1]))
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.5 and m["accuracy"] == 0.5
    one_class = classification_metrics(probs, torch.ones(4, dtype=torch.long))
    assert "auroc" not in one_class and "specificity" not in one_class
    assert one_class["accuracy"] == 0.5
    with pytest.raises(ValueError, match="differ in N"):
        classification_metrics(probs, labels[:3])


def test_metric_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="one class"):
        auroc(torch.rand(5), torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="must match"):
        auroc(torch.rand(5), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        auroc(torch.rand(5, 3), torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match="average"):
        auroc(torch.rand(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), average="micro")
    with pytest.raises(ValueError, match="integer"):
        accuracy(torch.tensor([0.5]), torch.tensor([0]))


_scores_labels = st.integers(4, 40).flatmap(
    lambda n: st.tuples(
        # Scores on a 0.1 grid: ties happen, and no two distinct scores merge under exp.
        st.lists(st.integers(-50, 50).map(lambda i: i / 10), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
    )
)


@settings(max_examples=60, deadline=None)
@given(_scores_labels)
def test_auroc_properties(data: tuple[list[float], list[int]]) -> None:
    s, y = torch.tensor(data[0], dtype=torch.float64), torch.tensor(data[1])
    a = auroc(s, y)
    assert 0.0 <= a <= 1.0
    # Invariant to strictly increasing transforms of the scores.
    assert auroc(torch.exp(s / 2) * 3 + 1, y) == pytest.approx(a, abs=1e-12)
    # Flipping the labels, or negating the scores, gives 1 - AUROC.
    assert auroc(s, 1 - y) == pytest.approx(1 - a, abs=1e-12)
    assert auroc(-s, y) == pytest.approx(1 - a, abs=1e-12)
    # Invariant to the order of the items.
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    assert auroc(s[perm], y[perm]) == pytest.approx(a, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=2, max_size=30).filter(lambda y: 0 < sum(y) < len(y)))
def test_auroc_perfect_constant_and_ranking(labels: list[int]) -> None:
    y = torch.tensor(labels)
    assert auroc(y.double(), y) == 1.0
    assert auroc(torch.zeros(len(y)), y) == 0.5
    preds = y.clone()
    assert accuracy(preds, y) == balanced_accuracy(preds, y) == 1.0
    assert sensitivity(preds, y) == specificity(preds, y) == f1_score(preds, y) == 1.0
    assert balanced_accuracy(1 - y, y) == 0.0
