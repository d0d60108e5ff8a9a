"""The seed-level interval (variance components, generalized interval and p-value) and the
Holm / Benjamini-Hochberg adjustments, against direct computations and scipy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_curriculum.stats import (
    SeedComponents,
    benjamini_hochberg,
    holm,
    seed_comparison,
    seed_components,
    seed_interval,
    seed_p_value,
)

scipy_stats = pytest.importorskip("scipy.stats")
scipy_integrate = pytest.importorskip("scipy.integrate")


# ------------------------------------------------------------------ variance components
def test_components_are_the_seed_variance_and_the_mean_off_diagonal_covariance() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.rand(4, generator=g, dtype=torch.float64)
    shared = torch.randn(300, 1, generator=g, dtype=torch.float64)
    reps = values + 0.1 * shared + 0.05 * torch.randn(300, 4, generator=g, dtype=torch.float64)
    reps[7, 2] = math.nan  # a resample on which one seed's statistic is undefined
    c = seed_components(values, reps)
    assert c.estimate == pytest.approx(float(values.mean()))
    assert c.seed_variance == pytest.approx(float(values.var()) / 4)
    ok = reps[~reps.isnan().any(1)]
    assert c.n_valid == ok.shape[0] == 299
    cov = [
        float(((ok[:, j] - ok[:, j].mean()) * (ok[:, k] - ok[:, k].mean())).sum()) / 298
        for j, k in itertools.permutations(range(4), 2)
    ]
    assert c.test_variance == pytest.approx(sum(cov) / len(cov), rel=1e-10)
    assert c.test_variance == pytest.approx(0.01, rel=0.25)  # the shared part's variance
    # independent per-seed noise only: no shared part, clipped at 0 rather than negative
    alone = seed_components(values, torch.randn(300, 4, generator=g, dtype=torch.float64))
    assert 0.0 <= alone.test_variance < 0.01
    one = seed_components(values[:1], reps[:, :1])
    assert math.isnan(one.seed_variance) and one.n_seeds == 1
    with pytest.raises(ValueError, match=r"\(R, S\)"):
        seed_components(values, reps[:, :3])
    with pytest.raises(ValueError, match="fewer than two"):
        seed_components(values, torch.full((5, 4), math.nan, dtype=torch.float64))


# ------------------------------------------------------------- interval and p-value
@pytest.mark.parametrize("n_seeds", [2, 3, 5, 10, 40])
def test_without_a_test_component_it_is_students_t(n_seeds: int) -> None:
    g = torch.Generator().manual_seed(n_seeds)
    values = 0.3 + torch.randn(n_seeds, generator=g, dtype=torch.float64)
    reps = values.expand(50, n_seeds).clone()  # the test set moves nothing
    iv = seed_interval(values, reps, confidence=0.9)
    ref = scipy_stats.t.interval(
        0.9, n_seeds - 1, loc=float(values.mean()), scale=float(values.std()) / n_seeds**0.5
    )
    assert (iv.low, iv.high) == pytest.approx(ref, rel=1e-9)
    assert iv.test_variance is not None and iv.test_variance < 1e-20 and iv.n_seeds == n_seeds
    for x in (0.0, 0.5, 2.0, 8.0, 40.0):
        c = SeedComponents(x, 1.0, 0.0, n_seeds, 50)
        ref_p = 2 * scipy_stats.t.sf(x, n_seeds - 1)
        assert seed_p_value(c) == pytest.approx(ref_p, rel=1e-7, abs=1e-300)


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (0.2, 1.0), (1.0, 0.05), (0.0, 1.0)])
def test_generalized_p_value_matches_the_integral(a: float, b: float) -> None:
    """p = E_W[erfc(|x| / sqrt(2 (a (S-1) / W + b)))], W ~ chi2(S-1), by scipy's quad."""
    for n_seeds, x in itertools.product((2, 3, 5, 10), (0.3, 2.0, 6.0)):
        k = n_seeds - 1

        def integrand(w: float, k: int = k, x: float = x) -> float:
            return float(scipy_stats.chi2.pdf(w, k)) * math.erfc(x / math.sqrt(2 * (a * k / w + b)))

        ref = (
            scipy_integrate.quad(integrand, 0, math.inf, limit=400, epsrel=1e-11)[0]
            if a > 0
            else math.erfc(x / math.sqrt(2 * b))
        )
        ours = seed_p_value(SeedComponents(x, a, b, n_seeds, 100))
        assert ours == pytest.approx(ref, rel=1e-6), (n_seeds, x)


