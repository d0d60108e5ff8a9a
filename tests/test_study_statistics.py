"""Statistics across runs: weighted AUROC, the seed-level interval and its coverage by
simulation (against the old two-level percentile interval), rank correlation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_curriculum.stats import (
    ConfidenceInterval,
    PairedComparison,
    cluster_codes,
    delong_test,
    resample_clusters,
    seed_comparison,
    seed_interval,
)
from cxr_curriculum.study import compare_arms, rank_correlation, spearman, two_level_interval
from cxr_curriculum.study.resample import (
    patient_weights,
    seed_replicates,
    weighted_binary_auroc,
    weighted_mean,
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


def test_two_level_interval_uses_one_patient_resample_for_every_seed() -> None:
    g = torch.Generator().manual_seed(7)
    values = torch.rand(4, 30, generator=g, dtype=torch.float64)
    groups = [i // 3 for i in range(30)]

    def per_seed(j: int, w: torch.Tensor) -> torch.Tensor:
        return weighted_mean(values[j], w)

    iv = two_level_interval(per_seed, 4, groups, 30, n_resamples=500, seed=3)
    reps = seed_replicates(per_seed, 4, groups, 30, n_resamples=500, seed=3)
    # the resamples, by hand: one set of patient weights, applied to every seed
    w = patient_weights(cluster_codes(groups, 30), 500, torch.Generator().manual_seed(3))
    by_hand = torch.stack([(w * values[j]).sum(1) / w.sum(1) for j in range(4)], 1)
    assert torch.allclose(reps.values, by_hand) and reps.values.shape == (500, 4)
    assert torch.allclose(reps.estimate, values.mean(1))
    assert iv == seed_interval(reps.estimate, reps.values, n=30, n_clusters=10)
    assert iv.estimate == pytest.approx(float(values.mean()))
    assert iv.low < iv.estimate < iv.high
    assert (iv.n, iv.n_clusters, iv.n_seeds, iv.n_resamples) == (30, 10, 4, 500)


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
    # interval and p-value: the seed-level comparison of the same shared resamples
    reps = seed_replicates(
        lambda j, w: (
            weighted_binary_auroc(a[j], labels, w) - weighted_binary_auroc(b[j], labels, w)
        ),
        3,
        None,
        60,
        n_resamples=300,
    )
    ref = seed_comparison(
        "auroc",
        torch.tensor([r.estimate_a for r in cmp.per_seed]),
        torch.tensor([r.estimate_b for r in cmp.per_seed]),
        reps.values,
        bounds=(-1.0, 1.0),
        n=60,
        n_clusters=60,
    )
    assert (d.low, d.high, d.p_value) == pytest.approx((ref.low, ref.high, ref.p_value))
    assert (d.low > 0 or d.high < 0) == (d.p_value < 0.05)
    assert cmp.to_dict()["per_seed"][0]["delong_p_value"] == pytest.approx(
        cmp.per_seed[0].delong.p_value  # type: ignore[union-attr]
    )
    assert {"seed_variance", "test_variance"} <= set(cmp.to_dict()["difference"])
    with pytest.raises(ValueError, match=r"\(S, N\)"):
        compare_arms(a, b[:, :10], labels)


# ----------------------------------------------------------------- coverage by simulation
#: name -> (sd of a seed's effect, sd of a model's per-image noise, sd of an arm's
#: per-patient effect, test patients): how the difference between two arms varies.
REGIMES = {
    "seed-dominated": (1.0, 1.0, 0.5, 200),
    "image-dominated": (0.0, 1.0, 0.5, 50),
    "mixed": (0.15, 1.0, 0.5, 100),
}


def _old_interval(full: torch.Tensor, reps: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The interval this package reported before: a two-level percentile bootstrap.

    Each replicate draws ``S`` seeds with replacement and uses one patient resample for
    every drawn seed (``reps``, ``(B, R, S)`` per-seed values on shared resamples); the
    replicates of the mean are moved away from the estimate by ``sqrt(S / (S - 1))``
    and the 2.5 % and 97.5 % percentiles taken. ``full``: ``(B, S)``. Returns ``(2, B)``.
    """
    n_studies, n_resamples, n_seeds = reps.shape
    draws = resample_clusters(n_seeds, n_studies * n_resamples, g).view(reps.shape)
    counts = torch.zeros_like(reps).scatter_add_(2, draws, torch.ones_like(reps))
    estimate = full.mean(1, keepdim=True)
    means = (counts * reps).sum(2) / n_seeds
    widened = estimate + math.sqrt(n_seeds / (n_seeds - 1)) * (means - estimate)
    return torch.quantile(widened, torch.tensor([0.025, 0.975], dtype=torch.float64), dim=1)


