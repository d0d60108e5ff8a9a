"""Statistics across training runs: two-level bootstrap over seeds and test patients.

A study trains every arm once per seed and tests every model on the *same* test
patients. The difference between two arms then varies for two reasons: the training
run (seed: initialisation, batch order, augmentation) and the finite test set. A
patient bootstrap of one run (:func:`cxr_curriculum.evaluation.paired_auroc_test`)
only covers the second, so its interval is too narrow for "is arm A better than arm
B?" (the seed-to-seed spread of a 200-step pretraining is as large as the effects).

The two-level bootstrap here (Davison & Hinkley, "Bootstrap Methods and their
Application", 1997, Sec. 3.8; the hierarchical bootstrap of Saravanan et al., 2020)
draws, per replicate, the seeds with replacement (outer level) and one patient
resample (inner level) shared by every drawn seed and both arms, because every model
was tested on the same patients: the pairing by seed and by patient is kept. The
statistic is the mean over the drawn seeds. With ``S`` seeds the bootstrap variance of
a mean is too small by ``(S - 1) / S``, so every replicate is moved away from the
estimate by ``sqrt(S / (S - 1))`` before the percentile interval and the p-value
(:func:`cxr_curriculum.stats.bootstrap_p_value`, the package's one definition) are
taken: the p-value is the test that inverts the reported interval. One seed gives no
interval (NaN). The results are the package's own classes:
:class:`~cxr_curriculum.stats.ConfidenceInterval` for one arm and
:class:`~cxr_curriculum.stats.PairedComparison` for a difference, with ``n_seeds`` set
to say that they cover the seeds as well as the test patients. When arms differ only by seed,
resampling patients counts part of the test-set noise twice (it is already in the
spread between seeds), so the interval errs on the wide side when seed variation is
small. ``tests/test_study_statistics.py`` checks the coverage by simulation.
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
)
from cxr_curriculum.stats.intervals import check_confidence
from cxr_curriculum.study.resample import (
    PerSeedStatistic,
    two_level_replicates,
    weighted_binary_auroc,
    widen_replicates,
)

__all__ = [
    "ArmComparison",
    "SeedDifference",
    "compare_arms",
    "two_level_interval",
    "two_level_replicates",
]

#: ``metric(scores of one model, weights (R, N)) -> (R,)``, e.g. a task's weighted AUROC.
Metric = Callable[[Tensor, Tensor], Tensor]


def _check_valid(values: Tensor, n_seeds: int) -> None:
    if n_seeds > 1 and int((~torch.isnan(values)).sum()) < 2:
        raise ValueError("fewer than two bootstrap replicates gave a defined statistic")


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
    """Two-level bootstrap interval of the mean over seeds of a per-seed statistic.

    Args:
        per_seed: ``per_seed(j, w)`` returns the ``(R,)`` statistic of seed ``j`` for
            ``(R, N)`` image weights ``w`` (all ones: the full test set); NaN if undefined.
        n_seeds: Number of seeds ``S`` (>= 1).
        groups: Patient id per test image (``None``: every image its own patient).
        n_items: Test images ``N``.
        n_resamples: Bootstrap replicates.
        confidence: Coverage in ``(0, 1)``.
        seed: Seed of the resampling generator.
        bounds: Range of the statistic (e.g. ``(0, 1)`` for an AUROC); the widened
            interval is clipped to it.

    Returns:
        A :class:`~cxr_curriculum.stats.ConfidenceInterval` with ``n_seeds = S``:
        ``estimate`` is the mean over seeds, ``[low, high]`` the widened two-level
        percentile interval (NaN for one seed), ``n``/``n_clusters`` the test
        images/patients.
    """
    check_confidence(confidence)
    reps = two_level_replicates(
        per_seed, n_seeds, groups, n_items, n_resamples=n_resamples, seed=seed
    )
    values = widen_replicates(reps, n_seeds, bounds)
    _check_valid(reps.values[:, 0], n_seeds)
    if n_seeds < 2:
        return ConfidenceInterval(
            float(reps.estimate[0]),
            math.nan,
            math.nan,
            confidence,
            reps.n,
            reps.n_clusters,
            n_resamples,
            0,
            n_seeds=n_seeds,
        )
    return ConfidenceInterval.from_replicates(
        float(reps.estimate[0]),
        values,
        confidence=confidence,
        n=reps.n,
        n_clusters=reps.n_clusters,
        n_seeds=n_seeds,
    )


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
        """A flat JSON-ready dict; DeLong's variance, z and p-value are prefixed ``delong_``."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "estimate_a": self.estimate_a,
            "estimate_b": self.estimate_b,
            "difference": self.difference,
        }
        if self.delong is not None:
            d = self.delong.to_dict()
            out.update({f"delong_{k}": d[k] for k in ("variance", "z", "p_value")})
        return out


@dataclass(frozen=True)
class ArmComparison:
    """Arm a vs arm b across seeds.

    Attributes:
        arm_a: Name of arm a.
        arm_b: Name of arm b.
        difference: The comparison over seeds (``n_seeds`` set): means over seeds of each
            arm's metric, their difference, its widened two-level interval and p-value.
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
        n_resamples: Bootstrap replicates.
        confidence: Coverage.
        seed: Seed of the resampling generator.

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

    reps = two_level_replicates(diff, n_seeds, groups, n_items, n_resamples=n_resamples, seed=seed)
    _check_valid(reps.values[:, 0], n_seeds)
    rows = []
    ones = torch.ones(1, n_items, dtype=torch.float64)
    for j, s in enumerate(seed_values):
        va, vb = float(fn(a[j], ones)[0]), float(fn(b[j], ones)[0])
        delong = delong_test(a[j], b[j], y) if metric is None else None
        rows.append(SeedDifference(int(s), va, vb, va - vb, delong))
    mean_a = sum(r.estimate_a for r in rows) / n_seeds
    mean_b = sum(r.estimate_b for r in rows) / n_seeds
    values = widen_replicates(reps, n_seeds, (-1.0, 1.0))
    if n_seeds < 2:
        nan = math.nan
        summary = PairedComparison(
            metric_name,
            mean_a,
            mean_b,
            mean_a - mean_b,
            nan,
            nan,
            nan,
            confidence,
            reps.n,
            reps.n_clusters,
            n_resamples,
            0,
            n_seeds=n_seeds,
        )
    else:
        summary = PairedComparison.from_replicates(
            metric_name,
            mean_a,
            mean_b,
            values,
            confidence=confidence,
            n=reps.n,
            n_clusters=reps.n_clusters,
            n_seeds=n_seeds,
        )
    wins = sum(1.0 if r.difference > 0 else 0.5 if r.difference == 0 else 0.0 for r in rows)
    return ArmComparison(names[0], names[1], summary, wins / n_seeds, tuple(rows))
