"""DeLong's test for two correlated AUROCs measured on the same items.

DeLong, DeLong & Clarke-Pearson, "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach", Biometrics 1988,
computed with midranks as in Sun & Xu, "Fast implementation of DeLong's algorithm",
IEEE Signal Processing Letters 2014.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["DeLongResult", "binary_inputs", "delong_components", "delong_test", "midranks"]


def midranks(x: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties sharing their average rank (float64)."""
    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return (ends - (counts.double() - 1.0) / 2.0)[inverse]


def binary_inputs(scores: Any, labels: Any) -> tuple[Tensor, Tensor]:
    """Validated ``(N,)`` float64 positive scores and int64 labels in ``{0, 1}``.

    Args:
        scores: ``(N,)`` positive-class scores, or ``(N, 2)`` class scores (column 1).
        labels: ``(N,)`` labels in ``{0, 1}``; both classes must be present.

    Raises:
        ValueError: On other shapes, non-binary labels or a single class.
    """
    s = torch.as_tensor(scores).detach().cpu().double()
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.ndim != 1:
        raise ValueError(
            f"paired AUROC tests are for binary problems: scores must be (N,) or (N, 2); "
            f"got {tuple(s.shape)}"
        )
    y = torch.as_tensor(labels).detach().cpu().long()
    if y.shape != s.shape:
        raise ValueError(f"scores {tuple(s.shape)} and labels {tuple(y.shape)} must match")
    if not torch.isin(y, torch.tensor([0, 1])).all():
        raise ValueError("labels must be in {0, 1}")
    if int(y.sum()) in (0, y.numel()):
        raise ValueError("AUROC comparison needs both classes in the labels")
    return s, y


def delong_components(scores: Any, labels: Any) -> tuple[float, Tensor, Tensor]:
    """DeLong's structural components of one model's AUROC.

    ``V10[i]`` is the fraction of negatives ranked below positive ``i`` (ties count
    one half) and ``V01[j]`` the fraction of positives ranked above negative ``j``;
    the AUROC is the mean of either.

    Args:
        scores: ``(N,)`` positive-class scores (or ``(N, 2)``).
        labels: ``(N,)`` labels in ``{0, 1}``.

    Returns:
        ``(auroc, V10 (n_pos,), V01 (n_neg,))`` in float64.
    """
    s, y = binary_inputs(scores, labels)
    pos, neg = s[y == 1], s[y == 0]
    n_pos, n_neg = pos.numel(), neg.numel()
    all_ranks = midranks(torch.cat([pos, neg]))
    v10 = (all_ranks[:n_pos] - midranks(pos)) / n_neg
    v01 = 1.0 - (all_ranks[n_pos:] - midranks(neg)) / n_pos
    return float(v10.mean()), v10, v01


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of ``AUROC_a - AUROC_b == 0``.

    Attributes:
        auroc_a: AUROC of model a.
        auroc_b: AUROC of model b.
        difference: ``auroc_a - auroc_b``.
        variance: DeLong's estimate of the variance of the difference.
        z: ``difference / sqrt(variance)`` (0 when both are 0).
        p_value: Two-sided p-value from the normal distribution.
    """

    auroc_a: float
    auroc_b: float
    difference: float
    variance: float
    z: float
    p_value: float

    def to_dict(self) -> dict[str, float]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def delong_test(scores_a: Any, scores_b: Any, labels: Any) -> DeLongResult:
    """DeLong's test for two correlated AUROCs measured on the same items.

    Args:
        scores_a: ``(N,)`` positive scores of model a.
        scores_b: ``(N,)`` positive scores of model b, for the same items.
        labels: ``(N,)`` labels in ``{0, 1}``.

    Returns:
        A :class:`DeLongResult`.
    """
    a, v10a, v01a = delong_components(scores_a, labels)
    b, v10b, v01b = delong_components(scores_b, labels)
    s10 = torch.cov(torch.stack([v10a, v10b])) if v10a.numel() > 1 else torch.zeros(2, 2)
    s01 = torch.cov(torch.stack([v01a, v01b])) if v01a.numel() > 1 else torch.zeros(2, 2)
    cov = s10.double() / v10a.numel() + s01.double() / v01a.numel()
    contrast = torch.tensor([1.0, -1.0], dtype=torch.float64)
    var = max(float(contrast @ cov @ contrast), 0.0)
    diff = a - b
    if var <= 1e-15:
        z = 0.0 if abs(diff) < 1e-12 else math.copysign(math.inf, diff)
    else:
        z = diff / math.sqrt(var)
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return DeLongResult(a, b, diff, var, z, p)
