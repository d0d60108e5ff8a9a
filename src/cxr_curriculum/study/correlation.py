"""Does the better model look at the lungs? Rank correlation of AUROC and lung attention.

The paper family's second claim is that curricular pretraining gives classifiers whose
saliency falls on the lungs rather than on confounders (DeGrave, Janizek & Lee, Nature
Machine Intelligence 2021). Across the fine-tuned models of a study this becomes one
number: Spearman's rank correlation between each model's test AUROC and its mean lung
attention (lift or energy inside the lungs, :class:`~cxr_curriculum.LungAttentionScorer`),
with a bootstrap interval that resamples whole (arm, seed) pretraining runs, since the
models of one run at several label fractions are not independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.stats import cluster_codes, midranks, percentile_interval, resample_clusters

__all__ = ["RankCorrelation", "rank_correlation", "spearman"]


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation of two ``(M,)`` samples (ties: average ranks).

    Returns NaN when either sample is constant or has fewer than two values.
    """
    x, y = torch.as_tensor(x).double().flatten(), torch.as_tensor(y).double().flatten()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length; got {x.numel()} and {y.numel()}")
    if x.numel() < 2:
        return float("nan")
    rx, ry = midranks(x), midranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(torch.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum()) / denominator if denominator > 0 else float("nan")


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman correlation with a cluster-bootstrap percentile interval.

    Attributes:
        rho: Spearman's rho on all models.
        low: Lower bound of the percentile interval.
        high: Upper bound.
        confidence: Coverage.
        n_models: Models (points) used.
        n_clusters: Independent pretraining runs resampled.
        n_valid: Replicates on which rho was defined.
    """

    rho: float
    low: float
    high: float
    confidence: float
    n_models: int
    n_clusters: int
    n_valid: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def rank_correlation(
    x: Sequence[float] | Tensor,
    y: Sequence[float] | Tensor,
    clusters: Sequence[Any] | None = None,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> RankCorrelation:
    """Spearman's rho of ``x`` and ``y`` with a percentile interval.

    Args:
        x: ``(M,)`` values (e.g. AUROC per model).
        y: ``(M,)`` values (e.g. mean lung lift per model).
        clusters: Cluster id per model (e.g. ``"arm/seed"``); whole clusters are resampled.
        n_resamples: Bootstrap replicates.
        confidence: Coverage.
        seed: Seed of the resampling generator.

    Returns:
        A :class:`RankCorrelation` (NaN bounds when fewer than 10 % of replicates are defined).
    """
    xt, yt = torch.as_tensor(x).double().flatten(), torch.as_tensor(y).double().flatten()
    keep = ~(torch.isnan(xt) | torch.isnan(yt))
    codes = cluster_codes(clusters, xt.numel())[keep]
    xt, yt = xt[keep], yt[keep]
    rho = spearman(xt, yt)
    codes = torch.unique(codes, return_inverse=True)[1] if codes.numel() else codes
    n_clusters = int(codes.max()) + 1 if codes.numel() else 0
    values = []
    if n_clusters >= 2:
        gen = torch.Generator().manual_seed(seed)
        members = [torch.nonzero(codes == c).flatten() for c in range(n_clusters)]
        for draw in resample_clusters(n_clusters, n_resamples, gen):
            idx = torch.cat([members[int(c)] for c in draw])
            r = spearman(xt[idx], yt[idx])
            if r == r:
                values.append(r)
    low = high = float("nan")
    if len(values) >= max(2, n_resamples // 10):
        low, high = percentile_interval(torch.tensor(values, dtype=torch.float64), confidence)
    return RankCorrelation(rho, low, high, confidence, int(xt.numel()), n_clusters, len(values))
