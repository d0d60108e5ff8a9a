"""Patient-clustered intervals and paired comparisons of per-finding AUROC.

All findings and the macro mean are evaluated on the same resamples of whole patients
(:func:`cxr_curriculum.stats.bootstrap_replicates`). A resample in which a kept finding
has no positive or no negative leaves that finding's AUROC, and the macro mean,
undefined for that resample (counted in ``n_valid``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.evaluation.multilabel import (
    MultiLabelAUROC,
    column_aurocs,
    multilabel_auroc,
    multilabel_inputs,
)
from cxr_curriculum.stats import ConfidenceInterval, Groups, PairedComparison, bootstrap_replicates

__all__ = [
    "MultiLabelComparison",
    "MultiLabelIntervals",
    "multilabel_auroc_ci",
    "paired_multilabel_auroc_test",
]


@dataclass(frozen=True)
class MultiLabelIntervals:
    """Bootstrap intervals of each kept finding's AUROC and of the macro mean."""

    per_finding: dict[str, ConfidenceInterval]
    macro: ConfidenceInterval
    left_out: tuple[str, ...]


@dataclass(frozen=True)
class MultiLabelComparison:
    """Paired comparisons ``a - b`` of each kept finding's AUROC and of the macro mean."""

    per_finding: dict[str, PairedComparison]
    macro: PairedComparison
    left_out: tuple[str, ...]


def _with_macro(values: Tensor) -> Tensor:
    macro = values.mean() if not torch.isnan(values).any() else torch.tensor(math.nan)
    return torch.cat([values, macro.reshape(1).double()])


def _prepare(
    scores: Any,
    targets: Any,
    names: Sequence[str] | None,
    min_positives: int,
    min_negatives: int,
) -> tuple[MultiLabelAUROC, Tensor, Tensor, list[str], list[int]]:
    """Point estimate, checked ``(N, C)`` scores and targets, names, kept column indices."""
    point = multilabel_auroc(
        scores, targets, names, min_positives=min_positives, min_negatives=min_negatives
    )
    s, t, all_names = multilabel_inputs(scores, targets, names)
    return point, s, t, all_names, [all_names.index(n) for n in point.per_finding]


def multilabel_auroc_ci(
    scores: Any,
    targets: Any,
    names: Sequence[str] | None = None,
    *,
    groups: Groups = None,
    min_positives: int = 1,
    min_negatives: int = 1,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    min_valid: float = 0.5,
) -> MultiLabelIntervals:
    """Percentile bootstrap intervals of each finding's AUROC and of the macro mean.

    Args:
        scores: ``(N, C)`` scores.
        targets: ``(N, C)`` labels (1, 0, NaN unknown).
        names: ``C`` finding names.
        groups: Patient id per image: whole patients are resampled.
        min_positives: As in :func:`multilabel_auroc`.
        min_negatives: As in :func:`multilabel_auroc`.
        n_resamples: Bootstrap resamples.
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling.
        min_valid: Smallest fraction of resamples on which a finding must be defined.

    Returns:
        A :class:`MultiLabelIntervals`; the estimates equal :func:`multilabel_auroc`.
    """
    point, s, t, _, kept = _prepare(scores, targets, names, min_positives, min_negatives)
    reps = bootstrap_replicates(
        lambda x, y: _with_macro(column_aurocs(x, y, kept)),
        s,
        t,
        n_resamples=n_resamples,
        seed=seed,
        groups=groups,
    )
    labels = [*point.per_finding, "macro"]
    intervals = [
        ConfidenceInterval.from_replicates(
            float(reps.estimate[k]),
            reps.values[:, k],
            confidence=confidence,
            n=reps.n,
            n_clusters=reps.n_clusters,
            min_valid=min_valid,
            what=f"the AUROC of {label}",
        )
        for k, label in enumerate(labels)
    ]
    return MultiLabelIntervals(
        dict(zip(labels[:-1], intervals[:-1], strict=True)), intervals[-1], point.left_out
    )


def paired_multilabel_auroc_test(
    scores_a: Any,
    scores_b: Any,
    targets: Any,
    names: Sequence[str] | None = None,
    *,
    groups: Groups = None,
    min_positives: int = 1,
    min_negatives: int = 1,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    min_valid: float = 0.5,
) -> MultiLabelComparison:
    """Paired bootstrap comparison of two models' per-finding and macro AUROC.

    Each resample draws patients once and scores both models on it. Findings are
    kept as in :func:`multilabel_auroc` (the labels are shared by both models).

    Args:
        scores_a: ``(N, C)`` scores of model a.
        scores_b: ``(N, C)`` scores of model b for the same images.
        targets: ``(N, C)`` labels (1, 0, NaN unknown).
        names: ``C`` finding names.
        groups: Patient id per image.
        min_positives: As in :func:`multilabel_auroc`.
        min_negatives: As in :func:`multilabel_auroc`.
        n_resamples: Bootstrap resamples.
        confidence: Interval coverage.
        seed: Seed of the resampling.
        min_valid: Smallest fraction of resamples on which a finding must be defined.

    Returns:
        A :class:`MultiLabelComparison` of :class:`~cxr_curriculum.stats.PairedComparison`
        (``metric`` is ``"auroc[<finding>]"`` or ``"macro_auroc"``).
    """
    point, sa, t, all_names, kept = _prepare(scores_a, targets, names, min_positives, min_negatives)
    sb, _, _ = multilabel_inputs(scores_b, targets, all_names)

    def both(xa: Tensor, xb: Tensor, y: Tensor) -> Tensor:
        return torch.cat(
            [_with_macro(column_aurocs(xa, y, kept)), _with_macro(column_aurocs(xb, y, kept))]
        )

    reps = bootstrap_replicates(both, sa, sb, t, n_resamples=n_resamples, seed=seed, groups=groups)
    k = len(kept) + 1
    labels = [*(f"auroc[{n}]" for n in point.per_finding), "macro_auroc"]
    out = [
        PairedComparison.from_replicates(
            label,
            float(reps.estimate[j]),
            float(reps.estimate[k + j]),
            reps.values[:, j] - reps.values[:, k + j],
            confidence=confidence,
            n=reps.n,
            n_clusters=reps.n_clusters,
            min_valid=min_valid,
        )
        for j, label in enumerate(labels)
    ]
    return MultiLabelComparison(
        dict(zip(point.per_finding, out[:-1], strict=True)), out[-1], point.left_out
    )
