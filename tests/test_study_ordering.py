"""rank_orders, a small study: orders and a scratch baseline scored over several seeds, with
the study's intervals over seeds and validation patients, on the bundled real Kermany
sample with tiny budgets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from cxr_curriculum.curriculum import Curriculum, Stage
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.evaluation import auroc, knn_evaluate, metric_functions
from cxr_curriculum.methods import Rotation, SimCLR
from cxr_curriculum.stats import PairedComparison, holm
from cxr_curriculum.study import OrderRanking, rank_orders
from cxr_curriculum.study.proxies import proxy_metric
from test_curriculum import NoiseImages, TinyBackbone, TinyRotation

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


def test_orders_and_scratch_are_compared_over_seeds_and_patients(sample: tuple) -> None:
    train, val, stages = sample
    ranked = rank_orders(
        stages, TinyBackbone, train=train, val=val, k=5, seeds=(0, 1, 2), steps_per_stage=2,
        n_resamples=200,
    )  # fmt: skip
    assert isinstance(ranked, OrderRanking) and len(ranked) == 2
    assert sorted(r.order for r in ranked) == [(0, 1), (1, 0)]
    best, other = ranked
    assert best is ranked.best and best.score >= other.score
    scratch = ranked.scratch
    assert scratch is not None and scratch.order == () and scratch.names == ("scratch",)
    for r in (*ranked, scratch):
        assert len(r.seed_scores) == 3 and r.score == pytest.approx(sum(r.seed_scores) / 3)
        assert all(0.0 <= s <= 1.0 for s in r.seed_scores)
    # One seed of scratch and of an order, by hand: the seed's random start (no training,
    # or the short curriculum), then the kNN AUROC on val.
    torch.manual_seed(2)
    by_hand = knn_evaluate(TinyBackbone(), train, val, k=5, image_size=32)
    assert scratch.seed_scores[2] == pytest.approx(auroc(by_hand.scores, by_hand.labels))
    torch.manual_seed(1)
    bb = TinyBackbone()
    Curriculum([stages[i].replace(steps=2) for i in other.order], seed=1, progress=False).fit(bb)
    by_hand = knn_evaluate(bb, train, val, k=5, image_size=32)
    assert other.seed_scores[1] == pytest.approx(auroc(by_hand.scores, by_hand.labels))
    # Each order - scratch and best - other: the study's comparison over seeds and patients.
    n_patients = len(set(val.patient_ids))
    for r in ranked:
        vs = ranked.versus_scratch[r.order]
        assert isinstance(vs, PairedComparison) and vs.metric == "auroc" and vs.n_seeds == 3
        assert vs.difference == pytest.approx(r.score - scratch.score)
        assert vs.low <= vs.difference <= vs.high and 0.0 <= vs.p_value <= 1.0
        assert (vs.n, vs.n_clusters, vs.n_resamples) == (len(val), n_patients, 200)
    raw = [ranked.versus_scratch[r.order].p_value for r in ranked]
    assert [ranked.p_holm_vs_scratch[r.order] for r in ranked] == pytest.approx(holm(raw))
    cmp = ranked.comparisons[other.order]
    assert cmp.difference == pytest.approx(best.score - other.score) and cmp.n_seeds == 3
    assert set(ranked.beats_scratch) <= {r.order for r in ranked}
    for order in ranked.beats_scratch:
        assert ranked.versus_scratch[order].difference > 0
        assert ranked.p_holm_vs_scratch[order] < 0.05
    text = ranked.summary()
    assert "scratch (no pretraining)" in text and "beats scratch" in text and "Holm p" in text


def test_an_order_that_beats_scratch_is_reported(sample: tuple) -> None:
    """A proxy that measures how far training moved the weights: scratch scores 0."""
    stages = sample[2]

    def start() -> nn.Module:
        torch.manual_seed(0)  # the same start for every seed
        return TinyBackbone()

    reference = [p.detach().clone() for p in start().parameters()]

    def moved(bb: nn.Module) -> float:
        pairs = zip(bb.parameters(), reference, strict=True)
        return float(sum((p.detach() - q).abs().sum() for p, q in pairs))

    ranked = rank_orders(stages, start, proxy=moved, seeds=(0, 1, 2), steps_per_stage=1)
    assert ranked.scratch is not None and ranked.scratch.seed_scores == (0.0, 0.0, 0.0)
    assert set(ranked.beats_scratch) == {(0, 1), (1, 0)}
    for r in ranked:
        vs = ranked.versus_scratch[r.order]
        # a custom proxy gives one number per seed: the interval covers the seeds only
        assert vs.test_variance is not None and vs.test_variance < 1e-20
        assert vs.low > 0 and vs.p_value < 0.05
        # a t interval over the three seeds' differences (scratch is 0)
        d = torch.tensor(r.seed_scores, dtype=torch.float64)
        mean, half = float(d.mean()), 4.302652729749464 * float(d.std()) / math.sqrt(3)
        assert (vs.low, vs.high) == pytest.approx((mean - half, mean + half), rel=1e-6)
    same = rank_orders(stages, start, proxy=lambda bb: 0.5, seeds=(0, 1), steps_per_stage=1)
    assert same.beats_scratch == () and "none" in same.summary()


def test_one_seed_gives_scores_but_no_interval(sample: tuple) -> None:
    train, val, stages = sample
    ranked = rank_orders(
        stages, TinyBackbone, train=train, val=val, k=5, seeds=(0,), orders=[(1, 0)],
        metric="balanced_accuracy", steps_per_stage=1,
    )  # fmt: skip
    assert len(ranked) == 1 and ranked.comparisons == {} and ranked.metric == "balanced_accuracy"
    assert 0.0 <= ranked.best.score <= 1.0
    vs = ranked.versus_scratch[(1, 0)]
    assert math.isnan(vs.low) and math.isnan(vs.p_value) and ranked.beats_scratch == ()


def test_proxy_metrics_equal_the_evaluation_metrics_and_resample_by_weight() -> None:
    g = torch.Generator().manual_seed(0)
    for n_classes in (2, 3):
        labels = torch.arange(30) % n_classes
        scores = torch.rand(30, n_classes, generator=g)
        ones = torch.ones(1, 30, dtype=torch.float64)
        table = metric_functions(n_classes)
        twice = torch.ones(1, 30, dtype=torch.float64)
        twice[0, :7] = 2.0  # the first 7 images twice: the metric of the repeated set
        repeated = torch.cat([torch.arange(30), torch.arange(7)])
        for name in ("auroc", "balanced_accuracy", "accuracy"):
            fn = proxy_metric(name, labels)
            assert float(fn(scores, ones)[0]) == pytest.approx(table[name](scores, labels))
            assert float(fn(scores, twice)[0]) == pytest.approx(
                table[name](scores[repeated], labels[repeated])
            )
    with pytest.raises(ValueError, match="metric must be one of"):
        proxy_metric("f1", labels)


def test_rank_orders_rejects_bad_settings(sample: tuple) -> None:
    train, val, stages = sample
    with pytest.raises(ValueError, match="seeds="):
        rank_orders(stages, TinyBackbone, train=train, val=val, seed=3)
    with pytest.raises(ValueError, match="metric must be one of"):
        rank_orders(stages, TinyBackbone, train=train, val=val, metric="f1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one seed"):
        rank_orders(stages, TinyBackbone, train=train, val=val, seeds=())
    with pytest.raises(ValueError, match="needs labelled train and val"):
        rank_orders(stages, TinyBackbone)
    with pytest.raises(ValueError, match="distinct stage indices"):
        rank_orders(stages, TinyBackbone, train=train, val=val, orders=[(0, 0)])
    with pytest.raises(ValueError, match=r"orders lists \(1, 0\) more than once"):
        rank_orders(stages, TinyBackbone, train=train, val=val, orders=[(1, 0), (0, 1), [1, 0]])


def test_rank_orders_ranks_by_proxy_and_is_reproducible() -> None:
    data = NoiseImages(16)
    stages = [
        Stage(TinyRotation(), data, epochs=1, batch_size=8, image_size=32, name="a"),
        Stage(TinyRotation(24), data, epochs=1, batch_size=8, image_size=32, name="b"),
    ]
    probe = torch.stack([data[i][0] for i in range(8)])
    probe = nn.functional.interpolate(probe, size=32)

    def score(bb: nn.Module) -> float:  # a deterministic function of the trained weights
        with torch.no_grad():
            return float(bb(probe).std())

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return TinyBackbone()

    ranked = rank_orders(stages, fresh, proxy=score, steps_per_stage=3, seeds=(4,))
    assert sorted(r.order for r in ranked) == [(0, 1), (1, 0)]
    assert ranked[0].score >= ranked[1].score
    assert {r.names for r in ranked} == {("a", "b"), ("b", "a")}
    bb = fresh()  # the score of the order (1, 0) run by hand
    Curriculum([stages[1].replace(steps=3), stages[0].replace(steps=3)], seed=4).fit(bb)
    by_order = {r.order: r.score for r in ranked}
    assert by_order[(1, 0)] == pytest.approx(score(bb), rel=1e-6)
    with pytest.raises(ValueError, match="distinct stage indices"):
        rank_orders(stages, fresh, proxy=score, orders=[(0, 0)])


@pytest.mark.realdata
def test_rank_orders_knn_proxy_on_real_xrays(data_root: Path) -> None:
    from cxr_curriculum.data import KermanyPneumonia

    test = KermanyPneumonia(data_root / "kermany-pneumonia", split="test")
    labels = torch.tensor(test.labels)
    pick = [int(i) for c in (0, 1) for i in torch.nonzero(labels == c).flatten()[:8]]
    train, val = Subset(test, pick[0::2]), Subset(test, pick[1::2])
    stages = [
        Stage(TinyRotation(), train, steps=2, batch_size=4, image_size=32, name="a"),
        Stage(TinyRotation(24), train, steps=2, batch_size=4, image_size=32, name="b"),
    ]
    ranked = rank_orders(stages, TinyBackbone, train=train, val=val, k=3, image_size=32, seeds=(0,))
    assert len(ranked) == 2 and all(0.0 <= r.score <= 1.0 for r in ranked)
    assert all(math.isfinite(r.seconds) for r in ranked)


@pytest.mark.realdata
def test_rank_orders_on_the_covid_collection_with_patient_ids(data_root: Path) -> None:
    """How the covid study picks its order: seeds, a short budget, a labelled validation
    split with patient ids; the answer says whether any order beats scratch."""
    from cxr_curriculum.data import COVID_VS_OTHER, CovidChestXray, patient_split

    films = CovidChestXray(data_root / "covid-chestxray", label_map=COVID_VS_OTHER)
    train, val = patient_split(films, (0.8, 0.2), seed=0)
    train = Subset(train, list(range(0, len(train), 8)))  # about 40 films, both classes
    val = Subset(val, list(range(0, len(val), 3)))
    stages = [
        Stage(TinyRotation(), train, steps=1, batch_size=4, image_size=32, name="rotation"),
        Stage(TinyRotation(24), train, steps=1, batch_size=4, image_size=32, name="rotation24"),
    ]
    ranked = rank_orders(
        stages, TinyBackbone, train=train, val=val, k=5, seeds=(0, 1, 2), steps_per_stage=1,
        n_resamples=200,
    )  # fmt: skip
    patients = {films.patient_ids[val.dataset.indices[i]] for i in val.indices}
    assert ranked.scratch is not None and len(ranked.versus_scratch) == 2
    for cmp in ranked.versus_scratch.values():
        assert cmp.n_seeds == 3 and cmp.n == len(val) and cmp.n_clusters == len(patients)
        assert cmp.low <= cmp.difference <= cmp.high
    assert isinstance(ranked.beats_scratch, tuple)
    assert "beats scratch (Holm-adjusted p < 0.05): " in ranked.summary()
