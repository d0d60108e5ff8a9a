"""Statistics across training runs: intervals over seeds and test patients.

A study trains every arm once per seed and tests every model on the *same* test
patients. The difference between two arms then varies for two reasons: the training
run (seed: initialisation, batch order, augmentation, label subset) and the finite test
set. A patient bootstrap of one run (:func:`cxr_curriculum.evaluation.paired_auroc_test`)
only covers the second, so its interval is too narrow for "is arm A better than arm
B?" (the seed-to-seed spread of a 200-step pretraining is as large as the effects).

With five seeds, resampling the seeds (a two-level bootstrap, even widened by
``sqrt(S / (S - 1))``, as this module did before) is anti-conservative when seeds
dominate: a percentile interval has no small-sample penalty for estimating the seed
spread from ``S`` values (in the simulation of ``benchmarks/study_coverage.py`` a
nominal 95 % interval covered about 87 % of null studies at five seeds). The interval
here (:func:`cxr_curriculum.stats.seed_interval` and
:func:`cxr_curriculum.stats.seed_comparison`; the model and its estimators are in
:mod:`cxr_curriculum.stats.seeds`, the interval in :mod:`cxr_curriculum.stats.generalized`)
splits the variance of the mean over seeds into the
between-seed variance ``s**2 / S`` and the test-set variance shared by every seed (the
mean between-seed covariance over patient resamples drawn once for every seed and both
arms, so the comparison stays paired by seed and by patient), and combines them with
Weerahandi's generalized confidence interval: Student's t with ``S - 1`` degrees of
freedom when seeds dominate, the normal interval when the test set does. Its p-value
inverts it and has no floor (Holm's first threshold over 54 comparisons is
``0.05 / 54 = 9e-4``). One seed gives no interval (NaN). The results are the package's
own classes: :class:`~cxr_curriculum.stats.ConfidenceInterval` for one arm and
:class:`~cxr_curriculum.stats.PairedComparison` for a difference, with ``n_seeds``,
``seed_variance`` and ``test_variance`` set. ``tests/test_study_statistics.py`` checks
the coverage by simulation (seed-dominated, image-dominated and mixed regimes; 3, 5 and
10 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.stats import (
    ConfidenceInterval,
    DeLongResult,
    PairedComparison,
    delong_test,
    seed_comparison,
    seed_interval,
)
from cxr_curriculum.stats.intervals import check_confidence
from cxr_curriculum.study.resample import (
    PerSeedStatistic,
    seed_replicates,
    weighted_binary_auroc,
)

__all__ = ["ArmComparison", "SeedDifference", "compare_arms", "two_level_interval"]

#: ``metric(scores of one model, weights (R, N)) -> (R,)``, e.g. a task's weighted AUROC.
Metric = Callable[[Tensor, Tensor], Tensor]


def two_level_interval(
    per_seed: PerSeedStatistic,
    n_seeds: int,
    groups: Sequence[Any] | Tensor | None,
    n_items: int,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> ConfidenceInterval:
    """Interval of the mean over seeds of a per-seed statistic, over seeds and test patients.

    Args:
        per_seed: ``per_seed(j, w)`` returns the ``(R,)`` statistic of seed ``j`` for
            ``(R, N)`` image weights ``w`` (all ones: the full test set); NaN if undefined.
        n_seeds: Number of seeds ``S`` (>= 1).
        groups: Patient id per test image (``None``: every image its own patient).
        n_items: Test images ``N``.
        n_resamples: Patient resamples of the test-set variance component.
        confidence: Coverage in ``(0, 1)``.
        seed: Seed of the resampling generator.
        bounds: Range of the statistic (e.g. ``(0, 1)`` for an AUROC); the interval is
            clipped to it.

    Returns:
        A :class:`~cxr_curriculum.stats.ConfidenceInterval` with ``n_seeds = S``:
        ``estimate`` is the mean over seeds, ``[low, high]`` the seed-level interval
        (NaN for one seed), ``n``/``n_clusters`` the test images/patients.
    """
    check_confidence(confidence)
    reps = seed_replicates(per_seed, n_seeds, groups, n_items, n_resamples=n_resamples, seed=seed)
    return seed_interval(
        reps.estimate, reps.values, confidence=confidence, bounds=bounds, n=reps.n,
        n_clusters=reps.n_clusters,
    )  # fmt: skip


@dataclass(frozen=True)
class SeedDifference:
    """One seed's paired comparison of the two arms' models on the same test images.

    Field names as in :class:`~cxr_curriculum.stats.PairedComparison`.

    Attributes:
        seed: The training seed.
        estimate_a: The metric of arm a's model of this seed.
        estimate_b: The metric of arm b's model.
        difference: ``estimate_a - estimate_b``.
        delong: DeLong's paired test (DeLong et al. 1988) of the two AUROCs, covering the
            test set only; ``None`` for other metrics (e.g. a macro AUROC).
    """

    seed: int
    estimate_a: float
    estimate_b: float
    difference: float
    delong: DeLongResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict; DeLong's variance, z and p-value are prefixed ``delong_``
        (``None`` for a metric without DeLong's test, e.g. a macro AUROC)."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "estimate_a": self.estimate_a,
            "estimate_b": self.estimate_b,
            "difference": self.difference,
        }
        d = self.delong.to_dict() if self.delong is not None else {}
        out.update({f"delong_{k}": d.get(k) for k in ("variance", "z", "p_value")})
        return out


@dataclass(frozen=True)
class ArmComparison:
    """Arm a vs arm b across seeds.

    Attributes:
        arm_a: Name of arm a.
        arm_b: Name of arm b.
        difference: The comparison over seeds (``n_seeds`` set): means over seeds of each
            arm's metric, their difference, its seed-level interval and p-value.
        share_a_wins: Share of seeds in which arm a's metric is higher (ties count half).
        per_seed: The per-seed comparisons (with DeLong's test for a binary AUROC).
    """

    arm_a: str
    arm_b: str
    difference: PairedComparison
    share_a_wins: float
    per_seed: tuple[SeedDifference, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "arm_a": self.arm_a,
            "arm_b": self.arm_b,
            "difference": self.difference.to_dict(),
            "share_a_wins": self.share_a_wins,
            "per_seed": [s.to_dict() for s in self.per_seed],
        }


def compare_arms(
    scores_a: Tensor,
    scores_b: Tensor,
    labels: Tensor,
    groups: Sequence[Any] | Tensor | None = None,
    *,
    metric: Metric | None = None,
    metric_name: str = "auroc",
    seeds: Sequence[int] | None = None,
    names: tuple[str, str] = ("a", "b"),
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    bounds: tuple[float, float] = (-1.0, 1.0),
) -> ArmComparison:
    """Compare two arms' metric over seeds, paired by seed and by test patient.

    Args:
        scores_a: ``(S, N)`` positive-class scores of arm a's model of each seed (with
            ``metric``: ``(S, ...)`` whatever the metric reads, one row per seed).
        scores_b: Scores of arm b, same seeds in the same order.
        labels: ``(N,)`` test labels in ``{0, 1}`` (with ``metric``: anything whose first
            dimension is the ``N`` test images).
        groups: Patient id per test image.
        metric: ``metric(scores_row, weights (R, N)) -> (R,)``; ``None``: binary AUROC
            (then each seed also gets DeLong's paired test; otherwise ``delong`` is None).
        metric_name: Name recorded in the :class:`~cxr_curriculum.stats.PairedComparison`.
        seeds: The seed values (for the per-seed rows); default ``0..S-1``.
        names: ``(arm a, arm b)``.
        n_resamples: Patient resamples of the test-set variance component.
        confidence: Coverage.
        seed: Seed of the resampling generator.
        bounds: Range of the difference; the interval is clipped to it (``(-1, 1)``
            for an AUROC or any metric in ``[0, 1]``).

    Returns:
        An :class:`ArmComparison`; its ``difference`` has NaN ``low``/``high``/``p_value``
        for one seed.
    """
    check_confidence(confidence)
    a, b = torch.as_tensor(scores_a).double(), torch.as_tensor(scores_b).double()
    y = torch.as_tensor(labels)
    n_items = int(y.shape[0])
    if a.ndim < 2 or a.shape != b.shape or (metric is None and a.shape[1:] != (n_items,)):
        raise ValueError(
            f"scores_a and scores_b must both be (S, N) with N = len(labels) = {n_items}; "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n_seeds = a.shape[0]
    seed_values = list(seeds) if seeds is not None else list(range(n_seeds))
    if len(seed_values) != n_seeds:
        raise ValueError(f"{len(seed_values)} seed values for {n_seeds} rows of scores")
    if metric is None:
        y = y.long()

        def binary(row: Tensor, w: Tensor) -> Tensor:
            return weighted_binary_auroc(row, y, w)

    fn: Metric = binary if metric is None else metric

    def diff(j: int, w: Tensor) -> Tensor:
        return fn(a[j], w) - fn(b[j], w)

    rows = []
    ones = torch.ones(1, n_items, dtype=torch.float64)
    for j, s in enumerate(seed_values):
        va, vb = float(fn(a[j], ones)[0]), float(fn(b[j], ones)[0])
        delong = delong_test(a[j], b[j], y) if metric is None else None
        rows.append(SeedDifference(int(s), va, vb, va - vb, delong))
    reps = seed_replicates(diff, n_seeds, groups, n_items, n_resamples=n_resamples, seed=seed)
    summary = seed_comparison(
        metric_name,
        torch.tensor([r.estimate_a for r in rows], dtype=torch.float64),
        torch.tensor([r.estimate_b for r in rows], dtype=torch.float64),
        reps.values,
        confidence=confidence,
        bounds=bounds,
        n=reps.n,
        n_clusters=reps.n_clusters,
    )
    wins = sum(1.0 if r.difference > 0 else 0.5 if r.difference == 0 else 0.0 for r in rows)
    return ArmComparison(names[0], names[1], summary, wins / n_seeds, tuple(rows))
