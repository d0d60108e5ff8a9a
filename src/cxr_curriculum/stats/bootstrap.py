"""The clustered bootstrap of any statistic of per-item arrays.

:func:`bootstrap_replicates` is the engine: it evaluates ``statistic(*arrays)`` on the
full sample and on resamples drawn by :func:`~cxr_curriculum.stats.bootstrap_indices`
(whole patients when ``groups`` is given). Every array is indexed with the same
resample, so paired inputs (scores and labels, two models' scores) stay paired. The
statistic may return one number or a vector (e.g. one AUROC per finding);
:func:`bootstrap_ci` turns a scalar one into a :class:`ConfidenceInterval`.

Efron & Tibshirani, "An Introduction to the Bootstrap", 1993; Field & Welsh,
"Bootstrapping clustered data", JRSS-B 2007.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from cxr_curriculum.stats.intervals import ConfidenceInterval, check_confidence
from cxr_curriculum.stats.resample import Groups, bootstrap_indices, cluster_codes

__all__ = ["Replicates", "Statistic", "bootstrap_ci", "bootstrap_replicates"]

#: A statistic: a function of index-aligned arrays returning a float or a ``(K,)``
#: tensor; it raises ``ValueError`` (or returns NaN) where it is undefined.
Statistic = Callable[..., float | Tensor]


class Replicates(NamedTuple):
    """A statistic on the full sample and on every bootstrap resample.

    Attributes:
        estimate: ``(K,)`` float64 value on the full sample.
        values: ``(B, K)`` float64 values on the ``B`` resamples; NaN where the
            statistic was undefined (it raised ``ValueError`` or returned NaN).
        n: Number of items.
        n_clusters: Number of clusters (patients); ``n`` without cluster ids.
    """

    estimate: Tensor
    values: Tensor
    n: int
    n_clusters: int


def _as_vector(value: float | Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(-1)


def _aligned(arrays: tuple[Any, ...]) -> list[Tensor]:
    if not arrays:
        raise ValueError("the bootstrap needs at least one array to resample")
    tensors = [torch.as_tensor(a) for a in arrays]
    if any(t.ndim == 0 for t in tensors):
        raise ValueError("arrays to resample must have a first (item) dimension")
    lengths = [t.shape[0] for t in tensors]
    if len(set(lengths)) != 1:
        raise ValueError(f"arrays differ in length (first dimension): {lengths}")
    return tensors


def bootstrap_replicates(
    statistic: Statistic,
    *arrays: Any,
    n_resamples: int = 1000,
    seed: int = 0,
    groups: Groups = None,
) -> Replicates:
    """Evaluate ``statistic(*arrays)`` on the sample and on bootstrap resamples.

    Args:
        statistic: A function of the arrays returning a float or a ``(K,)`` tensor.
            A ``ValueError`` on a resample marks that whole resample undefined (NaN);
            a NaN entry marks one component undefined.
        *arrays: Tensors (or array-likes) with the same first dimension ``N``; extra
            dimensions are kept (``(N, C)`` scores, ``(N, S)`` one column per seed).
        n_resamples: Number of resamples ``B`` (>= 1).
        seed: Seed of the resampling generator (the same seed and groups give the
            same resamples in every function of this package).
        groups: Optional cluster id per item (patient ids): whole clusters are drawn.

    Returns:
        :class:`Replicates` with ``estimate (K,)`` and ``values (B, K)``.

    Raises:
        ValueError: On misaligned arrays, bad ``groups``, or a statistic that is
            undefined on the full sample.
    """
    tensors = _aligned(arrays)
    n = tensors[0].shape[0]
    codes = cluster_codes(groups, n)
    estimate = _as_vector(statistic(*tensors))
    gen = torch.Generator().manual_seed(seed)
    values = torch.full((n_resamples, estimate.numel()), math.nan, dtype=torch.float64)
    for b, idx in enumerate(bootstrap_indices(n, n_resamples, gen, groups)):
        try:
            value = _as_vector(statistic(*(t[idx] for t in tensors)))
        except ValueError:
            continue
        if value.shape != estimate.shape:
            raise ValueError(
                f"the statistic returned {value.numel()} values on a resample and "
                f"{estimate.numel()} on the full sample; it must return a fixed shape"
            )
        values[b] = value
    n_clusters = int(codes.max()) + 1 if n else 0
    return Replicates(estimate, values, n, n_clusters)


def bootstrap_ci(
    statistic: Statistic,
    *arrays: Any,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Groups = None,
    min_valid: float = 0.9,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of a scalar ``statistic(*arrays)``.

    Resamples on which the statistic is undefined (for example AUROC on a resample
    holding one class) are skipped and counted in ``n_valid``.

    Args:
        statistic: A function of the arrays returning a float, e.g.
            :func:`cxr_curriculum.evaluation.auroc`.
        *arrays: Tensors (or array-likes) with the same first dimension ``N``.
        n_resamples: Number of resamples (>= 1).
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling generator (the same seed gives the same interval).
        groups: Optional cluster id per item (patient ids) for a cluster bootstrap.
        min_valid: Smallest fraction of resamples that must be valid.

    Returns:
        A :class:`ConfidenceInterval`.

    Raises:
        ValueError: On bad arguments, arrays of different lengths, a statistic that
            is not scalar, or too few valid resamples.
    """
    check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    reps = bootstrap_replicates(
        statistic, *arrays, n_resamples=n_resamples, seed=seed, groups=groups
    )
    if reps.estimate.numel() != 1:
        raise ValueError(
            f"bootstrap_ci needs a scalar statistic; this one returned "
            f"{reps.estimate.numel()} values (use bootstrap_replicates for vectors)"
        )
    return ConfidenceInterval.from_replicates(
        float(reps.estimate[0]),
        reps.values[:, 0],
        confidence=confidence,
        n=reps.n,
        n_clusters=reps.n_clusters,
        min_valid=min_valid,
    )
