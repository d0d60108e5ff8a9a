"""Overlap metrics for lung masks: Dice (Sorensen-Dice) and IoU (Jaccard), batched.

Dice = 2|A n B| / (|A| + |B|) and IoU = |A n B| / |A u B| (Jaccard 1901; Dice 1945),
computed per image and per channel over the pixels that are not ignored. Two empty
masks agree perfectly (score 1), the convention of MONAI's ``DiceMetric`` with
``ignore_empty=False``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["dice_score", "iou_score"]


def _counts(pred: Tensor, target: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if pred.ndim < 2:
        raise ValueError(f"expected (..., H, W) masks, got shape {tuple(pred.shape)}")
    p, t = pred.bool(), target.bool()
    if valid is not None:
        valid = valid.bool().expand_as(p)
        p, t = p & valid, t & valid
    dims = (-2, -1)
    inter = (p & t).sum(dims).to(torch.float64)
    return inter, p.sum(dims).to(torch.float64), t.sum(dims).to(torch.float64)


def dice_score(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Dice coefficient per mask.

    Args:
        pred: Boolean (or 0/1) masks ``(..., H, W)``.
        target: Boolean (or 0/1) masks of the same shape.
        valid: Optional boolean ``(..., H, W)`` (broadcastable) of pixels to count;
            ignored pixels are removed from both masks.

    Returns:
        ``float64`` tensor of shape ``pred.shape[:-2]`` in ``[0, 1]``; 1 where both
        masks are empty.
    """
    inter, sp, st = _counts(pred, target, valid)
    denom = sp + st
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))


def iou_score(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Intersection over union (Jaccard index) per mask; same arguments as :func:`dice_score`.

    Returns:
        ``float64`` tensor of shape ``pred.shape[:-2]`` in ``[0, 1]``; 1 where both
        masks are empty.
    """
    inter, sp, st = _counts(pred, target, valid)
    union = sp + st - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
