"""The cluster bootstrap of a mean of per-item values, vectorised.

Per-image scores (lung-attention metrics, per-image losses) are summarised by their
mean over images; a resample of patients gives the mean over all images of the drawn
patients. Instead of gathering items per resample, this sums each cluster once and
combines cluster sums: it draws the same resamples as
:func:`~cxr_curriculum.stats.bootstrap_ci` with the same seed and clusters, so
``mean_ci(v, g)`` equals ``bootstrap_ci(mean, v, groups=g)`` up to rounding (tested).
NaN values (e.g. an empty saliency map) are dropped first and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from cxr_curriculum.stats.intervals import ConfidenceInterval, check_confidence
from cxr_curriculum.stats.paired import PairedComparison
from cxr_curriculum.stats.resample import Groups, cluster_codes, resample_clusters

__all__ = ["compare_means", "mean_ci"]

Values = Tensor | Sequence[float]


def _kept_groups(groups: Groups, n: int, keep: Tensor) -> list[object] | None:
    """Cluster ids of the kept items (codes are re-made after NaN items are dropped)."""
    if groups is None:
        return None
    codes = cluster_codes(groups, n)  # validates the length
    return codes[keep].tolist()


def _cluster_mean_replicates(
    values: Tensor, groups: list[object] | None, n_resamples: int, seed: int
) -> tuple[Tensor, int]:
    """``(B,)`` means over resampled clusters and the number of clusters."""
    codes = cluster_codes(groups, values.numel())
    n_clusters = int(codes.max()) + 1
    sums = torch.zeros(n_clusters, dtype=torch.float64).index_add_(0, codes, values)
    counts = torch.bincount(codes, minlength=n_clusters).double()
    gen = torch.Generator().manual_seed(seed)
    draws = resample_clusters(n_clusters, n_resamples, gen)
    return sums[draws].sum(1) / counts[draws].sum(1), n_clusters


def mean_ci(
    values: Values,
    groups: Groups = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ConfidenceInterval:
    """Mean of ``values`` with a percentile cluster-bootstrap interval.

    Args:
        values: ``(N,)`` per-item values; NaNs are dropped and counted in ``n_nan``.
        groups: Per-item cluster (patient) ids, or ``None`` for independent items.
        n_resamples: Bootstrap resamples (>= 1).
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling generator.

    Returns:
        A :class:`ConfidenceInterval` whose ``estimate`` is the mean over the valid
        items; all fields NaN / 0 if every value is NaN.
    """
    check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    keep = ~torch.isnan(v)
    kept_groups = _kept_groups(groups, v.numel(), keep)
    n_nan = int((~keep).sum())
    v = v[keep]
    if v.numel() == 0:
        nan = math.nan
        return ConfidenceInterval(nan, nan, nan, confidence, 0, 0, n_resamples, 0, n_nan)
    means, n_clusters = _cluster_mean_replicates(v, kept_groups, n_resamples, seed)
    return ConfidenceInterval.from_replicates(
        float(v.mean()),
        means,
        confidence=confidence,
        n=v.numel(),
        n_clusters=n_clusters,
        n_nan=n_nan,
    )


def compare_means(
    a: Values,
    b: Values,
    groups: Groups = None,
    *,
    metric: str = "value",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of the means of two value vectors measured on the same items.

    Pairs with a NaN on either side are dropped. The per-item differences ``a - b``
    are resampled by cluster; the interval is the percentile interval of their mean
    and the p-value is :func:`~cxr_curriculum.stats.bootstrap_p_value`.

    Args:
        a: ``(N,)`` values of side a.
        b: ``(N,)`` values of side b for the same items.
        groups: Per-item cluster (patient) ids, or ``None``.
        metric: Name recorded in the result.
        n_resamples: Bootstrap resamples (>= 1).
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling generator.

    Returns:
        A :class:`PairedComparison` (fields NaN / 0 if no pair is valid).
    """
    check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    va = torch.as_tensor(a, dtype=torch.float64).flatten()
    vb = torch.as_tensor(b, dtype=torch.float64).flatten()
    if va.shape != vb.shape:
        raise ValueError(f"paired values need equal lengths; got {va.numel()} and {vb.numel()}")
    keep = ~(torch.isnan(va) | torch.isnan(vb))
    kept_groups = _kept_groups(groups, va.numel(), keep)
    va, vb = va[keep], vb[keep]
    if va.numel() == 0:
        nan = math.nan
        return PairedComparison(metric, nan, nan, nan, nan, nan, nan, confidence, 0, 0)
    means, n_clusters = _cluster_mean_replicates(va - vb, kept_groups, n_resamples, seed)
    return PairedComparison.from_replicates(
        metric,
        float(va.mean()),
        float(vb.mean()),
        means,
        confidence=confidence,
        n=va.numel(),
        n_clusters=n_clusters,
    )
