"""Bootstrap CIs and paired comparisons against simple known cases."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from cxr_curriculum.attention import bootstrap_ci, paired_bootstrap


def test_constant_values_have_a_zero_width_interval() -> None:
    ci = bootstrap_ci([0.4] * 10, n_boot=200)
    assert (ci.mean, ci.low, ci.high, ci.n, ci.n_clusters) == pytest.approx((0.4, 0.4, 0.4, 10, 10))


def test_interval_matches_normal_theory_for_a_large_sample() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(400, generator=g, dtype=torch.float64) + 2.0
    ci = bootstrap_ci(values, n_boot=4000, seed=1)
    se = values.std().item() / math.sqrt(400)
    assert ci.mean == pytest.approx(values.mean().item())
    assert ci.low == pytest.approx(ci.mean - 1.96 * se, abs=0.25 * se)
    assert ci.high == pytest.approx(ci.mean + 1.96 * se, abs=0.25 * se)


def test_nan_values_are_dropped_and_counted() -> None:
    ci = bootstrap_ci([1.0, float("nan"), 3.0], n_boot=100)
    assert ci.mean == 2.0 and ci.n == 2 and ci.n_nan == 1
    empty = bootstrap_ci([float("nan")], n_boot=10)
    assert math.isnan(empty.mean) and empty.n == 0


def test_cluster_bootstrap_resamples_patients() -> None:
    # Two patients, each with identical images: the image-level bootstrap thinks there
    # are 20 independent values; by patient there are only two, so the CI is wider.
    values = [0.0] * 10 + [1.0] * 10
    patients = ["a"] * 10 + ["b"] * 10
    by_image = bootstrap_ci(values, n_boot=2000)
    by_patient = bootstrap_ci(values, patients, n_boot=2000)
    assert by_patient.n_clusters == 2 and by_image.n_clusters == 20
    assert by_patient.high - by_patient.low > 1.5 * (by_image.high - by_image.low)
    # With two clusters of equal size the resampled means are only 0, 0.5 or 1.
    assert {by_patient.low, by_patient.high} <= {0.0, 0.5, 1.0}


def test_cluster_mean_weights_images() -> None:
    # Patient a: three images of 1.0; patient b: one image of 0.0 -> mean over images 0.75.
    ci = bootstrap_ci([1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"], n_boot=500)
    assert ci.mean == pytest.approx(0.75)


def test_paired_constant_shift_is_significant() -> None:
    a = torch.linspace(0, 1, 30, dtype=torch.float64)
    res = paired_bootstrap(a + 0.1, a, n_boot=999)
    assert res.diff == pytest.approx(0.1)
    assert res.low == pytest.approx(0.1) and res.high == pytest.approx(0.1)
    assert res.p_value == pytest.approx(1 / 1000)


def test_paired_no_difference_is_not_significant() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.rand(50, generator=g, dtype=torch.float64)
    noise = torch.randn(50, generator=g, dtype=torch.float64) * 0.05
    res = paired_bootstrap(a + noise - noise.mean(), a, n_boot=999)
    assert abs(res.diff) < 1e-12 and res.p_value > 0.5
    assert res.low < 0 < res.high


def test_paired_p_value_agrees_with_a_t_test_roughly() -> None:
    g = torch.Generator().manual_seed(4)
    d = torch.randn(60, generator=g, dtype=torch.float64) + 0.3
    res = paired_bootstrap(d, torch.zeros(60, dtype=torch.float64), n_boot=4000)
    t = d.mean().item() / (d.std().item() / math.sqrt(60))
    p_normal = 2 * (1 - statistics.NormalDist().cdf(abs(t)))
    assert res.p_value == pytest.approx(p_normal, abs=0.02)


def test_paired_validation() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="cluster ids"):
        bootstrap_ci([1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0], level=1.5)
