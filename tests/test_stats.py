"""The statistics core: resampling, percentile intervals, the one p-value definition.

References: numpy's percentile (linear interpolation), a brute-force loop over the same
resamples, and the exact ("ideal") bootstrap distribution enumerated over every
possible resample of a tiny sample.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_curriculum import stats
from cxr_curriculum.evaluation import binary_auroc, paired_auroc_test
from cxr_curriculum.stats import (
    ConfidenceInterval,
    PairedComparison,
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_p_value,
    bootstrap_replicates,
    cluster_codes,
    paired_bootstrap,
    percentile_interval,
)


def test_evaluation_and_attention_share_one_class_per_concept() -> None:
    from cxr_curriculum import attention, evaluation

    assert evaluation.PairedComparison is attention.PairedComparison is PairedComparison
    assert evaluation.ConfidenceInterval is attention.ConfidenceInterval is ConfidenceInterval
    names = [f.name for f in dataclasses.fields(PairedComparison)]
    assert names[:7] == [
        "metric", "estimate_a", "estimate_b", "difference", "low", "high", "p_value",
    ]  # fmt: skip
    assert not hasattr(attention, "paired_bootstrap") and not hasattr(attention, "BootstrapCI")


def test_attention_and_evaluation_comparisons_return_the_same_class() -> None:
    from cxr_curriculum.attention import LungAttentionScorer

    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 32, 32, generator=g)
    masks = torch.zeros(6, 32, 32, dtype=torch.uint8)
    masks[:, 8:24, 4:28] = 1
    flat = torch.rand(6, 32, 32, generator=g)
    focused = flat.clone()
    focused[:, 8:24, 4:28] *= 1.0 + torch.rand(6, 1, 1, generator=g) * 3
    patients = ["a", "a", "b", "b", "c", "c"]
    scorer = LungAttentionScorer(n_boot=300)
    rep_a = scorer.score(None, images, masks=masks, saliency=focused, patient_ids=patients)
    rep_b = scorer.score(None, images, masks=masks, saliency=flat, patient_ids=patients)
    attn = scorer.compare(rep_a, rep_b, "lift")
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    auc = paired_auroc_test(rep_a.column("lift"), rep_b.column("lift"), y, n_resamples=300)
    assert type(attn) is type(auc) is PairedComparison
    assert attn.to_dict().keys() <= auc.to_dict().keys()  # auc adds delong_* only
    by_hand = stats.compare_means(
        rep_a.column("lift"), rep_b.column("lift"), patients, metric="lift", n_resamples=300
    )
    assert attn == by_hand and attn.n_clusters == 3 and attn.difference > 0
    assert type(rep_a.aggregate["lift"]) is ConfidenceInterval


def test_cluster_codes_first_seen_order_for_lists_and_tensors() -> None:
    assert cluster_codes(["b", "a", "b", "c"], 4).tolist() == [0, 1, 0, 2]
    assert cluster_codes(torch.tensor([7, 3, 7, 1]), 4).tolist() == [0, 1, 0, 2]
    assert cluster_codes(None, 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="one entry per item"):
        cluster_codes(["a"], 2)


def test_cluster_resamples_keep_whole_patients() -> None:
    groups = ["p0", "p0", "p1", "p2", "p2", "p2"]
    gen = torch.Generator().manual_seed(0)
    for idx in bootstrap_indices(6, 50, gen, groups):
        drawn = [groups[i] for i in idx.tolist()]
        times = {g: drawn.count(g) / groups.count(g) for g in set(drawn)}
        # Every drawn patient comes with all its images, a whole number of times, and
        # each resample draws as many patients as there are.
        assert all(t == int(t) for t in times.values()) and sum(times.values()) == 3


def test_percentile_interval_matches_numpy() -> None:
    v = torch.from_numpy(np.random.default_rng(0).normal(size=37))
    low, high = percentile_interval(v, 0.9)
    ref = np.percentile(v.numpy(), [5.0, 95.0])  # numpy's default: linear interpolation
    assert (low, high) == pytest.approx(tuple(ref), abs=1e-12)
    with_nan = torch.cat([v, torch.tensor([math.nan])])
    assert percentile_interval(with_nan, 0.9) == (low, high)


def _p_reference(d: list[float]) -> float:
    """The documented definition, written out with a loop."""
    below = sum(1 for x in d if x <= 0)
    above = sum(1 for x in d if x >= 0)
    return min(1.0, 2.0 * (1 + min(below, above)) / (len(d) + 1))


def test_paired_bootstrap_equals_a_brute_force_loop_over_the_same_resamples() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 24)
    y[:2] = [0, 1]
    a = y * 0.8 + rng.normal(size=24)
    b = y * 0.5 + rng.normal(size=24)
    groups = [f"p{i // 2}" for i in range(24)]
    cmp = paired_bootstrap(
        binary_auroc, a, b, y, groups=groups, metric="auroc", n_resamples=300, seed=5
    )
    gen = torch.Generator().manual_seed(5)
    diffs = []
    for idx in bootstrap_indices(24, 300, gen, groups):
        i = idx.numpy()
        if len(set(y[i])) < 2:
            continue
        diffs.append(binary_auroc(a[i], y[i]) - binary_auroc(b[i], y[i]))
    assert cmp.n_valid == len(diffs) and cmp.n_resamples == 300 and cmp.n_clusters == 12
    assert cmp.p_value == _p_reference(diffs)
    assert (cmp.low, cmp.high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
    assert cmp.difference == pytest.approx(binary_auroc(a, y) - binary_auroc(b, y))


def test_p_value_converges_to_the_exact_bootstrap_p_value() -> None:
    """Four patients: enumerate all 4**4 equally likely cluster resamples exactly."""
    values_a = [[0.93, 0.71], [0.22], [0.64, 0.51, 0.87], [0.13]]
    values_b = [[0.52, 0.57], [0.41], [0.41, 0.33, 0.62], [0.33]]
    diffs = []
    for draw in itertools.product(range(4), repeat=4):
        da = [x for g in draw for x in values_a[g]]
        db = [x for g in draw for x in values_b[g]]
        diffs.append(np.mean(da) - np.mean(db))
    d = np.array(diffs)
    assert np.abs(d).min() > 1e-3  # no resample sits at 0, where rounding would decide
    exact = min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
    a = torch.tensor([x for g in values_a for x in g], dtype=torch.float64)
    b = torch.tensor([x for g in values_b for x in g], dtype=torch.float64)
    groups = [i for i, g in enumerate(values_a) for _ in g]
    mc = stats.compare_means(a, b, groups, n_resamples=20000, seed=1)
    generic = paired_bootstrap(
        lambda x: float(x.mean()), a, b, groups=groups, n_resamples=20000, seed=1
    )
    assert 0.05 < exact < 0.5  # a case where the p-value is neither tiny nor 1
    assert mc.p_value == pytest.approx(exact, abs=0.015)
    assert generic.p_value == pytest.approx(mc.p_value, abs=1e-12)  # same resamples


def test_p_value_extremes() -> None:
    shift = torch.full((999,), 0.1, dtype=torch.float64)
    assert bootstrap_p_value(shift) == pytest.approx(2 / 1000)
    assert bootstrap_p_value(torch.zeros(50)) == 1.0
    assert math.isnan(bootstrap_p_value(torch.tensor([math.nan])))


def test_paired_auroc_test_returns_the_shared_class_with_delong() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    a, b = y + rng.normal(size=80), rng.normal(size=80)
    cmp = paired_auroc_test(a, b, y, n_resamples=200)
    assert type(cmp) is PairedComparison and cmp.metric == "auroc" and cmp.delong is not None
    assert cmp.estimate_a == pytest.approx(cmp.delong.auroc_a)
    assert cmp.difference == pytest.approx(cmp.estimate_a - cmp.estimate_b)
    assert "auroc:" in str(cmp) and "p = " in str(cmp)


def test_replicates_of_a_vector_statistic_and_undefined_resamples() -> None:
    x = torch.arange(10, dtype=torch.float64)

    def stat(v: torch.Tensor) -> torch.Tensor:
        if v.min() > 0:
            raise ValueError("undefined without a zero")
        return torch.stack([v.mean(), v.max()])

    reps = bootstrap_replicates(stat, x, n_resamples=200, seed=0)
    assert reps.estimate.tolist() == [4.5, 9.0] and reps.values.shape == (200, 2)
    undefined = torch.isnan(reps.values[:, 0])
    assert 0 < int(undefined.sum()) < 200  # resamples without item 0 are NaN rows
    assert torch.isnan(reps.values[undefined]).all()
    gen = torch.Generator().manual_seed(0)
    for row, idx in zip(reps.values, bootstrap_indices(10, 200, gen), strict=True):
        if not torch.isnan(row[0]):
            assert row.tolist() == [float(x[idx].mean()), float(x[idx].max())]
    with pytest.raises(ValueError, match="scalar statistic"):
        bootstrap_ci(lambda v: torch.stack([v.mean(), v.max()]), x)
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_replicates(lambda a, b: 0.0, x, x[:3])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=30),
    st.integers(0, 2**16),
)
def test_mean_interval_properties(values: list[float], seed: int) -> None:
    v = torch.tensor(values, dtype=torch.float64)
    ci = stats.mean_ci(v, n_resamples=200, seed=seed)
    # Every resample mean lies between the smallest and largest value.
    assert v.min() - 1e-9 <= ci.low <= ci.high <= v.max() + 1e-9
    assert ci.estimate == pytest.approx(float(v.mean()))
    # The fast cluster-sum path draws the same resamples as the generic engine.
    generic = bootstrap_ci(lambda x: float(x.mean()), v, n_resamples=200, seed=seed)
    assert (generic.low, generic.high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    # Shifting the data shifts the interval.
    moved = stats.mean_ci(v + 3.0, n_resamples=200, seed=seed)
    assert (moved.low, moved.high) == pytest.approx((ci.low + 3.0, ci.high + 3.0), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=15),
    st.integers(0, 2**16),
)
def test_interval_of_symmetric_data_contains_the_estimate(half: list[float], seed: int) -> None:
    # Data symmetric about m: the exact bootstrap distribution of the mean is symmetric
    # about m, so at least half of it is <= m and half >= m. 400 draws put fewer than
    # 2.5 % of them on one side with probability below 1e-70.
    m = 1.5
    v = torch.tensor(half + [2 * m - x for x in half], dtype=torch.float64)
    ci = stats.mean_ci(v, n_resamples=400, seed=seed)
    assert ci.low <= ci.estimate + 1e-9 and ci.estimate - 1e-9 <= ci.high
    assert ci.estimate == pytest.approx(m)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-5, 5, allow_nan=False), st.floats(-5, 5, allow_nan=False)),
        min_size=2,
        max_size=25,
    ),
    st.integers(0, 2**16),
)
def test_swapping_the_sides_negates_the_comparison(
    pairs: list[tuple[float, float]], seed: int
) -> None:
    a = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    b = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    ab = stats.compare_means(a, b, n_resamples=200, seed=seed)
    ba = stats.compare_means(b, a, n_resamples=200, seed=seed)
    assert ab.difference == pytest.approx(-ba.difference, abs=1e-9)
    assert (ab.low, ab.high) == pytest.approx((-ba.high, -ba.low), abs=1e-9)
    assert ab.p_value == ba.p_value
    assert 2 / 201 - 1e-12 <= ab.p_value <= 1.0
    assert ab.low <= ab.high
    same = stats.compare_means(a, a, n_resamples=50, seed=seed)
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_one_item_per_patient_is_the_item_bootstrap() -> None:
    x = torch.from_numpy(np.random.default_rng(2).normal(size=40))
    ids = [f"patient{i}" for i in range(40)]
    assert stats.mean_ci(x, ids, n_resamples=300) == stats.mean_ci(x, n_resamples=300)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_ci([1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        stats.compare_means([1.0], [2.0], n_resamples=0)
    with pytest.raises(ValueError, match="equal lengths"):
        stats.compare_means([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="min_valid"):
        ConfidenceInterval.from_replicates(0.0, torch.full((10,), math.nan))
