"""Bootstrap statistics for per-image scores, resampling patients where they are known.

Images of one patient are not independent, so confidence intervals resample *clusters*
(patients) with replacement and recompute the mean over all images of the drawn
clusters (the cluster bootstrap; Field & Welsh, JRSS-B 2007). Without cluster ids each
image is its own cluster. Intervals are percentile intervals (Efron & Tibshirani 1993).
NaN scores (empty maps) are dropped before resampling and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from cxr_curriculum.evaluation.bootstrap import cluster_codes

__all__ = ["BootstrapCI", "PairedComparison", "bootstrap_ci", "paired_bootstrap"]


@dataclass(frozen=True)
class BootstrapCI:
    """Mean of the valid values with a percentile bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int
    n_clusters: int
    n_nan: int
    level: float = 0.95

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """Paired difference ``mean(a - b)`` with its bootstrap interval and two-sided p-value."""

    metric: str
    diff: float
    low: float
    high: float
    p_value: float
    n: int
    n_clusters: int
    level: float = 0.95

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain dict for JSON."""
        return asdict(self)


def _cluster_means(values: Tensor, ids: Tensor, n_boot: int, seed: int) -> Tensor:
    """``(n_boot,)`` means over resampled clusters (values already NaN-free, float64)."""
    ids = torch.unique(ids, return_inverse=True)[1]
    n_clusters = int(ids.max()) + 1
    sums = torch.zeros(n_clusters, dtype=torch.float64).index_add_(0, ids, values)
    counts = torch.zeros(n_clusters, dtype=torch.float64).index_add_(
        0, ids, torch.ones_like(values)
    )
    gen = torch.Generator().manual_seed(seed)
    draw = torch.randint(0, n_clusters, (n_boot, n_clusters), generator=gen)
    return sums[draw].sum(1) / counts[draw].sum(1)


def _validate(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def bootstrap_ci(
    values: Tensor | Sequence[float],
    clusters: Sequence[str] | Sequence[int] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Mean and percentile bootstrap CI of ``values`` ``(N,)``, resampling ``clusters``.

    Args:
        values: Per-image scores; NaNs are dropped.
        clusters: Per-image cluster (patient) ids, or ``None`` for independent images.
        n_boot: Bootstrap resamples.
        level: Confidence level.
        seed: Seed of the resampling generator.
    """
    _validate(n_boot, level)
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    ids = cluster_codes(clusters, v.numel())
    ok = ~torch.isnan(v)
    v, ids = v[ok], ids[ok]
    n_nan = int((~ok).sum())
    if v.numel() == 0:
        nan = float("nan")
        return BootstrapCI(nan, nan, nan, 0, 0, n_nan, level)
    means = _cluster_means(v, ids, n_boot, seed)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, q).tolist()
    n_clusters = int(torch.unique(ids).numel())
    return BootstrapCI(float(v.mean()), low, high, v.numel(), n_clusters, n_nan, level)


def paired_bootstrap(
    a: Tensor | Sequence[float],
    b: Tensor | Sequence[float],
    clusters: Sequence[str] | Sequence[int] | None = None,
    metric: str = "value",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of two score vectors measured on the same images.

    The per-image differences ``d = a - b`` (pairs with a NaN on either side dropped) are
    resampled by cluster. The interval is the percentile interval of the resampled mean;
    the two-sided p-value tests ``mean(d) = 0`` with the bootstrap distribution shifted to
    the null, ``p = (1 + #{|d* - d| >= |d|}) / (1 + n_boot)`` (Hall & Wilson 1991).
    """
    _validate(n_boot, level)
    va = torch.as_tensor(a, dtype=torch.float64).flatten()
    vb = torch.as_tensor(b, dtype=torch.float64).flatten()
    if va.shape != vb.shape:
        raise ValueError(f"paired scores need equal lengths, got {va.numel()} and {vb.numel()}")
    ids = cluster_codes(clusters, va.numel())
    ok = ~(torch.isnan(va) | torch.isnan(vb))
    d, ids = (va - vb)[ok], ids[ok]
    if d.numel() == 0:
        nan = float("nan")
        return PairedComparison(metric, nan, nan, nan, nan, 0, 0, level)
    means = _cluster_means(d, ids, n_boot, seed)
    observed = float(d.mean())
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, q).tolist()
    extreme = int(((means - observed).abs() >= abs(observed) - 1e-15).sum())
    p = (1 + extreme) / (1 + n_boot)
    n_clusters = int(torch.unique(ids).numel())
    return PairedComparison(metric, observed, low, high, p, d.numel(), n_clusters, level)
