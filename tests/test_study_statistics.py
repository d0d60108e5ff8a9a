"""Statistics across runs: weighted AUROC, two-level bootstrap coverage, rank correlation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_curriculum.stats import (
    ConfidenceInterval,
    PairedComparison,
    bootstrap_p_value,
    delong_test,
    percentile_interval,
)
from cxr_curriculum.study import compare_arms, rank_correlation, spearman, two_level_interval
from cxr_curriculum.study.resample import (
    patient_weights,
    two_level_replicates,
    weighted_binary_auroc,
    weighted_mean,
    widen_replicates,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
scipy_stats = pytest.importorskip("scipy.stats")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 1), st.integers(0, 3)),
        min_size=4,
        max_size=40,
    )
)
def test_weighted_auroc_matches_sklearn_sample_weight(rows: list[tuple[int, int, int]]) -> None:
    scores = torch.tensor([r[0] for r in rows], dtype=torch.float64) / 5  # many ties
    labels = torch.tensor([r[1] for r in rows])
    weights = torch.tensor([[float(r[2]) for r in rows]])
    ours = float(weighted_binary_auroc(scores, labels, weights)[0])
    pos, neg = float(weights[0, labels == 1].sum()), float(weights[0, labels == 0].sum())
    if pos == 0 or neg == 0:
        assert math.isnan(ours)
        return
    keep = weights[0] > 0
    ref = sklearn_metrics.roc_auc_score(
        labels[keep].numpy(), scores[keep].numpy(), sample_weight=weights[0, keep].numpy()
    )
    assert ours == pytest.approx(ref, abs=1e-12)


def test_patient_weights_keep_patients_together() -> None:
    codes = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    w = patient_weights(codes, 500, torch.Generator().manual_seed(0))
    assert w.shape == (500, 7)
    assert torch.equal(w[:, 0], w[:, 1]) and torch.equal(w[:, 3], w[:, 5])
    # four patients drawn per replicate: the patient counts sum to 4
    assert torch.equal(w[:, [0, 2, 3, 6]].sum(1), torch.full((500,), 4.0, dtype=torch.float64))
    means = weighted_mean(torch.tensor([1.0, 1, 1, 1, 1, 1, float("nan")]), w)
    only_nan = w[:, :6].sum(1) == 0  # replicates that drew only the NaN image's patient
    assert means[~only_nan].eq(1).all() and means[only_nan].isnan().all()


def test_two_level_interval_of_fixed_statistic_is_a_point() -> None:
    iv = two_level_interval(lambda j, w: torch.full((w.shape[0],), 0.25), 4, None, 10)
    assert isinstance(iv, ConfidenceInterval)
    assert (iv.estimate, iv.low, iv.high) == (0.25, 0.25, 0.25)
    assert (iv.n, iv.n_clusters, iv.n_seeds, iv.n_valid) == (10, 10, 4, 2000)
    one = two_level_interval(lambda j, w: torch.full((w.shape[0],), 0.25), 1, None, 10)
    assert one.estimate == 0.25 and math.isnan(one.low) and math.isnan(one.high)


def test_two_level_interval_is_the_widened_percentile_interval() -> None:
    g = torch.Generator().manual_seed(7)
    values = torch.rand(4, 30, generator=g, dtype=torch.float64)
    groups = [i // 3 for i in range(30)]

    def per_seed(j: int, w: torch.Tensor) -> torch.Tensor:
        return weighted_mean(values[j], w)

    iv = two_level_interval(per_seed, 4, groups, 30, n_resamples=500, seed=3)
    reps = two_level_replicates(per_seed, 4, groups, 30, n_resamples=500, seed=3)
    est = float(reps.estimate[0])
    assert est == pytest.approx(float(values.mean()))
    p_low, p_high = percentile_interval(reps.values[:, 0])
    widen = math.sqrt(4 / 3)
    assert iv.low == pytest.approx(est - widen * (est - p_low), abs=1e-12)
    assert iv.high == pytest.approx(est + widen * (p_high - est), abs=1e-12)
    assert (iv.n, iv.n_clusters, iv.n_seeds) == (30, 10, 4)


def test_compare_arms_agrees_with_per_seed_delong() -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(60) % 2
    a = labels.double() + torch.randn(3, 60, generator=g, dtype=torch.float64)
    b = labels.double() + 2 * torch.randn(3, 60, generator=g, dtype=torch.float64)
    cmp = compare_arms(a, b, labels, seeds=[4, 5, 6], names=("good", "noisy"), n_resamples=300)
    for j, row in enumerate(cmp.per_seed):
        ref = delong_test(a[j], b[j], labels)
        assert row.seed == 4 + j
        assert row.difference == pytest.approx(ref.difference)
        assert row.delong == ref
    d = cmp.difference
    assert isinstance(d, PairedComparison) and d.metric == "auroc"
    assert d.estimate_a == pytest.approx(sum(r.estimate_a for r in cmp.per_seed) / 3)
    assert d.estimate_b == pytest.approx(sum(r.estimate_b for r in cmp.per_seed) / 3)
    assert d.difference == pytest.approx(sum(r.difference for r in cmp.per_seed) / 3)
    assert cmp.share_a_wins == sum(r.difference > 0 for r in cmp.per_seed) / 3
    assert d.low < d.difference < d.high
    assert (d.n, d.n_clusters, d.n_seeds, d.n_resamples) == (60, 60, 3, 300)
    # the p-value is the package's one definition, on the widened two-level replicates
    reps = two_level_replicates(
        lambda j, w: (
            weighted_binary_auroc(a[j], labels, w) - weighted_binary_auroc(b[j], labels, w)
        ),
        3,
        None,
        60,
        n_resamples=300,
    )
    widened = widen_replicates(reps, 3, (-1.0, 1.0))
    assert d.p_value == pytest.approx(bootstrap_p_value(widened))
    assert (d.low, d.high) == pytest.approx(percentile_interval(widened))
    assert cmp.to_dict()["per_seed"][0]["delong_p_value"] == pytest.approx(
        cmp.per_seed[0].delong.p_value  # type: ignore[union-attr]
    )
    with pytest.raises(ValueError, match=r"\(S, N\)"):
        compare_arms(a, b[:, :10], labels)


def _simulated_coverage(n_studies: int, n_seeds: int) -> tuple[float, float]:
    """Coverage of 0 when two arms differ only by training seed.

    Each simulated study draws a new test set (patients with one or two images) and,
    per arm and seed, a model whose scores are the truth plus noise of a seed-specific
    size, so the AUROC moves with the seed and both arms have the same expectation.
    Returns the coverage of the study interval and of a single-seed patient bootstrap.
    """
    g = torch.Generator().manual_seed(2026)
    covered = single = 0
    for r in range(n_studies):
        images = torch.randint(1, 3, (100,), generator=g)
        codes = torch.repeat_interleave(torch.arange(100), images)
        sick = (torch.rand(100, generator=g) < 0.5).long()
        sick[:2] = torch.tensor([0, 1])
        truth = sick.double() + torch.randn(100, generator=g, dtype=torch.float64)
        labels, truth = sick[codes], truth[codes]

        def model(truth: torch.Tensor = truth) -> torch.Tensor:
            noise = math.exp(0.6 * float(torch.randn(1, generator=g)))
            return truth + noise * torch.randn(truth.numel(), generator=g, dtype=torch.float64)

        a = torch.stack([model() for _ in range(n_seeds)])
        b = torch.stack([model() for _ in range(n_seeds)])

        def diff(
            j: int,
            w: torch.Tensor,
            a: torch.Tensor = a,
            b: torch.Tensor = b,
            y: torch.Tensor = labels,
        ) -> torch.Tensor:
            return weighted_binary_auroc(a[j], y, w) - weighted_binary_auroc(b[j], y, w)

        iv = two_level_interval(diff, n_seeds, codes, labels.numel(), n_resamples=400, seed=r)
        covered += iv.low <= 0.0 <= iv.high
        one = two_level_replicates(diff, 1, codes, labels.numel(), n_resamples=400, seed=r)
        low, high = percentile_interval(one.values[:, 0])  # one seed: a patient bootstrap
        single += low <= 0.0 <= high
    return covered / n_studies, single / n_studies


def test_two_level_interval_covers_zero_at_the_stated_rate() -> None:
    coverage, single_run = _simulated_coverage(n_studies=200, n_seeds=5)
    # 95 % +- 3 binomial standard errors of 200 studies (0.015)
    assert 0.905 <= coverage <= 0.995, coverage
    # the single-run patient bootstrap ignores the seed: it covers clearly less
    assert single_run < coverage - 0.05, (single_run, coverage)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), min_size=3, max_size=25))
def test_spearman_matches_scipy(pairs: list[tuple[int, int]]) -> None:
    x = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    y = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    ours = spearman(x, y)
    if len(set(x.tolist())) < 2 or len(set(y.tolist())) < 2:
        assert math.isnan(ours)
        return
    ref = scipy_stats.spearmanr(x.numpy(), y.numpy()).statistic
    assert ours == pytest.approx(ref, abs=1e-12)


def test_rank_correlation_interval() -> None:
    x = torch.arange(12, dtype=torch.float64)
    clusters = [f"arm{i % 4}" for i in range(12)]
    r = rank_correlation(x, 2 * x + 1, clusters, n_resamples=200)
    assert r.rho == pytest.approx(1.0) and r.low == pytest.approx(1.0)
    assert (r.n_models, r.n_clusters) == (12, 4)
    noise = torch.randn(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = rank_correlation(x, noise, clusters, n_resamples=200)
    assert r.low < r.rho < r.high


def test_weighted_macro_auroc_matches_multilabel_auroc_and_skips_unknown() -> None:
    from cxr_curriculum.evaluation import multilabel_auroc
    from cxr_curriculum.study import weighted_macro_auroc

    g = torch.Generator().manual_seed(3)
    targets = (torch.rand(80, 4, generator=g) < 0.4).float()
    targets[torch.rand(80, 4, generator=g) < 0.2] = float("nan")  # unknown labels
    scores = torch.nan_to_num(targets, nan=0.5) + torch.randn(80, 4, generator=g)
    ours = float(weighted_macro_auroc(scores, targets, torch.ones(1, 80))[0])
    assert ours == pytest.approx(multilabel_auroc(scores, targets).macro, abs=1e-12)
    per_finding = []
    for c in range(4):
        known = ~targets[:, c].isnan()
        per_finding.append(
            sklearn_metrics.roc_auc_score(targets[known, c].numpy(), scores[known, c].numpy())
        )
    assert ours == pytest.approx(sum(per_finding) / 4, abs=1e-12)


@pytest.mark.realdata
def test_nih_findings_task_on_the_shared_subset(data_root: object) -> None:
    from cxr_curriculum.evaluation import multilabel_auroc
    from cxr_curriculum.study import NIHFindingsTask

    task = NIHFindingsTask(min_positives=5)
    train, test = task.datasets
    assert len(train) + len(test) == 1000  # the shared subset: 1000 images with labels
    train_patients = set(task.datasets[0].dataset.patient_ids[i] for i in train.indices)
    assert not train_patients & set(task.test_groups)  # patient-level split
    targets = task.test_targets
    g = torch.Generator().manual_seed(0)
    scores = torch.nan_to_num(targets, nan=0.0) + 2 * torch.rand(targets.shape, generator=g)
    ref = multilabel_auroc(scores, targets, min_positives=5, min_negatives=5)
    assert task.metric_value(scores.flatten()) == pytest.approx(ref.macro, abs=1e-12)
    assert len(task.findings) == len(ref.per_finding) >= 3
