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
a mean is too small by ``(S - 1) / S``, so the reported interval is the percentile
interval of the replicates widened around the estimate by ``sqrt(S / (S - 1))``; the
raw percentile interval is reported next to it. When arms differ only by seed,
resampling patients counts part of the test-set noise twice (it is already in the
spread between seeds), so the interval errs on the wide side when seed variation is
small. ``tests/test_study_statistics.py`` checks the coverage by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.stats import cluster_codes, delong_test, percentile_interval
from cxr_curriculum.stats.intervals import check_confidence
from cxr_curriculum.study.resample import (
    patient_weights,
    seed_draws,
    weighted_binary_auroc,
)

__all__ = [
    "AcrossSeedInterval",
    "ArmComparison",
    "SeedDifference",
    "compare_arms",
    "two_level_interval",
]

#: ``per_seed(j, weights (R, N)) -> (R,)``: the statistic of seed ``j`` under weights.
PerSeedStatistic = Callable[[int, Tensor], Tensor]
#: ``metric(scores of one model, weights (R, N)) -> (R,)``, e.g. a task's weighted AUROC.
Metric = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class AcrossSeedInterval:
    """The mean over seeds of a statistic, with a two-level bootstrap interval.

    Attributes:
        estimate: Mean over seeds of the statistic on the full test set.
        low: Lower bound: the percentile bound moved away from ``estimate`` by the factor
            ``sqrt(S/(S-1))`` (NaN for one seed).
        high: Upper bound.
        se: Standard deviation of the two-level bootstrap replicates.
        percentile_low: Lower percentile bound of the replicates (no small-sample fix).
        percentile_high: Upper percentile bound.
        confidence: Coverage, e.g. 0.95.
        n_seeds: Seeds ``S``.
        n_resamples: Bootstrap replicates.
        n_valid: Replicates on which the statistic was defined.
    """

    estimate: float
    low: float
    high: float
    se: float
    percentile_low: float
    percentile_high: float
    confidence: float
    n_seeds: int
    n_resamples: int
    n_valid: int

    def covers(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies inside ``[low, high]``."""
        return bool(self.low <= value <= self.high)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


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
) -> AcrossSeedInterval:
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
        An :class:`AcrossSeedInterval`.
    """
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2; got {n_resamples}")
    check_confidence(confidence)
    ones = torch.ones(1, n_items, dtype=torch.float64)
    point = torch.cat([per_seed(j, ones).reshape(1) for j in range(n_seeds)]).double()
    gen = torch.Generator().manual_seed(seed)
    draws = seed_draws(n_seeds, n_resamples, gen)
    weights = patient_weights(cluster_codes(groups, n_items), n_resamples, gen)
    total = torch.zeros(n_resamples, dtype=torch.float64)
    for j in range(n_seeds):
        count = (draws == j).sum(1).double()
        rows = count > 0
        total[rows] += count[rows] * per_seed(j, weights[rows]).double()
    replicates = total / n_seeds
    valid = replicates[~torch.isnan(replicates)]
    if valid.numel() < 2:
        raise ValueError("fewer than two bootstrap replicates gave a defined statistic")
    p_low, p_high = percentile_interval(valid, confidence)
    estimate, se = float(point.mean()), float(valid.std())
    if n_seeds > 1:
        widen = math.sqrt(n_seeds / (n_seeds - 1))
        low = max(bounds[0], estimate - widen * (estimate - p_low))
        high = min(bounds[1], estimate + widen * (p_high - estimate))
    else:
        low = high = math.nan
    return AcrossSeedInterval(
        estimate, low, high, se, p_low, p_high, confidence, n_seeds, n_resamples, valid.numel()
    )


@dataclass(frozen=True)
class SeedDifference:
    """One seed's paired comparison (DeLong 1988 on the same test images; binary AUROC).

    Attributes:
        seed: The training seed.
        auroc_a: AUROC of arm a's model of this seed.
        auroc_b: AUROC of arm b's model.
        difference: ``auroc_a - auroc_b``.
        delong_z: DeLong's z statistic (NaN for other metrics).
        delong_p: Two-sided DeLong p-value, covering the test set only (NaN for other
            metrics).
    """

    seed: int
    auroc_a: float
    auroc_b: float
    difference: float
    delong_z: float
    delong_p: float


@dataclass(frozen=True)
class ArmComparison:
    """Arm a vs arm b across seeds.

    Attributes:
        arm_a: Name of arm a.
        arm_b: Name of arm b.
        difference: Mean over seeds of ``AUROC_a - AUROC_b`` with its two-level interval.
        share_a_wins: Share of seeds in which arm a's AUROC is higher (ties count half).
        per_seed: The per-seed DeLong comparisons.
    """

    arm_a: str
    arm_b: str
    difference: AcrossSeedInterval
    share_a_wins: float
    per_seed: tuple[SeedDifference, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "arm_a": self.arm_a,
            "arm_b": self.arm_b,
            "difference": self.difference.to_dict(),
            "share_a_wins": self.share_a_wins,
            "per_seed": [asdict(s) for s in self.per_seed],
        }


def compare_arms(
    scores_a: Tensor,
    scores_b: Tensor,
    labels: Tensor,
    groups: Sequence[Any] | Tensor | None = None,
    *,
    metric: Metric | None = None,
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
            (then each seed also gets DeLong's paired test; otherwise its fields are NaN).
        seeds: The seed values (for the per-seed rows); default ``0..S-1``.
        names: ``(arm a, arm b)``.
        n_resamples: Bootstrap replicates.
        confidence: Coverage.
        seed: Seed of the resampling generator.

    Returns:
        An :class:`ArmComparison`.
    """
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

    interval = two_level_interval(
        diff,
        n_seeds,
        groups,
        n_items,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        bounds=(-1.0, 1.0),
    )
    rows = []
    ones = torch.ones(1, n_items, dtype=torch.float64)
    for j, s in enumerate(seed_values):
        if metric is None:
            d = delong_test(a[j], b[j], y)
            rows.append(SeedDifference(int(s), d.auroc_a, d.auroc_b, d.difference, d.z, d.p_value))
        else:
            va, vb = float(fn(a[j], ones)[0]), float(fn(b[j], ones)[0])
            rows.append(SeedDifference(int(s), va, vb, va - vb, math.nan, math.nan))
    wins = sum(1.0 if r.difference > 0 else 0.5 if r.difference == 0 else 0.0 for r in rows)
    wins /= n_seeds
    return ArmComparison(names[0], names[1], interval, wins, tuple(rows))
