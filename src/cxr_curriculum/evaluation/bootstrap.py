"""Bootstrap confidence intervals, optionally resampling whole patients (clusters).

Efron & Tibshirani, "An Introduction to the Bootstrap", 1993 (percentile interval,
Ch. 13); resampling clusters rather than images when one patient contributes several
images (Field & Welsh, "Bootstrapping clustered data", JRSS-B 2007).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["ConfidenceInterval", "bootstrap_ci", "bootstrap_indices", "cluster_codes"]


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a bootstrap percentile interval.

    Attributes:
        estimate: The metric on the full sample.
        low: Lower bound of the interval.
        high: Upper bound of the interval.
        confidence: Coverage, e.g. 0.95.
        n_resamples: Resamples drawn.
        n_valid: Resamples on which the metric was defined (e.g. both classes present).
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_valid: int

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.estimate:.3f} ({pct}% CI {self.low:.3f}-{self.high:.3f})"


def cluster_codes(groups: Sequence[Any] | Tensor | None, n: int) -> Tensor:
    """Map per-item cluster ids (patient ids) to codes ``0..C-1`` in first-seen order.

    Args:
        groups: One hashable id per item, a tensor of ids, or ``None`` (every item its
            own cluster).
        n: Number of items.

    Returns:
        ``(n,)`` int64 codes; items with equal ids share a code.
    """
    if groups is None:
        return torch.arange(n)
    if len(groups) != n:
        raise ValueError(
            f"groups (cluster ids) must have one entry per item ({n}); got {len(groups)}"
        )
    if isinstance(groups, Tensor):
        return torch.unique(groups, return_inverse=True)[1]
    codes: dict[Any, int] = {}
    return torch.tensor([codes.setdefault(g, len(codes)) for g in groups], dtype=torch.long)


def bootstrap_indices(
    n: int,
    n_resamples: int,
    generator: torch.Generator,
    groups: Sequence[Any] | Tensor | None = None,
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
    if groups is None:
        draws = torch.randint(0, n, (n_resamples, n), generator=generator)
        return list(draws.unbind(0))
    codes = cluster_codes(groups, n)
    n_groups = int(codes.max()) + 1
    order = torch.argsort(codes, stable=True)
    counts = torch.bincount(codes, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    # members[g, j]: j-th item of group g, padded with -1 to the largest group.
    rank = torch.arange(n) - starts[codes[order]]
    members = torch.full((n_groups, int(counts.max())), -1, dtype=torch.long)
    members[codes[order], rank] = order
    out = []
    for draw in torch.randint(0, n_groups, (n_resamples, n_groups), generator=generator):
        picked = members[draw].flatten()
        out.append(picked[picked >= 0])
    return out


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: Any,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[Any] | Tensor | None = None,
    min_valid: float = 0.9,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of ``metric(*arrays)``.

    Every array is indexed with the same resample, so paired inputs (scores and
    labels) stay paired. Resamples on which the metric raises ``ValueError`` (for
    example AUROC on a resample holding one class) are skipped and counted.

    Args:
        metric: A function of the arrays returning a float, e.g. :func:`auroc`.
        *arrays: Tensors (or array-likes) with the same first dimension ``N``.
        n_resamples: Number of resamples (>= 1).
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling generator (the same seed gives the same interval).
        groups: Optional cluster id per item (patient ids) for a cluster bootstrap.
        min_valid: Smallest fraction of resamples that must be valid.

    Returns:
        A :class:`ConfidenceInterval`.

    Raises:
        ValueError: On bad arguments, arrays of different lengths, or too few valid
            resamples.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array to resample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    tensors = [torch.as_tensor(a) for a in arrays]
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"arrays differ in length: {[t.shape[0] for t in tensors]}")
    estimate = float(metric(*tensors))
    gen = torch.Generator().manual_seed(seed)
    values = []
    for idx in bootstrap_indices(n, n_resamples, gen, groups):
        try:
            values.append(float(metric(*(t[idx] for t in tensors))))
        except ValueError:
            continue
    if len(values) < max(1, min_valid * n_resamples):
        raise ValueError(
            f"only {len(values)} of {n_resamples} resamples gave a defined metric "
            f"(min_valid={min_valid}); use more items or a stratified design"
        )
    v = torch.tensor(values, dtype=torch.float64)
    alpha = (1.0 - confidence) / 2.0
    low, high = torch.quantile(v, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    return ConfidenceInterval(
        estimate, float(low), float(high), confidence, n_resamples, len(values)
    )