def test_p_value_inverts_the_interval_and_has_no_floor() -> None:
    g = torch.Generator().manual_seed(3)
    for shift in (0.0, 0.02, 0.05, 0.1, 0.3, 1.0):
        a = shift + 0.05 * torch.randn(5, generator=g, dtype=torch.float64)
        b = torch.zeros(5, dtype=torch.float64)
        reps = (a - b) + 0.01 * torch.randn(400, 1, generator=g, dtype=torch.float64)
        for conf in (0.9, 0.95, 0.99):
            cmp = seed_comparison("auroc", a, b, reps, confidence=conf)
            excludes = cmp.low > 0 or cmp.high < 0
            assert excludes == (cmp.p_value < 1 - conf), (shift, conf, cmp)
            # at the interval's edge the p-value is 1 - confidence
            edge = SeedComponents(cmp.high - cmp.difference, *seed_components(a - b, reps)[1:])
            assert seed_p_value(edge) == pytest.approx(1 - conf, rel=1e-6)
    # five seeds all far above 0: the p-value goes far below 2 / 2001 and 0.05 / 54
    assert cmp.p_value < 1e-6 and cmp.n_seeds == 5
    assert cmp.seed_variance is not None and cmp.test_variance is not None


def test_fixed_values_give_a_point_and_one_seed_gives_nan() -> None:
    same = torch.full((3,), 0.7, dtype=torch.float64)
    iv = seed_interval(same, same.expand(10, 3).clone(), bounds=(0.0, 1.0))
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((0.7, 0.7, 0.7))
    zero = seed_comparison("auroc", same, same, torch.zeros(10, 3, dtype=torch.float64))
    assert zero.p_value == 1.0 and zero.low == zero.high == 0.0
    one = seed_comparison("auroc", same[:1], same[:1] - 0.1, torch.zeros(10, 1))
    assert one.difference == pytest.approx(0.1)
    assert math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.p_value)
    clipped = seed_interval(
        torch.tensor([0.97, 0.99, 1.0], dtype=torch.float64), torch.rand(20, 3), bounds=(0, 1)
    )
    assert clipped.high == 1.0


# ------------------------------------------------------------------------ multiplicity
def _holm_by_definition(p: list[float]) -> list[float]:
    """Holm's adjusted p-values written out: ``max_{j <= i} min(1, (m - j + 1) p_(j))``."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for rank, i in enumerate(order):
        out[i] = min(1.0, max((m - r) * p[order[r]] for r in range(rank + 1)))
    return out


def _rejected(p: list[float], alpha: float, rule: str) -> set[int]:
    """Which hypotheses the procedure rejects at level alpha (no adjusted values used)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    if rule == "holm":
        out = set()
        for rank, i in enumerate(order):
            if p[i] > alpha / (m - rank):
                break
            out.add(i)
        return out
    k = max((rank + 1 for rank, i in enumerate(order) if p[i] <= alpha * (rank + 1) / m), default=0)
    return set(order[:k])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_adjusted_p_values_reject_what_the_procedures_reject(p: list[float]) -> None:
    h, bh = holm(p), benjamini_hochberg(p)
    assert h == pytest.approx(_holm_by_definition(p), abs=1e-15)
    assert bh == pytest.approx(list(scipy_stats.false_discovery_control(p)), rel=1e-12)
    for alpha in (0.001, 0.01, 0.05, 0.2):
        assert {i for i, v in enumerate(h) if v <= alpha} == _rejected(p, alpha, "holm")
        assert {i for i, v in enumerate(bh) if v <= alpha} == _rejected(p, alpha, "bh")
    for raw, a, b in zip(p, h, bh, strict=True):
        assert raw <= b + 1e-15 and b <= a + 1e-15 and a <= 1.0  # p <= BH <= Holm <= 1
    # adjusted values keep the order of the raw ones
    ranked = sorted(range(len(p)), key=lambda i: p[i])
    assert all(h[i] <= h[j] and bh[i] <= bh[j] for i, j in itertools.pairwise(ranked))


def test_nan_p_values_are_not_in_the_family() -> None:
    p = [0.01, math.nan, 0.04, 0.03]
    assert holm(p)[1] != holm(p)[1] and benjamini_hochberg(p)[1] != benjamini_hochberg(p)[1]
    assert holm(p)[0] == pytest.approx(0.03)  # m = 3, not 4
    assert benjamini_hochberg(p)[2] == pytest.approx(0.04)
    assert holm([]) == [] and benjamini_hochberg([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])
