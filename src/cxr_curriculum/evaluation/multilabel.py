"""Per-finding AUROC of multi-label predictions.

Chest X-ray datasets label several findings per image (NIH ChestX-ray14: 14;
CheXpert and MIMIC-CXR: 14 observations, some unknown). The usual summary (Wang et
al., CVPR 2017; Irvin et al., AAAI 2019) is the AUROC of each finding over the images
whose label for it is known, and their unweighted (macro) mean. Unknown labels are NaN
in ``targets`` and are left out finding by finding, never counted as negatives.
Findings with too few positives or negatives are left out of the mean and named.
Intervals and paired comparisons: :mod:`cxr_curriculum.evaluation.multilabel_stats`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.stats import midranks

__all__ = ["MultiLabelAUROC", "column_aurocs", "multilabel_auroc", "multilabel_inputs"]


@dataclass(frozen=True)
class MultiLabelAUROC:
    """Per-finding AUROC and its macro mean.

    Attributes:
        per_finding: Finding name -> AUROC, for the findings kept.
        macro: Unweighted mean of ``per_finding``.
        left_out: Findings left out for too few positives or negatives (known labels).
        n_positive: Finding name -> images labelled positive (every finding).
        n_negative: Finding name -> images labelled negative (every finding).
    """

    per_finding: dict[str, float]
    macro: float
    left_out: tuple[str, ...]
    n_positive: dict[str, int]
    n_negative: dict[str, int]


def multilabel_inputs(
    scores: Any, targets: Any, names: Sequence[str] | None
) -> tuple[Tensor, Tensor, list[str]]:
    """Validated ``(N, C)`` float64 scores and targets (0, 1, NaN) and ``C`` names."""
    s = torch.as_tensor(scores).detach().cpu().double()
    t = torch.as_tensor(targets).detach().cpu().double()
    if s.ndim != 2 or t.shape != s.shape:
        raise ValueError(
            f"scores and targets must both be (N, C); got {tuple(s.shape)} and {tuple(t.shape)}"
        )
    known = t[~torch.isnan(t)]
    if not torch.isin(known, torch.tensor([0.0, 1.0], dtype=torch.float64)).all():
        raise ValueError("targets must be 0, 1 or NaN (unknown)")
    if torch.isnan(s).any():
        raise ValueError("scores contain NaN")
    names = [str(c) for c in range(s.shape[1])] if names is None else [str(n) for n in names]
    if len(names) != s.shape[1]:
        raise ValueError(f"{len(names)} names for {s.shape[1]} score columns")
    return s, t, names


def column_aurocs(scores: Tensor, targets: Tensor, columns: Sequence[int]) -> Tensor:
    """``(K,)`` float64 AUROC of each column over its known targets; NaN if one class.

    Args:
        scores: ``(N, C)`` scores.
        targets: ``(N, C)`` targets in ``{0, 1}``, NaN for unknown.
        columns: The ``K`` columns to score.
    """
    out = torch.full((len(columns),), math.nan, dtype=torch.float64)
    for k, c in enumerate(columns):
        known = ~torch.isnan(targets[:, c])
        y = targets[known, c] > 0.5
        n_pos = int(y.sum())
        n_neg = y.numel() - n_pos
        if n_pos and n_neg:
            rank_sum = float(midranks(scores[known, c])[y].sum())
            out[k] = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return out


def multilabel_auroc(
    scores: Any,
    targets: Any,
    names: Sequence[str] | None = None,
    *,
    min_positives: int = 1,
    min_negatives: int = 1,
) -> MultiLabelAUROC:
    """AUROC of each finding over its known labels, and their macro mean.

    Agrees finding by finding with scikit-learn's ``roc_auc_score(average=None)`` on
    the rows whose label is known (tested).

    Args:
        scores: ``(N, C)`` scores (probabilities or logits), higher meaning present.
        targets: ``(N, C)`` labels: 1 present, 0 absent, NaN unknown.
        names: ``C`` finding names (e.g. ``dataset.classes``); default ``"0".."C-1"``.
        min_positives: Findings with fewer known positives are left out (>= 1).
        min_negatives: Findings with fewer known negatives are left out (>= 1).

    Returns:
        A :class:`MultiLabelAUROC`.

    Raises:
        ValueError: On bad shapes or values, or when every finding is left out.
    """
    if min_positives < 1 or min_negatives < 1:
        raise ValueError(
            f"min_positives and min_negatives must be >= 1; got {min_positives}, {min_negatives}"
        )
    s, t, names = multilabel_inputs(scores, targets, names)
    n_pos = (t == 1).sum(0).tolist()
    n_neg = (t == 0).sum(0).tolist()
    kept = [c for c in range(s.shape[1]) if n_pos[c] >= min_positives and n_neg[c] >= min_negatives]
    if not kept:
        raise ValueError(
            f"no finding has at least {min_positives} positive and {min_negatives} negative "
            f"known labels (positives: {dict(zip(names, n_pos, strict=True))})"
        )
    values = column_aurocs(s, t, kept)
    return MultiLabelAUROC(
        {names[c]: float(v) for c, v in zip(kept, values, strict=True)},
        float(values.mean()),
        tuple(names[c] for c in range(s.shape[1]) if c not in kept),
        {n: int(v) for n, v in zip(names, n_pos, strict=True)},
        {n: int(v) for n, v in zip(names, n_neg, strict=True)},
    )
