"""Intervals over training seeds on a shared test set: two variance components.

A study trains a recipe once per seed ``j = 1..S`` and tests every model on the *same*
test patients. A per-seed value ``v_j`` (an AUROC, or a difference between two arms'
AUROCs) then varies for two reasons, and the test set is shared:
``v_j = mu + T + U_j``, where ``T`` is the effect of this test set, common to every seed
(and, for a difference, to both arms), and ``U_j`` is what is particular to seed ``j``:
its training run and how that model's own errors fall on these patients. Given the test
set the ``U_j`` are independent, so the mean ``v_bar`` has variance
``Var(T) + Var(U) / S``, estimated by two components:

- ``seed_variance = s**2 / S``, with ``s**2`` the sample variance of the ``S`` per-seed
  values: ``(S - 1) s**2 / Var(U)`` is chi-squared with ``S - 1`` degrees of freedom for
  normal ``U`` (it estimates ``Var(U) / S``, however much of ``U`` is test-set noise
  particular to one model);
- ``test_variance``: the mean over seed pairs ``j != k`` of the covariance of ``v*_j``
  and ``v*_k`` over patient-bootstrap resamples shared by every seed, clipped at 0.
  Only the shared part ``T`` makes two seeds' values move together, so this estimates
  ``Var(T)`` without counting the per-model test noise a second time (the whole
  bootstrap variance of ``v_bar`` would: it is already in ``s**2``). Estimated from
  hundreds of patients, it is treated as known.

**Interval and p-value.** The mean is normal with a variance made of an estimated
component (``seed_variance``, ``S - 1`` degrees of freedom) and a known one
(``test_variance``): :mod:`cxr_curriculum.stats.generalized` gives Weerahandi's generalized
interval (JASA 1993) and the generalized p-value that inverts it exactly, without a floor
(Student's t with ``S - 1`` degrees of freedom when the test component is 0, the normal
interval when the seed component is). With one seed there is no interval (NaN).
``tests/test_study_statistics.py`` and ``benchmarks/study_coverage.py`` check the
coverage by simulation.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from cxr_curriculum.stats.generalized import generalized_half_width, generalized_p_value
from cxr_curriculum.stats.intervals import ConfidenceInterval, check_confidence
from cxr_curriculum.stats.paired import PairedComparison

__all__ = [
    "SeedComponents",
    "seed_comparison",
    "seed_components",
    "seed_interval",
    "seed_p_value",
]


class SeedComponents(NamedTuple):
    """The mean over seeds and the two parts of its variance.

    Attributes:
        estimate: Mean of the per-seed values on the full test set.
        seed_variance: ``s**2 / S`` (NaN for one seed).
        test_variance: Mean between-seed covariance over shared patient resamples, ``>= 0``
            (NaN for one seed).
        n_seeds: ``S``.
        n_valid: Resamples on which every seed's value was defined.
    """

    estimate: float
    seed_variance: float
    test_variance: float
    n_seeds: int
    n_valid: int


def seed_components(values: Tensor, replicates: Tensor) -> SeedComponents:
    """Split the variance of a mean over seeds into its seed and test-set parts.

    Args:
        values: ``(S,)`` per-seed values on the full test set.
        replicates: ``(R, S)`` per-seed values on ``R`` patient-bootstrap resamples of
            the test set, each resample shared by every seed (row ``r`` uses the same
            patients in every column); rows with a NaN are left out.

    Returns:
        The :class:`SeedComponents`; both variances are NaN for one seed or a NaN value.

    Raises:
        ValueError: On mismatched shapes, or when fewer than two resamples are defined
            for every seed.
    """
    v = values.detach().double().flatten()
    reps = replicates.detach().double()
    n_seeds = v.numel()
    if n_seeds < 1 or reps.ndim != 2 or reps.shape[1] != n_seeds:
        raise ValueError(
            f"values must be (S,) with S >= 1 and replicates (R, S); got {tuple(v.shape)} "
            f"and {tuple(reps.shape)}"
        )
    reps = reps[~torch.isnan(reps).any(1)]
    n_valid = reps.shape[0]
    if n_valid < 2:
        raise ValueError("fewer than two bootstrap resamples gave a defined statistic")
    estimate = float(v.mean())
    if math.isnan(estimate) or n_seeds < 2:
        return SeedComponents(estimate, math.nan, math.nan, n_seeds, n_valid)
    seed_variance = float(v.var(unbiased=True)) / n_seeds
    # mean off-diagonal covariance = (sum of all entries - trace) / (S (S - 1))
    total = float(reps.mean(1).var(unbiased=True)) * n_seeds**2
    trace = float(reps.var(0, unbiased=True).sum())
    test_variance = max(0.0, (total - trace) / (n_seeds * (n_seeds - 1)))
    return SeedComponents(estimate, seed_variance, test_variance, n_seeds, n_valid)


def _undefined(c: SeedComponents) -> bool:
    return c.n_seeds < 2 or math.isnan(c.seed_variance) or math.isnan(c.test_variance)


def seed_p_value(components: SeedComponents, null: float = 0.0) -> float:
    """Generalized p-value of ``mean over seeds == null`` (two-sided; NaN for one seed).

    ``p = E_W[erfc(|estimate - null| / sqrt(2 V(W)))]``
    (:func:`~cxr_curriculum.stats.generalized.generalized_p_value`); it
    inverts the interval of :func:`seed_interval` / :func:`seed_comparison` (before
    clipping to bounds): ``p < 1 - confidence`` exactly when the interval excludes
    ``null``. For ``test_variance = 0`` it equals Student's t test with ``S - 1``
    degrees of freedom.
    """
    c = components
    if _undefined(c):
        return math.nan
    distance = abs(c.estimate - null)
    return generalized_p_value(distance, c.seed_variance, c.test_variance, c.n_seeds - 1)


def _interval(
    c: SeedComponents, confidence: float, bounds: tuple[float, float]
) -> tuple[float, float]:
    if _undefined(c):
        return math.nan, math.nan
    half = generalized_half_width(c.seed_variance, c.test_variance, c.n_seeds - 1, confidence)
    return max(bounds[0], c.estimate - half), min(bounds[1], c.estimate + half)


def seed_interval(
    values: Tensor,
    replicates: Tensor,
    *,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    n: int = 0,
    n_clusters: int = 0,
) -> ConfidenceInterval:
    """The mean over seeds of a per-seed statistic, with its interval over seeds and patients.

    Args:
        values: ``(S,)`` per-seed values on the full test set.
        replicates: ``(R, S)`` values on patient resamples shared by every seed.
        confidence: Coverage in ``(0, 1)``.
        bounds: Range of the statistic (e.g. ``(0, 1)`` for an AUROC); the interval is
            clipped to it.
        n: Test images.
        n_clusters: Test patients.

    Returns:
        A :class:`ConfidenceInterval` with ``n_seeds = S``, ``seed_variance`` and
        ``test_variance``; ``low``/``high`` NaN for one seed.
    """
    check_confidence(confidence)
    c = seed_components(values, replicates)
    low, high = _interval(c, confidence, bounds)
    return ConfidenceInterval(
        c.estimate, low, high, confidence, n, n_clusters, replicates.shape[0], c.n_valid,
        n_seeds=c.n_seeds, seed_variance=c.seed_variance, test_variance=c.test_variance,
    )  # fmt: skip


def seed_comparison(
    metric: str,
    values_a: Tensor,
    values_b: Tensor,
    replicates: Tensor,
    *,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
    n: int = 0,
    n_clusters: int = 0,
) -> PairedComparison:
    """Arm a minus arm b, paired by seed and by test patient, over seeds and patients.

    Args:
        metric: Name recorded in the result.
        values_a: ``(S,)`` arm a's per-seed values on the full test set.
        values_b: ``(S,)`` arm b's, same seeds in the same order.
        replicates: ``(R, S)`` per-seed *differences* ``a - b`` on patient resamples
            shared by every seed and both arms.
        confidence: Coverage in ``(0, 1)``.
        bounds: Range of the difference (``(-1, 1)`` for AUROCs); the interval is
            clipped to it.
        n: Test images.
        n_clusters: Test patients.

    Returns:
        A :class:`PairedComparison` with ``n_seeds = S``, the two variance components
        and the generalized ``p_value`` (:func:`seed_p_value`); ``low``/``high``/
        ``p_value`` NaN for one seed.
    """
    check_confidence(confidence)
    a, b = values_a.detach().double().flatten(), values_b.detach().double().flatten()
    if a.shape != b.shape:
        raise ValueError(f"values_a and values_b differ in shape: {a.shape} vs {b.shape}")
    c = seed_components(a - b, replicates)
    low, high = _interval(c, confidence, bounds)
    est_a, est_b = float(a.mean()), float(b.mean())
    return PairedComparison(
        metric, est_a, est_b, est_a - est_b, low, high, seed_p_value(c), confidence, n,
        n_clusters, replicates.shape[0], c.n_valid, n_seeds=c.n_seeds,
        seed_variance=c.seed_variance, test_variance=c.test_variance,
    )  # fmt: skip
