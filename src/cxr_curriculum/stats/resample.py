"""Drawing bootstrap resamples, optionally by whole clusters (patients).

Images of one patient are not independent, so a resample draws *clusters* with
replacement and keeps every item of each drawn cluster (the cluster bootstrap; Field &
Welsh, "Bootstrapping clustered data", JRSS-B 2007). Without cluster ids every item is
its own cluster, which is the ordinary bootstrap (Efron & Tibshirani, "An Introduction
to the Bootstrap", 1993).

Every bootstrap of this package draws through :func:`resample_clusters`, so two
functions given the same seed and the same clusters see the same resamples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Groups",
    "bootstrap_indices",
    "cluster_codes",
    "expand_clusters",
    "resample_clusters",
]

#: Cluster ids: one hashable id per item (patient ids), a tensor of ids, or ``None``
#: (every item its own cluster).
Groups = Sequence[Any] | Tensor | None


def cluster_codes(groups: Groups, n: int) -> Tensor:
    """Map per-item cluster ids (patient ids) to codes ``0..G-1`` in first-seen order.

    Args:
        groups: One hashable id per item, a tensor of ids, or ``None`` (every item its
            own cluster).
        n: Number of items.

    Returns:
        ``(n,)`` int64 codes; items with equal ids share a code, and the first item of
        cluster ``g`` comes before the first item of cluster ``g + 1``.

    Raises:
        ValueError: If ``groups`` does not have ``n`` entries.
    """
    if groups is None:
        return torch.arange(n)
    if len(groups) != n:
        raise ValueError(
            f"groups (cluster ids) must have one entry per item ({n}); got {len(groups)}"
        )
    ids = groups.tolist() if isinstance(groups, Tensor) else groups
    codes: dict[Any, int] = {}
    return torch.tensor([codes.setdefault(g, len(codes)) for g in ids], dtype=torch.long)


def resample_clusters(n_clusters: int, n_resamples: int, generator: torch.Generator) -> Tensor:
    """Draw ``n_resamples`` bootstrap samples of ``n_clusters`` clusters with replacement.

    Args:
        n_clusters: Number of clusters ``G`` (>= 1).
        n_resamples: Number of resamples ``B`` (>= 1).
        generator: Source of randomness.

    Returns:
        ``(B, G)`` int64 cluster codes; row ``b`` lists the clusters of resample ``b``.
    """
    if n_clusters < 1:
        raise ValueError("the bootstrap needs at least one item")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    return torch.randint(0, n_clusters, (n_resamples, n_clusters), generator=generator)


def expand_clusters(codes: Tensor, draws: Tensor) -> list[Tensor]:
    """Turn cluster draws into item indices.

    Args:
        codes: ``(n,)`` cluster code per item (:func:`cluster_codes`).
        draws: ``(B, G)`` drawn cluster codes (:func:`resample_clusters`).

    Returns:
        ``B`` int64 index tensors: every item of every drawn cluster, a cluster drawn
        twice contributing its items twice. Lengths vary when clusters differ in size.
    """
    n = codes.numel()
    n_groups = int(codes.max()) + 1
    order = torch.argsort(codes, stable=True)
    counts = torch.bincount(codes, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    # members[g, j]: j-th item of cluster g, padded with -1 to the largest cluster.
    rank = torch.arange(n) - starts[codes[order]]
    members = torch.full((n_groups, int(counts.max())), -1, dtype=torch.long)
    members[codes[order], rank] = order
    out = []
    for row in draws:
        picked = members[row].flatten()
        out.append(picked[picked >= 0])
    return out


def bootstrap_indices(
    n: int,
    n_resamples: int,
    generator: torch.Generator,
    groups: Groups = None,
) -> list[Tensor]:
    """Draw bootstrap resamples of item indices.

    Args:
        n: Number of items.
        n_resamples: Number of resamples.
        generator: Source of randomness.
        groups: Optional cluster id per item (e.g. patient ids); whole clusters are
            drawn with replacement, so a resample may hold a different number of items.

    Returns:
        ``n_resamples`` int64 index tensors.
    """
    if n < 1:
        raise ValueError("the bootstrap needs at least one item")
    codes = cluster_codes(groups, n)
    draws = resample_clusters(int(codes.max()) + 1, n_resamples, generator)
    if groups is None:
        return list(draws.unbind(0))
    return expand_clusters(codes, draws)
