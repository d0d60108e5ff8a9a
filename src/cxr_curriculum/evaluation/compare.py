"""Paired comparison of two classifiers' AUROC on the same test set.

DeLong, DeLong & Clarke-Pearson, "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach", Biometrics 1988,
computed with midranks as in Sun & Xu, "Fast implementation of DeLong's algorithm",
IEEE Signal Processing Letters 2014; and a paired bootstrap of the AUROC difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.evaluation.bootstrap import bootstrap_indices
from cxr_curriculum.evaluation.metrics import binary_auroc, midranks

__all__ = [
    "DeLongResult",
    "PairedComparison",
    "delong_components",
    "delong_test",
    "paired_auroc_test",
]


def _binary_inputs(scores: Any, labels: Any) -> tuple[Tensor, Tensor]:
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
    s, y = _binary_inputs(scores, labels)
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


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison of two models' AUROC on one test set.

    Attributes:
        auroc_a: AUROC of model a on the full test set.
        auroc_b: AUROC of model b.
        difference: ``auroc_a - auroc_b``.
        ci_low: Lower bound of the paired-bootstrap percentile interval of the difference.
        ci_high: Upper bound.
        p_bootstrap: Two-sided bootstrap p-value (twice the smaller tail mass at 0).
        delong: DeLong's test on the same items.
        n_resamples: Resamples drawn; ``n_valid`` of them held both classes.
        n_valid: Valid resamples.
    """

    auroc_a: float
    auroc_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_bootstrap: float
    delong: DeLongResult
    n_resamples: int
    n_valid: int

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready dict; DeLong's fields are prefixed ``delong_``."""
        out: dict[str, Any] = {k: v for k, v in asdict(self).items() if k != "delong"}
        out.update(
            {
                f"delong_{k}": v
                for k, v in self.delong.to_dict().items()
                if k in ("variance", "z", "p_value")
            }
        )
        return out


def paired_auroc_test(
    scores_a: Any,
    scores_b: Any,
    labels: Any,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[Any] | Tensor | None = None,
) -> PairedComparison:
    """Compare two models' AUROC on the same items: paired bootstrap and DeLong.

    Each resample draws items (or, with ``groups``, whole patients) once and scores
    both models on it, so the interval reflects the correlation between the models.

    Args:
        scores_a: ``(N,)`` or ``(N, 2)`` scores of model a.
        scores_b: Scores of model b for the same items in the same order.
        labels: ``(N,)`` labels in ``{0, 1}``.
        n_resamples: Bootstrap resamples (>= 1).
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling generator.
        groups: Optional patient id per item for a cluster bootstrap.

    Returns:
        A :class:`PairedComparison`.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence}")
    a, y = _binary_inputs(scores_a, labels)
    b, _ = _binary_inputs(scores_b, labels)
    delong = delong_test(a, b, y)
    gen = torch.Generator().manual_seed(seed)
    diffs = []
    for idx in bootstrap_indices(y.numel(), n_resamples, gen, groups):
        yi = y[idx]
        if int(yi.sum()) in (0, yi.numel()):
            continue
        diffs.append(binary_auroc(a[idx], yi) - binary_auroc(b[idx], yi))
    if not diffs:
        raise ValueError("no bootstrap resample held both classes")
    d = torch.tensor(diffs, dtype=torch.float64)
    alpha = (1.0 - confidence) / 2.0
    low, high = torch.quantile(d, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    tail = min(float((d <= 0).double().mean()), float((d >= 0).double().mean()))
    return PairedComparison(
        delong.auroc_a,
        delong.auroc_b,
        delong.difference,
        float(low),
        float(high),
        min(1.0, 2.0 * tail),
        delong,
        n_resamples,
        len(diffs),
    )