def _coverage(regime: str, n_seeds: int, n_studies: int = 1000) -> tuple[float, float]:
    """Share of simulated null studies whose 95 % interval of ``a - b`` covers 0.

    Model (vectorised over studies, a per-image mean metric such as a loss): a fixed
    test set of ``P`` patients with 1-3 images each; arm ``A``, seed ``j``, image ``i``
    of patient ``p``: ``x = c_p + c_i + e_Ap + e_Aj + e_Aji`` with shared patient and
    image effects ``c`` (they cancel in ``a - b``), an arm-by-patient effect ``e_Ap``
    (shared by the arm's seeds: the test-set component of the difference), a seed effect
    ``e_Aj`` and a model's own per-image noise ``e_Aji``, all normal and independent.
    Both arms have the same distribution (they differ only by seed), so the true
    difference is 0. Per study: ``S`` seeds per arm, 100 shared patient resamples.
    Returns ``(new, old)`` coverage.
    """
    sd_seed, sd_noise, sd_arm, n_patients = REGIMES[regime]
    g = torch.Generator().manual_seed(2026 + n_seeds)
    images = torch.randint(1, 4, (n_patients,), generator=g)
    codes = torch.repeat_interleave(torch.arange(n_patients), images)
    shape, f64 = (250, n_seeds, codes.numel()), torch.float64

    def arm() -> torch.Tensor:
        patient = sd_arm * torch.randn(250, 1, n_patients, generator=g, dtype=f64)
        seed = sd_seed * torch.randn(250, n_seeds, 1, generator=g, dtype=f64)
        noise = sd_noise * torch.randn(shape, generator=g, dtype=f64)
        return patient[..., codes] + seed + noise

    new = old = 0.0
    for _ in range(n_studies // 250):
        d = arm() - arm()  # (studies, seeds, images)
        w = torch.stack([patient_weights(codes, 100, g) for _ in range(250)])  # (studies, R, N)
        reps = torch.einsum("bsn,brn->brs", d, w) / w.sum(2, keepdim=True)
        full = d.mean(2)
        for k in range(250):
            iv = seed_interval(full[k], reps[k])
            new += iv.low <= 0.0 <= iv.high
        low, high = _old_interval(full, reps, g)
        old += float(((low <= 0) & (high >= 0)).sum())
    return new / n_studies, old / n_studies


@pytest.mark.slow
@pytest.mark.parametrize("regime", list(REGIMES))
def test_seed_level_interval_covers_at_the_stated_rate(regime: str) -> None:
    """1,000 null studies per cell: 95 % +- 2.5 points (about 3.6 binomial standard errors).

    Measured (new / old): seed-dominated 94.4 / 76.7 % (3 seeds), 95.1 / 86.1 % (5),
    94.6 / 88.7 % (10); image-dominated 96.2 / 99.1, 96.2 / 98.9, 93.4 / 95.7 %; mixed
    96.5 / 94.5, 95.3 / 94.7, 94.5 / 94.2 %. The old two-level percentile interval fails
    the band where seeds dominate (too narrow) and where images do (too wide: it counts
    the per-model test noise twice).
    """
    for n_seeds in (3, 5, 10):
        new, old = _coverage(regime, n_seeds)
        assert 0.925 <= new <= 0.975, (regime, n_seeds, new)
        if regime == "seed-dominated":
            assert old < 0.9, (n_seeds, old)
        if regime == "image-dominated" and n_seeds < 10:
            assert old > 0.975, (n_seeds, old)


def _auroc_null_study(g: torch.Generator, n_seeds: int) -> tuple[torch.Tensor, ...]:
    """Scores of two arms that differ only by seed, AUROC metric, seeds dominating.

    A fixed test set of 150 patients (1-3 images, label per patient, 40 % positive);
    image score ``delta_j y + u_p + v_i + e_ji``: patient and image effects ``u``, ``v``
    (sd 1 and 0.5) shared by every model, a model's own per-image noise ``e`` (sd 1) and
    a separation ``delta_j = 1.5 + z_j`` (``z_j`` standard normal) that changes with the
    seed, so the AUROC does (sd about 0.1 between seeds, 0.03 within one test set).
    """
    images = torch.randint(1, 4, (150,), generator=g)
    codes = torch.repeat_interleave(torch.arange(150), images)
    sick = (torch.rand(150, generator=g) < 0.4).long()
    sick[:2] = torch.tensor([0, 1])
    shared = torch.randn(150, generator=g, dtype=torch.float64)[codes]
    shared = shared + 0.5 * torch.randn(codes.numel(), generator=g, dtype=torch.float64)
    labels = sick[codes]

    def arm() -> torch.Tensor:
        delta = 1.5 + torch.randn(n_seeds, 1, generator=g, dtype=torch.float64)
        noise = torch.randn(n_seeds, codes.numel(), generator=g, dtype=torch.float64)
        return delta * labels + shared + noise

    return arm(), arm(), labels, codes


@pytest.mark.slow
def test_compare_arms_auroc_covers_where_the_old_interval_did_not() -> None:
    """300 null studies with AUROC, three seeds, seeds dominating, through compare_arms.

    The new interval covers 0 in 98 % of them (conservative: with three seeds the
    test-set component, 0 here, is estimated from three seed pairs and clipped at 0),
    the old two-level percentile interval in 83 %.
    """
    g = torch.Generator().manual_seed(11)
    new = old = 0
    for r in range(300):
        a, b, labels, codes = _auroc_null_study(g, 3)
        d = compare_arms(a, b, labels, codes, n_resamples=200, seed=r).difference
        new += d.low <= 0.0 <= d.high
        reps = seed_replicates(
            lambda j, w, a=a, b=b, y=labels: (
                weighted_binary_auroc(a[j], y, w) - weighted_binary_auroc(b[j], y, w)
            ),
            3,
            codes,
            labels.numel(),
            n_resamples=200,
            seed=r,
        )
        low, high = _old_interval(reps.estimate[None], reps.values[None], g)
        old += bool(low[0] <= 0.0 <= high[0])
    # 95 % -3 / +4 binomial standard errors of 300 studies (0.0126)
    assert 0.91 <= new / 300 <= 1.0, new / 300
    assert old / 300 < 0.88, old / 300


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
