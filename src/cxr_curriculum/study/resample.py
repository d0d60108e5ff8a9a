"""Vectorised resampling primitives of the across-run statistics.

A patient bootstrap replicate is a vector of *multiplicities*: how many times each test
image appears in the resample (every image of a drawn patient counts once per draw).
Metrics are then computed as weighted metrics on the full test set, which lets
thousands of replicates run as one ``(R, N)`` tensor operation instead of a Python loop
(Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, Ch. 6; clusters as in
Field & Welsh, JRSS-B 2007). The replicates of every seed under one shared patient
resample, which the seed-level intervals need, are built here too
(:func:`seed_replicates`; see :mod:`cxr_curriculum.study.statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.stats import Replicates, cluster_codes, resample_clusters

__all__ = [
    "PerSeedStatistic",
    "patient_weights",
    "seed_replicates",
    "weighted_binary_auroc",
    "weighted_mean",
]

#: ``per_seed(j, weights (R, N)) -> (R,)``: the statistic of seed ``j`` under weights.
PerSeedStatistic = Callable[[int, Tensor], Tensor]


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


def seed_replicates(
    per_seed: PerSeedStatistic,
    n_seeds: int,
    groups: Sequence[Any] | Tensor | None,
    n_items: int,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Replicates:
    """Every seed's statistic on the full test set and on patient resamples shared by all seeds.

    The resamples are the same for every seed (and, when ``per_seed`` is a difference,
    for both arms), because every model was tested on the same patients: this is what
    :func:`cxr_curriculum.stats.seed_components` needs to tell the shared test-set
    variation from the seed-to-seed one.

    Args:
        per_seed: ``per_seed(j, w)`` returns the ``(R,)`` statistic of seed ``j`` for
            ``(R, N)`` image weights ``w`` (all ones: the full test set); NaN if undefined.
        n_seeds: Number of seeds ``S`` (>= 1).
        groups: Patient id per test image (``None``: every image its own patient).
        n_items: Test images ``N``.
        n_resamples: Patient resamples ``R`` (>= 2).
        seed: Seed of the resampling generator.

    Returns:
        :class:`~cxr_curriculum.stats.Replicates` with ``estimate (S,)`` (each seed on
        the full test set), ``values (R, S)``, ``n = N`` and ``n_clusters`` = patients.
    """
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2; got {n_resamples}")
    if n_seeds < 1:
        raise ValueError(f"need at least one seed; got {n_seeds}")
    codes = cluster_codes(groups, n_items)
    ones = torch.ones(1, n_items, dtype=torch.float64)
    point = torch.cat([per_seed(j, ones).double().reshape(1) for j in range(n_seeds)])
    weights = patient_weights(codes, n_resamples, torch.Generator().manual_seed(seed))
    values = torch.stack([per_seed(j, weights).double() for j in range(n_seeds)], 1)
    return Replicates(point, values, n_items, int(codes.max()) + 1)
