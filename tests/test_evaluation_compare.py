"""Bootstrap intervals and paired AUROC comparison (DeLong against a brute-force reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr_curriculum.evaluation import (
    accuracy,
    auroc,
    bootstrap_ci,
    bootstrap_indices,
    delong_components,
    delong_test,
    paired_auroc_test,
)


def _brute_force_delong(a: np.ndarray, b: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """DeLong et al. 1988, eqs. for V10, V01, S10, S01, written with explicit loops."""

    def psi(x: float, z: float) -> float:
        return 1.0 if z < x else 0.5 if z == x else 0.0

    comps = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        v10 = np.array([np.mean([psi(x, z) for z in neg]) for x in pos])
        v01 = np.array([np.mean([psi(x, z) for x in pos]) for z in neg])
        comps.append((v10, v01))
    m, n = len(comps[0][0]), len(comps[0][1])
    s10 = np.cov(np.stack([comps[0][0], comps[1][0]]))  # 1/(m-1) normalisation
    s01 = np.cov(np.stack([comps[0][1], comps[1][1]]))
    cov = s10 / m + s01 / n
    ell = np.array([1.0, -1.0])
    diff = comps[0][0].mean() - comps[1][0].mean()
    return diff, float(ell @ cov @ ell)


def _two_models(n: int, seed: int, ties: bool = False) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    shared = rng.normal(size=n)
    a = y * 1.2 + shared + 0.5 * rng.normal(size=n)
    b = y * 0.6 + shared + 0.5 * rng.normal(size=n)
    if ties:
        a, b = np.round(a), np.round(b)
    return a, b, y


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_delong_matches_brute_force(seed: int, ties: bool) -> None:
    a, b, y = _two_models(40, seed, ties)
    res = delong_test(a, b, y)
    diff, var = _brute_force_delong(a, b, y)
    assert res.difference == pytest.approx(diff, abs=1e-12)
    assert res.variance == pytest.approx(var, rel=1e-10)
    assert res.auroc_a == pytest.approx(auroc(a, y), abs=1e-12)
    auc, v10, v01 = delong_components(a, y)
    assert v10.mean() == pytest.approx(v01.mean()) == pytest.approx(auc)


def test_delong_variance_agrees_with_bootstrap_variance() -> None:
    a, b, y = _two_models(300, seed=5)
    res = delong_test(a, b, y)
    gen = torch.Generator().manual_seed(0)
    at, bt, yt = map(torch.from_numpy, (a, b, y))
    diffs = [auroc(at[i], yt[i]) - auroc(bt[i], yt[i]) for i in bootstrap_indices(300, 1500, gen)]
    assert np.var(diffs) == pytest.approx(res.variance, rel=0.2)


def test_delong_identical_models_and_p_value() -> None:
    a, b, y = _two_models(60, seed=1)
    same = delong_test(a, a, y)
    assert same.difference == 0.0 and same.z == 0.0 and same.p_value == 1.0
    res = delong_test(a, b, y)
    # Two-sided normal p-value from z.
    from math import erfc, sqrt

    assert res.p_value == pytest.approx(erfc(abs(res.z) / sqrt(2)))
    swapped = delong_test(b, a, y)
    assert swapped.z == pytest.approx(-res.z) and swapped.p_value == pytest.approx(res.p_value)


def test_paired_auroc_test_detects_a_clear_difference() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = y * 2.0 + rng.normal(size=200)
    noise = rng.normal(size=200)
    cmp = paired_auroc_test(good, noise, y, n_resamples=500, seed=0)
    assert cmp.difference > 0.3
    assert 0 < cmp.low <= cmp.difference <= cmp.high
    assert cmp.p_value < 0.01 and cmp.delong is not None and cmp.delong.p_value < 1e-6
    again = paired_auroc_test(good, noise, y, n_resamples=500, seed=0)
    assert again == cmp
    flat = cmp.to_dict()
    assert flat["difference"] == cmp.difference and flat["delong_p_value"] == cmp.delong.p_value
    assert flat["metric"] == "auroc" and flat["p_value"] == cmp.p_value
    assert "delong" not in flat
    # Patient clusters: each patient has two images; the interval is reproducible too.
    groups = [f"p{i // 2}" for i in range(200)]
    clustered = paired_auroc_test(good, noise, y, n_resamples=300, groups=groups)
    assert clustered.low > 0 and clustered.n_clusters == 100


def test_paired_auroc_test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="binary"):
        paired_auroc_test(np.random.rand(6, 3), np.random.rand(6, 3), [0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="both classes"):
        delong_test(np.random.rand(4), np.random.rand(4), [1, 1, 1, 1])
    with pytest.raises(ValueError, match="n_resamples"):
        paired_auroc_test(np.random.rand(4), np.random.rand(4), [0, 1, 0, 1], n_resamples=0)


def test_bootstrap_ci_of_a_mean_matches_normal_theory() -> None:
    x = torch.from_numpy(np.random.default_rng(0).normal(size=400))
    ci = bootstrap_ci(lambda v: float(v.mean()), x, n_resamples=1000, seed=0)
    half = 1.96 * float(x.std()) / 20.0
    assert ci.low < ci.estimate < ci.high
    assert (ci.high - ci.low) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_ci(lambda v: float(v.mean()), x, n_resamples=1000, seed=0) == ci
    narrow = bootstrap_ci(lambda v: float(v.mean()), x, n_resamples=1000, confidence=0.5)
    assert narrow.high - narrow.low < ci.high - ci.low
    assert "95% CI" in str(ci)


def test_cluster_bootstrap_equals_item_bootstrap_of_one_image_per_patient() -> None:
    rng = np.random.default_rng(1)
    y = torch.from_numpy(rng.integers(0, 2, 30))
    p = torch.from_numpy(rng.integers(0, 2, 30))
    groups = [f"patient{i}" for i in range(30) for _ in range(3)]
    item = bootstrap_ci(accuracy, p, y, n_resamples=200, seed=3)
    cluster = bootstrap_ci(
        accuracy,
        p.repeat_interleave(3),
        y.repeat_interleave(3),
        n_resamples=200,
        seed=3,
        groups=groups,
    )
    assert (cluster.low, cluster.high) == pytest.approx((item.low, item.high))


def test_bootstrap_skips_undefined_resamples() -> None:
    y = torch.zeros(20, dtype=torch.long)
    y[0] = 1
    s = torch.rand(20, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="resamples gave a defined value"):
        bootstrap_ci(auroc, s, y, n_resamples=200)
    ci = bootstrap_ci(auroc, s, y, n_resamples=200, min_valid=0.3)
    assert 0.3 * 200 <= ci.n_valid < 200


def test_bootstrap_rejects_bad_arguments() -> None:
    x = torch.rand(5)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(lambda v: 0.0, x, confidence=1.0)
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_ci(lambda a, b: 0.0, x, torch.rand(4))
    with pytest.raises(ValueError, match="one entry per item"):
        bootstrap_ci(lambda v: 0.0, x, groups=["a", "b"])
