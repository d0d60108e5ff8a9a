"""The multi-label metric of a study: macro AUROC over findings under bootstrap weights.

Shared by :class:`~cxr_curriculum.study.MultiLabelTask` and
:class:`~cxr_curriculum.study.NIHFindingsTask`: the unweighted mean over findings of
each finding's AUROC on the images whose label for it is known, over the findings with
enough positive and negative test images (as
:func:`cxr_curriculum.evaluation.multilabel_auroc` reports it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cxr_curriculum.study.resample import weighted_binary_auroc

__all__ = ["finding_selection", "weighted_macro_auroc"]


def weighted_macro_auroc(scores: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Macro AUROC over findings under ``(R, N)`` image weights.

    Args:
        scores: ``(N, C)`` per-finding scores.
        targets: ``(N, C)`` labels in ``{0, 1}``, NaN where unknown (left out per finding).
        weights: ``(R, N)`` non-negative weights.

    Returns:
        ``(R,)`` mean of the ``C`` findings' AUROCs; NaN where one of them is undefined.
    """
    if scores.shape != targets.shape or weights.shape[1] != scores.shape[0]:
        raise ValueError(
            f"scores and targets must both be (N, C) and weights (R, N); got "
            f"{tuple(scores.shape)}, {tuple(targets.shape)}, {tuple(weights.shape)}"
        )
    per_finding = []
    for c in range(scores.shape[1]):
        known = ~torch.isnan(targets[:, c])
        per_finding.append(
            weighted_binary_auroc(scores[known, c], targets[known, c].long(), weights[:, known])
        )
    return torch.stack(per_finding, 1).mean(1)


def finding_selection(targets: Tensor, min_positives: int, task: str) -> list[int]:
    """Columns of ``(N, C)`` test ``targets`` with ``min_positives`` positives and negatives.

    Raises:
        ValueError: No finding qualifies (the message names the task).
    """
    pos, neg = (targets == 1).sum(0), (targets == 0).sum(0)
    keep = [c for c in range(targets.shape[1]) if min(pos[c], neg[c]) >= min_positives]
    if not keep:
        raise ValueError(
            f"task {task!r}: no finding has {min_positives} positive and negative test "
            "images; lower min_positives or use a larger test split"
        )
    return keep
