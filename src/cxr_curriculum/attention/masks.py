"""Bring lung masks from any source into the scorer's ``(B, 2, H, W)`` bool form."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["as_lung_masks", "split_midline"]


def split_midline(union: Tensor) -> Tensor:
    """Split a two-lung mask ``(B, H, W)`` bool at the image's vertical midline.

    Channel 0 (the patient's right lung) is the image's left half, channel 1 its right
    half. An approximation for masks that hold both lungs in one label (V7, Shenzhen);
    a rotated or off-centre patient puts part of one lung in the other channel.

    Returns:
        ``(B, 2, H, W)`` bool.
    """
    width = union.shape[-1]
    left_half = torch.zeros(width, dtype=torch.bool, device=union.device)
    left_half[: width // 2] = True
    return torch.stack([union & left_half, union & ~left_half], dim=1)


def as_lung_masks(masks: Tensor) -> tuple[Tensor, str]:
    """Normalise masks to ``(B, 2, H, W)`` bool (channel 0 right lung, 1 left lung).

    Accepts:
        - ``(B, 2, H, W)`` bool, as from ``LungSegmenter.predict`` (used as is);
        - ``(B, H, W)`` or ``(B, 1, H, W)`` bool, both lungs in one mask;
        - the same shapes as ``uint8`` dataset masks (1 lung, 0 background, 255 ignore):
          only value 1 is lung, ignore regions count as outside.

    Returns:
        The masks and how the lungs were separated: ``"channels"`` or ``"midline"``
        (see :func:`split_midline`).
    """
    if not isinstance(masks, Tensor):
        raise ValueError(f"masks must be a tensor, got {type(masks).__name__}")
    if masks.dtype == torch.uint8:
        masks = masks == 1
    elif masks.dtype != torch.bool:
        raise ValueError(f"masks must be bool or uint8 (0/1/255), got {masks.dtype}")
    if masks.ndim == 4 and masks.shape[1] == 2:
        return masks, "channels"
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(
            f"masks must be (B, 2, H, W), (B, 1, H, W) or (B, H, W), got {tuple(masks.shape)}"
        )
    return split_midline(masks), "midline"
