"""Paired comparison of two models (or two settings) measured on the same items.

One class, :class:`PairedComparison`, is returned by every paired test of the package
(AUROC of two classifiers, lung-attention scores of two saliency maps, per-finding
AUROC, study arms and stage orders over seeds). Each resample draws items (or whole
patients) once and evaluates the statistic for both sides on it, so the interval of the
difference reflects the correlation between the two (the paired bootstrap; Efron &
Tibshirani, "An Introduction to the Bootstrap", 1993).

The p-value is always the test that inverts the comparison's interval. For a bootstrap
percentile interval (one trained model per side, ``n_seeds`` None) it is
:func:`bootstrap_p_value`: with ``B`` valid replicates ``d*_1..d*_B`` of the difference,
``p = min(1, 2 * (1 + min(#{d*_b <= 0}, #{d*_b >= 0})) / (B + 1))``: twice the
smaller tail mass of the replicates at 0, the two-sided test that inverts the
percentile interval (without the add-one terms it is the smallest ``alpha`` for which
the equal-tailed ``1 - alpha`` interval excludes 0, up to quantile interpolation;
Efron & Tibshirani 1993, Ch. 16), with the Monte Carlo add-one correction (Davison &
Hinkley, "Bootstrap Methods and their Application", 1997, Ch. 4) so that it is never
0: its smallest value is ``2 / (B + 1)``. For a comparison over training seeds
(``n_seeds`` set; :func:`cxr_curriculum.stats.seed_comparison`) it is the generalized
p-value of :func:`cxr_curriculum.stats.seed_p_value`, which has no floor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.stats.bootstrap import Statistic, bootstrap_replicates
from cxr_curriculum.stats.delong import DeLongResult
from cxr_curriculum.stats.intervals import check_confidence, count_valid, percentile_interval
from cxr_curriculum.stats.resample import Groups

__all__ = ["PairedComparison", "bootstrap_p_value", "paired_bootstrap"]


def bootstrap_p_value(differences: Tensor) -> float:
    """Two-sided bootstrap p-value of ``difference == 0`` from its replicates.

    ``p = min(1, 2 * (1 + min(#{d* <= 0}, #{d* >= 0})) / (B + 1))`` over the ``B``
    non-NaN replicates ``d*`` (see the module docstring).

    Args:
        differences: ``(B,)`` bootstrap replicates of the difference; NaN ignored.

    Returns:
        The p-value in ``[2 / (B + 1), 1]``; NaN if no replicate is valid.
    """
    d = differences.detach().double().flatten()
    d = d[~torch.isnan(d)]
    if d.numel() == 0:
        return math.nan
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return min(1.0, 2.0 * (1 + tail) / (d.numel() + 1))


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison ``a - b`` of one statistic measured on the same items.

    Attributes:
        metric: What was compared, e.g. ``"auroc"`` or ``"lift"``.
        estimate_a: The statistic of a on the full sample.
        estimate_b: The statistic of b.
        difference: ``estimate_a - estimate_b``.
        low: Lower bound of the paired-bootstrap percentile interval of the difference.
        high: Upper bound.
        p_value: Two-sided p-value of ``difference == 0``, the test that inverts
            ``[low, high]``: :func:`bootstrap_p_value` for a bootstrap percentile
            interval, the generalized p-value of :func:`cxr_curriculum.stats.seed_comparison` when
            ``n_seeds`` is set.
        confidence: Nominal coverage of ``[low, high]``, e.g. 0.95.
        n: Items compared.
        n_clusters: Clusters (patients) among them.
        n_resamples: Bootstrap resamples drawn.
        n_valid: Resamples on which both statistics were defined.
        delong: DeLong's test on the same items (AUROC comparisons), else None.
        n_seeds: What the interval covers. ``None``: the test items only (two trained
            models; a paired patient bootstrap). ``S``: ``estimate_a``/``estimate_b``
            are means over ``S`` training seeds, paired by seed, and the interval and
            p-value are the seed-level interval and generalized p-value of
            :func:`cxr_curriculum.stats.seed_comparison` (used by
            :func:`cxr_curriculum.study.compare_arms`), which also cover the training
            randomness; ``n``/``n_clusters`` then count test images/patients and
            ``n_resamples``/``n_valid`` the patient resamples of its test-set component.
        seed_variance: The seed component of the difference's variance, ``s**2 / S``
            (seed-level comparisons only).
        test_variance: The shared test-set component (seed-level comparisons only).
    """

    metric: str
    estimate_a: float
    estimate_b: float
    difference: float
    low: float
    high: float
    p_value: float
    confidence: float = 0.95
    n: int = 0
    n_clusters: int = 0
    n_resamples: int = 0
    n_valid: int = 0
    delong: DeLongResult | None = None
    n_seeds: int | None = None
    seed_variance: float | None = None
    test_variance: float | None = None

    @classmethod
    def from_replicates(
        cls,
        metric: str,
        estimate_a: float,
        estimate_b: float,
        differences: Tensor,
        *,
        confidence: float = 0.95,
        n: int = 0,
        n_clusters: int = 0,
        min_valid: float = 0.0,
        delong: DeLongResult | None = None,
        n_seeds: int | None = None,
    ) -> PairedComparison:
        """Build the comparison from ``(B,)`` replicates of the difference (NaN = undefined).

        This is how every paired bootstrap test of the package ends, and the building
        block for other resampling designs: draw the replicates, then call this (the
        percentile interval and :func:`bootstrap_p_value`; for means over training seeds
        use :func:`cxr_curriculum.stats.seed_comparison` instead).

        Raises:
            ValueError: If fewer than ``max(1, min_valid * B)`` replicates are valid.
        """
        check_confidence(confidence)
        d = differences.detach().double().flatten()
        n_valid = count_valid(d, min_valid, f"{metric} for both sides")
        low, high = percentile_interval(d, confidence)
        return cls(
            metric,
            float(estimate_a),
            float(estimate_b),
            float(estimate_a) - float(estimate_b),
            low,
            high,
            bootstrap_p_value(d),
            confidence,
            n,
            n_clusters,
            d.numel(),
            n_valid,
            delong,
            n_seeds,
        )

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        over = "" if self.n_seeds is None else f" over {self.n_seeds} seeds"
        return (
            f"{self.metric}: {self.estimate_a:.3f} - {self.estimate_b:.3f} = "
            f"{self.difference:+.3f}{over} ({pct}% CI {self.low:+.3f} to {self.high:+.3f}), "
            f"p = {self.p_value:.3g}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict; DeLong's variance, z and p-value are prefixed ``delong_``."""
        out: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "delong"}
        if self.delong is not None:
            d = self.delong.to_dict()
            out.update({f"delong_{k}": d[k] for k in ("variance", "z", "p_value")})
        return out


def paired_bootstrap(
    statistic: Statistic,
    a: Any,
    b: Any,
    *shared: Any,
    groups: Groups = None,
    metric: str = "value",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    min_valid: float = 0.5,
) -> PairedComparison:
    """Compare ``statistic(a, *shared)`` with ``statistic(b, *shared)`` by a paired bootstrap.

    Example: ``paired_bootstrap(binary_auroc, scores_a, scores_b, labels,
    groups=patient_ids, metric="auroc")``.

    Args:
        statistic: A scalar function ``(x, *shared) -> float``; ``ValueError`` or NaN
            where undefined (such resamples are skipped and counted).
        a: ``(N, ...)`` inputs of side a (e.g. model a's scores).
        b: ``(N, ...)`` inputs of side b, for the same items in the same order.
        *shared: Further ``(N, ...)`` arrays both sides use (e.g. labels).
        groups: Optional cluster id per item (patient ids): whole clusters are drawn.
        metric: Name recorded in the result.
        n_resamples: Bootstrap resamples (>= 1).
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling generator.
        min_valid: Smallest fraction of resamples on which both sides must be defined.

    Returns:
        A :class:`PairedComparison`.

    Raises:
        ValueError: On misaligned inputs, a statistic undefined on the full sample, or
            too few valid resamples.
    """
    check_confidence(confidence)

    def both(x: Tensor, y: Tensor, *rest: Tensor) -> Tensor:
        return torch.tensor(
            [float(statistic(x, *rest)), float(statistic(y, *rest))], dtype=torch.float64
        )

    reps = bootstrap_replicates(
        both, a, b, *shared, n_resamples=n_resamples, seed=seed, groups=groups
    )
    est_a, est_b = (float(v) for v in reps.estimate)
    if math.isnan(est_a) or math.isnan(est_b):
        raise ValueError(f"{metric} is undefined (NaN) on the full sample")
    return PairedComparison.from_replicates(
        metric,
        est_a,
        est_b,
        reps.values[:, 0] - reps.values[:, 1],
        confidence=confidence,
        n=reps.n,
        n_clusters=reps.n_clusters,
        min_valid=min_valid,
    )
