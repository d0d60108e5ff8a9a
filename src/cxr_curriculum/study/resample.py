"""Vectorised resampling primitives of the across-run statistics.

A patient bootstrap replicate is a vector of *multiplicities*: how many times each test
image appears in the resample (every image of a drawn patient counts once per draw).
Metrics are then computed as weighted metrics on the full test set, which lets
thousands of replicates run as one ``(R, N)`` tensor operation instead of a Python loop
(Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, Ch. 6; clusters as in
Field & Welsh, JRSS-B 2007).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cxr_curriculum.stats import resample_clusters

__all__ = [
    "patient_weights",
    "seed_draws",
    "weighted_binary_auroc",
    "weighted_mean",
]


def patient_weights(codes: Tensor, n_resamples: int, generator: torch.Generator) -> Tensor:
    """Multiplicities of a patient (cluster) bootstrap.

    Args:
        codes: ``(N,)`` int64 patient code per image in ``0..P-1`` (see
            :func:`cxr_curriculum.stats.cluster_codes`).
        n_resamples: Replicates ``R``.
        generator: Source of randomness.

    Returns:
        ``(R, N)`` float64: how often image ``i`` is in replicate ``r`` (``P`` patients
        drawn with replacement per replicate; all images of a drawn patient count).
    """
    if codes.ndim != 1 or codes.numel() == 0:
        raise ValueError(f"codes must be a non-empty (N,) tensor; got {tuple(codes.shape)}")
    n_patients = int(codes.max()) + 1
    draws = resample_clusters(n_patients, n_resamples, generator)
    counts = torch.zeros(n_resamples, n_patients, dtype=torch.float64)
    counts.scatter_add_(1, draws, torch.ones_like(draws, dtype=torch.float64))
    return counts[:, codes]


def seed_draws(n_seeds: int, n_resamples: int, generator: torch.Generator) -> Tensor:
    """``(R, S)`` int64 seed indices drawn with replacement (the outer bootstrap level)."""
    if n_seeds < 1:
        raise ValueError(f"need at least one seed; got {n_seeds}")
    return resample_clusters(n_seeds, n_resamples, generator)


def weighted_binary_auroc(scores: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """AUROC of one model under many weightings of its test images.

    With integer weights this equals the AUROC of the test set in which image ``i`` is
    repeated ``weights[r, i]`` times (Mann-Whitney U with ties counting one half), so
    bootstrap replicates are rows of ``weights``.

    Args:
        scores: ``(N,)`` positive-class scores.
        labels: ``(N,)`` labels in ``{0, 1}``.
        weights: ``(R, N)`` non-negative weights.

    Returns:
        ``(R,)`` float64 AUROCs; NaN where a row gives one class zero weight.
    """
    s = scores.detach().double().flatten()
    y = labels.flatten().long()
    if weights.ndim != 2 or weights.shape[1] != s.numel() or y.numel() != s.numel():
        raise ValueError(
            f"scores (N,), labels (N,) and weights (R, N) must agree; got {tuple(s.shape)}, "
            f"{tuple(y.shape)}, {tuple(weights.shape)}"
        )
    w = weights.double()
    _, inverse = torch.unique(s, sorted=True, return_inverse=True)
    n_unique = int(inverse.max()) + 1
    pos = y == 1
    wp = torch.zeros(w.shape[0], n_unique, dtype=torch.float64)
    wn = torch.zeros_like(wp)
    wp.index_add_(1, inverse[pos], w[:, pos])
    wn.index_add_(1, inverse[~pos], w[:, ~pos])
    below = torch.cumsum(wn, 1) - wn
    numerator = (wp * (below + 0.5 * wn)).sum(1)
    denominator = wp.sum(1) * wn.sum(1)
    out = numerator / denominator
    return torch.where(denominator > 0, out, torch.full_like(out, math.nan))


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """``(R,)`` weighted means of ``values (N,)`` under ``weights (R, N)``, ignoring NaN."""
    v = values.double()
    ok = ~torch.isnan(v)
    w = weights.double() * ok
    total = w.sum(1)
    out = (w * torch.where(ok, v, torch.zeros_like(v))).sum(1) / total
    return torch.where(total > 0, out, torch.full_like(out, math.nan))
