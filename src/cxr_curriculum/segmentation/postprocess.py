"""Light post-processing of predicted lung masks and a per-image quality check.

Post-processing (``scipy.ndimage``, per image and lung): keep the largest 4-connected
component, then fill its holes. The quality check flags masks that a caller
should not trust, e.g. before scoring where a classifier looks
(:class:`~cxr_curriculum.attention.LungAttentionScorer`): a lung missing or ragged, a
lung area outside the range seen on adult frontal radiographs, or the two lungs on the
wrong sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.measure import regionprops
from torch import Tensor

__all__ = ["MaskQuality", "assess_quality", "clean_masks"]

#: Plausible range of the area of both lungs as a fraction of the image. On the 421
#: ground-truth masks (V7 Covid-19, Shenzhen, Montgomery) it spans 0.09-0.62, 1st-99th
#: percentile 0.17-0.57; 3 of these 421 masks fail :func:`assess_quality`.
LUNG_FRACTION_RANGE: tuple[float, float] = (0.06, 0.6)
#: Smallest plausible area of one lung as a fraction of the image.
MIN_ONE_LUNG_FRACTION = 0.02
#: Largest plausible ratio between the areas of the two lungs.
MAX_AREA_RATIO = 4.0
#: Smallest plausible solidity (area / convex hull area) of one lung. Ground-truth
#: lungs: 1st percentile 0.82 (every third of the 421 masks); ragged masks predicted
#: on pediatric pneumonia images (Kermany) go down to 0.55.
MIN_SOLIDITY = 0.8


def _largest_filled(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of ``mask`` with its holes filled.

    Works on the bounding box of the mask's pixels; a hole is a background component
    (4-connected) that does not touch the box's padded border, which is what
    ``scipy.ndimage.binary_fill_holes`` fills, in one labelling pass instead of an
    iterated dilation.
    """
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return mask
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = np.pad(mask[r0:r1, c0:c1], 1)
    comps, n = ndi.label(box)
    if n > 1:
        sizes = np.bincount(comps.ravel())
        sizes[0] = 0
        box = comps == int(sizes.argmax())
    outside, _ = ndi.label(~box)
    filled = outside != outside[0, 0]  # the padded border is one background component
    out = np.zeros_like(mask)
    out[r0:r1, c0:c1] = filled[1:-1, 1:-1]
    return out


def clean_masks(masks: Tensor) -> Tensor:
    """Keep each lung's largest connected component and fill its holes.

    Args:
        masks: ``bool`` tensor ``(B, 2, H, W)`` (right lung, left lung).

    Returns:
        ``bool`` tensor of the same shape and device. A pixel claimed by both lungs
        after hole filling stays with the lung whose component is larger.
    """
    if masks.ndim != 4 or masks.shape[1] != 2:
        raise ValueError(f"masks must have shape (B, 2, H, W), got {tuple(masks.shape)}")
    arr = masks.detach().cpu().numpy().astype(bool)
    out = np.zeros_like(arr)
    for b in range(arr.shape[0]):
        right, left = _largest_filled(arr[b, 0]), _largest_filled(arr[b, 1])
        both = right & left
        if both.any():
            if right.sum() >= left.sum():
                left &= ~both
            else:
                right &= ~both
        out[b, 0], out[b, 1] = right, left
    return torch.from_numpy(out).to(masks.device)


@dataclass(frozen=True)
class MaskQuality:
    """Quality of one predicted lung mask.

    Attributes:
        ok: True when no check failed.
        lung_fraction: Area of both lungs / image area.
        right_fraction: Area of the right lung (image left) / image area.
        left_fraction: Area of the left lung (image right) / image area.
        reasons: Failed checks, e.g. ``("left lung missing",)``; empty when ``ok``.
    """

    ok: bool
    lung_fraction: float
    right_fraction: float
    left_fraction: float
    reasons: tuple[str, ...]


def _solidity(mask: Tensor) -> float:
    """Area over convex-hull area of a non-empty 2-D mask (on its bounding box)."""
    props = regionprops(mask.numpy().astype(np.uint8))
    return float(props[0].solidity)


def _centre_x(mask: Tensor) -> float:
    cols = mask.any(0).nonzero()
    return float(cols.float().mean()) if len(cols) else float("nan")


def assess_quality(masks: Tensor) -> list[MaskQuality]:
    """Check each predicted mask for plausibility.

    Checks: each lung present, at least :data:`MIN_ONE_LUNG_FRACTION` of the image and
    not ragged (solidity at least :data:`MIN_SOLIDITY`);
    both lungs together within :data:`LUNG_FRACTION_RANGE`; the larger lung at most
    :data:`MAX_AREA_RATIO` times the smaller; the right lung's centre left of the left
    lung's centre in the image.

    Args:
        masks: ``bool`` tensor ``(B, 2, H, W)`` (right lung, left lung).

    Returns:
        One :class:`MaskQuality` per image.
    """
    if masks.ndim != 4 or masks.shape[1] != 2:
        raise ValueError(f"masks must have shape (B, 2, H, W), got {tuple(masks.shape)}")
    area = masks.shape[-1] * masks.shape[-2]
    out = []
    for m in masks.detach().cpu().bool():
        right, left = float(m[0].sum()) / area, float(m[1].sum()) / area
        reasons = []
        for name, frac in (("right", right), ("left", left)):
            if frac == 0.0:
                reasons.append(f"{name} lung missing")
            elif frac < MIN_ONE_LUNG_FRACTION:
                reasons.append(f"{name} lung area {frac:.3f} < {MIN_ONE_LUNG_FRACTION}")
            elif (solidity := _solidity(m[0 if name == "right" else 1])) < MIN_SOLIDITY:
                reasons.append(f"{name} lung ragged (solidity {solidity:.2f} < {MIN_SOLIDITY})")
        lo, hi = LUNG_FRACTION_RANGE
        if not lo <= right + left <= hi:
            reasons.append(f"lung area fraction {right + left:.3f} outside [{lo}, {hi}]")
        if min(right, left) > 0:
            if max(right, left) / min(right, left) > MAX_AREA_RATIO:
                reasons.append(f"lung areas differ by more than {MAX_AREA_RATIO}x")
            if _centre_x(m[0]) >= _centre_x(m[1]):
                reasons.append("right lung is not on the image's left")
        out.append(MaskQuality(not reasons, right + left, right, left, tuple(reasons)))
    return out
