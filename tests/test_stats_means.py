"""Means of per-image values (lung-attention aggregates and comparisons) against known cases."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from cxr_curriculum.stats import compare_means, mean_ci


def test_constant_values_have_a_zero_width_interval() -> None:
    ci = mean_ci([0.4] * 10, n_resamples=200)
    assert (ci.estimate, ci.low, ci.high, ci.n, ci.n_clusters) == pytest.approx(
        (0.4, 0.4, 0.4, 10, 10)
    )


def test_interval_matches_normal_theory_for_a_large_sample() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(400, generator=g, dtype=torch.float64) + 2.0
    ci = mean_ci(values, n_resamples=4000, seed=1)
    se = values.std().item() / math.sqrt(400)
    assert ci.estimate == pytest.approx(values.mean().item())
    assert ci.low == pytest.approx(ci.estimate - 1.96 * se, abs=0.25 * se)
    assert ci.high == pytest.approx(ci.estimate + 1.96 * se, abs=0.25 * se)


def test_nan_values_are_dropped_and_counted() -> None:
    ci = mean_ci([1.0, float("nan"), 3.0], ["a", "b", "c"], n_resamples=100)
    assert ci.estimate == 2.0 and ci.n == 2 and ci.n_nan == 1 and ci.n_clusters == 2
    empty = mean_ci([float("nan")], n_resamples=10)
    assert math.isnan(empty.estimate) and empty.n == 0 and empty.n_nan == 1


def test_cluster_bootstrap_resamples_patients() -> None:
    # Two patients, each with identical images: the image-level bootstrap thinks there
    # are 20 independent values; by patient there are only two, so the CI is wider.
    values = [0.0] * 10 + [1.0] * 10
    patients = ["a"] * 10 + ["b"] * 10
    by_image = mean_ci(values, n_resamples=2000)
    by_patient = mean_ci(values, patients, n_resamples=2000)
    assert by_patient.n_clusters == 2 and by_image.n_clusters == 20
    assert by_patient.high - by_patient.low > 1.5 * (by_image.high - by_image.low)
    # With two clusters of equal size the resampled means are only 0, 0.5 or 1.
    assert {by_patient.low, by_patient.high} <= {0.0, 0.5, 1.0}


def test_cluster_mean_weights_images() -> None:
    # Patient a: three images of 1.0; patient b: one image of 0.0 -> mean over images 0.75.
    ci = mean_ci([1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"], n_resamples=500)
    assert ci.estimate == pytest.approx(0.75)


def test_paired_constant_shift_is_significant() -> None:
    a = torch.linspace(0, 1, 30, dtype=torch.float64)
    res = compare_means(a + 0.1, a, n_resamples=999, metric="lift")
    assert res.metric == "lift" and res.difference == pytest.approx(0.1)
    assert res.low == pytest.approx(0.1) and res.high == pytest.approx(0.1)
    assert res.p_value == pytest.approx(2 / 1000)  # the smallest possible, 2 / (B + 1)


def test_paired_no_difference_is_not_significant() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.rand(50, generator=g, dtype=torch.float64)
    noise = torch.randn(50, generator=g, dtype=torch.float64) * 0.05
    res = compare_means(a + noise - noise.mean(), a, n_resamples=999)
    assert abs(res.difference) < 1e-12 and res.p_value > 0.5
    assert res.low < 0 < res.high


def test_paired_p_value_agrees_with_a_normal_test_roughly() -> None:
    g = torch.Generator().manual_seed(4)
    d = torch.randn(60, generator=g, dtype=torch.float64) + 0.3
    res = compare_means(d, torch.zeros(60, dtype=torch.float64), n_resamples=4000)
    t = d.mean().item() / (d.std().item() / math.sqrt(60))
    p_normal = 2 * (1 - statistics.NormalDist().cdf(abs(t)))
    assert res.p_value == pytest.approx(p_normal, abs=0.02)


def test_pairs_with_a_nan_are_dropped() -> None:
    a = [1.0, float("nan"), 3.0, 4.0]
    b = [0.0, 1.0, float("nan"), 2.0]
    res = compare_means(a, b, ["p", "q", "r", "s"], n_resamples=100)
    assert res.n == 2 and res.n_clusters == 2
    assert res.estimate_a == 2.5 and res.estimate_b == 1.0 and res.difference == 1.5
