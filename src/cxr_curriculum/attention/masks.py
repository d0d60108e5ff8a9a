"""Lung masks for the scorer: predicted by a segmenter, or brought from any source into
the ``(B, 2, H, W)`` bool form."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import same_aspect

__all__ = [
    "as_lung_masks",
    "fit_masks",
    "masks_and_quality",
    "predict_lung_masks",
    "split_midline",
    "supplied_masks",
]


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


def predict_lung_masks(
    segmenter: Any, images: Tensor, batch_size: int
) -> tuple[Tensor, list[bool | None], list[str]]:
    """Predicted ``(B, 2, H, W)`` masks with per-image quality flags and reasons.

    Uses the segmenter's ``predict_with_quality`` when it has one (as
    :class:`~cxr_curriculum.segmentation.LungSegmenter` does), else ``predict`` (flags
    ``None``), ``batch_size`` images at a time.

    Args:
        segmenter: An object with ``predict(images) -> (B, 2, H, W) bool``.
        images: ``(B, 1, H, W)`` float in ``[0, 1]``.
        batch_size: Images per call.

    Returns:
        Masks on the CPU, ``ok`` flags (``None`` where unknown) and the reasons of
        failed checks (``""`` where none).
    """
    masks: list[Tensor] = []
    flags: list[bool | None] = []
    reasons: list[str] = []
    for batch in images.split(batch_size):
        with_quality = getattr(segmenter, "predict_with_quality", None)
        if callable(with_quality):
            pred = with_quality(batch)
            m = pred.masks
            flags += [bool(q.ok) for q in pred.quality]
            reasons += ["; ".join(q.reasons) for q in pred.quality]
        else:
            m = segmenter.predict(batch)
            flags += [None] * batch.shape[0]
            reasons += [""] * batch.shape[0]
        if m.dtype != torch.bool or m.shape[:2] != (batch.shape[0], 2):
            raise ValueError(
                f"segmenter returned {m.dtype} {tuple(m.shape)}, need (B, 2, H, W) bool"
            )
        masks.append(m.cpu())
    return torch.cat(masks), flags, reasons


def masks_and_quality(masks: Any) -> tuple[Tensor, list[bool | None], list[str], str, str]:
    """Lung masks given to the scorer, with the segmenter's verdict when it came along.

    Args:
        masks: A mask tensor (see :func:`as_lung_masks`), or a prediction with ``masks``
            and ``quality`` (what ``LungSegmenter.predict_with_quality`` returns), whose
            quality verdicts then reach the report as for masks the scorer predicts.

    Returns:
        ``(B, 2, H, W)`` bool masks, ``ok`` flags (``None`` for plain tensors), reasons,
        the mask source (``"supplied"`` or ``"predicted"``) and the lung split.
    """
    quality = getattr(masks, "quality", None)
    if quality is not None and isinstance(getattr(masks, "masks", None), Tensor):
        lungs, split = as_lung_masks(masks.masks)
        if len(quality) != lungs.shape[0]:
            raise ValueError(f"{len(quality)} quality verdicts for {lungs.shape[0]} masks")
        flags: list[bool | None] = [bool(q.ok) for q in quality]
        reasons = ["; ".join(q.reasons) for q in quality]
        return lungs, flags, reasons, "predicted", split
    lungs, split = as_lung_masks(masks)
    n = lungs.shape[0]
    return lungs, [None] * n, [""] * n, "supplied", split


def fit_masks(lungs: Tensor, size: tuple[int, int]) -> tuple[Tensor, str | None]:
    """Bring ``(B, 2, h, w)`` masks to the images' ``size = (H, W)``.

    Masks of the images' size are returned as they are. Masks of another size but the
    same aspect ratio (within one pixel, the tolerance of saliency maps:
    :func:`~.base.same_aspect`) are resized with ``nearest-exact`` and a message
    says so (the scorer warns with it); any other size is refused, because a map and a
    mask of different aspect ratios cannot be laid over each other without distortion.

    Returns:
        The masks and ``None``, or the resized masks and the message.

    Raises:
        ValueError: The aspect ratios differ.
    """
    h, w = int(lungs.shape[-2]), int(lungs.shape[-1])
    height, width = size
    if (h, w) == (height, width):
        return lungs, None
    if not same_aspect(h, w, height, width):
        raise ValueError(
            f"masks are {h}x{w} but the images {height}x{width}: their aspect ratios differ; "
            "give masks of the images' size (or resize both the same way)"
        )
    resized = F.interpolate(lungs.float(), size=size, mode="nearest-exact") > 0.5
    return resized, (
        f"masks of {h}x{w} were resized (nearest-exact) to the images' {height}x{width}; "
        "resize them yourself to silence this warning"
    )


def supplied_masks(
    masks: Any, n: int, size: tuple[int, int]
) -> tuple[Tensor, list[bool | None], list[str], dict[str, Any]]:
    """Masks given to the scorer, checked and brought to the images' size.

    Args:
        masks: As for :func:`masks_and_quality`.
        n: Number of images.
        size: ``(H, W)`` of the images.

    Returns:
        ``(n, 2, H, W)`` bool masks, quality flags, reasons, and ``mask_source``,
        ``lung_split`` and ``warning`` (the resize message of :func:`fit_masks`, or
        ``None``).

    Raises:
        ValueError: Another number of masks, or masks of another aspect ratio.
    """
    lungs, quality, reasons, source, split = masks_and_quality(masks)
    if lungs.shape[0] != n:
        raise ValueError(f"{lungs.shape[0]} masks for {n} images")
    lungs, message = fit_masks(lungs, size)
    return lungs, quality, reasons, {"mask_source": source, "lung_split": split, "warning": message}
