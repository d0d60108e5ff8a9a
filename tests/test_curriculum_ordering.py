"""rank_orders: AUROC over several seeds and the paired difference between orders, on the
bundled real Kermany sample with tiny budgets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cxr_curriculum.curriculum import Curriculum, OrderRanking, Stage, rank_orders
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.evaluation import auroc, knn_evaluate
from cxr_curriculum.methods import Rotation, SimCLR
from cxr_curriculum.stats import PairedComparison
from test_curriculum import TinyBackbone

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sample() -> tuple[KermanyPneumonia, KermanyPneumonia, list[Stage]]:
    train = KermanyPneumonia(bundled_sample_root(), split="train")
    val = KermanyPneumonia(bundled_sample_root(), split="test")
    stages = [
        Stage(Rotation(), train, steps=2, batch_size=8, image_size=32),
        Stage(SimCLR(), train, steps=2, batch_size=8, image_size=32),
    ]
    return train, val, stages


def _fresh() -> nn.Module:
    torch.manual_seed(0)
    return TinyBackbone()


def test_orders_are_scored_by_auroc_over_seeds_with_a_paired_interval(sample: tuple) -> None:
    train, val, stages = sample
    ranked = rank_orders(
        stages,
        _fresh,
        train=train,
        val=val,
        k=5,
        seeds=(0, 1),
        steps_per_stage=2,
        n_resamples=200,
    )
    assert isinstance(ranked, OrderRanking) and len(ranked) == 2
    assert sorted(r.order for r in ranked) == [(0, 1), (1, 0)]
    best, other = ranked
    assert best is ranked.best and best.score >= other.score
    for r in ranked:
        assert len(r.seed_scores) == 2 and r.score == pytest.approx(sum(r.seed_scores) / 2)
        assert all(0.0 <= s <= 1.0 for s in r.seed_scores)
    # One seed's score, reproduced by hand: the curriculum, then kNN AUROC on val.
    bb = _fresh()
    chosen = [stages[i].replace(steps=2) for i in other.order]
    Curriculum(chosen, seed=1, progress=False).fit(bb)
    by_hand = knn_evaluate(bb, train, val, k=5, image_size=32)
    assert other.seed_scores[1] == pytest.approx(auroc(by_hand.scores, by_hand.labels))
    # The paired comparison: best - other on the same patient resamples of val.
    cmp = ranked.comparisons[other.order]
    assert isinstance(cmp, PairedComparison) and cmp.metric == "auroc"
    assert cmp.difference == pytest.approx(best.score - other.score)
    assert cmp.low <= cmp.high and 0.0 < cmp.p_value <= 1.0
    assert cmp.n == len(val) and cmp.n_clusters == len(set(val.patient_ids))
    assert "CI" in ranked.summary() and " -> ".join(best.names) in ranked.summary()


def test_balanced_accuracy_and_custom_proxies(sample: tuple) -> None:
    train, val, stages = sample
    ranked = rank_orders(
        stages, _fresh, train=train, val=val, k=5, seeds=(0,), orders=[(1, 0)],
        metric="balanced_accuracy", steps_per_stage=1,
    )  # fmt: skip
    assert len(ranked) == 1 and ranked.comparisons == {} and ranked.metric == "balanced_accuracy"
    assert 0.0 <= ranked.best.score <= 1.0

    def score(bb: nn.Module) -> float:
        with torch.no_grad():
            return float(bb(torch.ones(2, 1, 32, 32)).std())

    custom = rank_orders(stages, _fresh, proxy=score, seeds=(0, 1), steps_per_stage=1)
    assert custom.comparisons == {}  # no per-image scores, no interval
    assert all(math.isfinite(r.score) and len(r.seed_scores) == 2 for r in custom)


def test_rank_orders_rejects_bad_settings(sample: tuple) -> None:
    train, val, stages = sample
    with pytest.raises(ValueError, match="seeds="):
        rank_orders(stages, _fresh, train=train, val=val, seed=3)
    with pytest.raises(ValueError, match="metric must be one of"):
        rank_orders(stages, _fresh, train=train, val=val, metric="f1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one seed"):
        rank_orders(stages, _fresh, train=train, val=val, seeds=())
    with pytest.raises(ValueError, match="needs labelled train and val"):
        rank_orders(stages, _fresh)
