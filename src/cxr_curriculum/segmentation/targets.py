"""Split a both-lungs mask into the patient's right and left lung.

Public lung masks (V7 Labs for the Covid-19 collection, Stirenko et al. 2018 for
Shenzhen, Jaeger et al. 2014 for Montgomery) mark both lungs with one value. The
bundled model predicts each lung separately, in the radiological convention of a
frontal (PA/AP) view: the patient's right lung is on the image's left.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.measure import label
from torch import Tensor

__all__ = ["IGNORE_INDEX", "LEFT_LUNG", "RIGHT_LUNG", "split_lungs"]

#: Class of the patient's right lung (image left) and left lung (image right).
RIGHT_LUNG = 1
LEFT_LUNG = 2
#: Target value excluded from losses and metrics (the data's ``MASK_IGNORE``).
IGNORE_INDEX = 255


def _split_column(lung: np.ndarray) -> int:
    """Column that separates the two lungs: the emptiest column near the lungs' centre."""
    cols = np.flatnonzero(lung.any(axis=0))
    left, right = int(cols[0]), int(cols[-1])
    mid = (left + right) // 2
    half = max(1, (right - left) // 8)
    lo, hi = max(left, mid - half), min(right, mid + half)
    counts = lung[:, lo : hi + 1].sum(axis=0)
    # Among the emptiest columns take the one closest to the centre.
    candidates = np.flatnonzero(counts == counts.min()) + lo
    return int(candidates[np.argmin(np.abs(candidates - mid))])


def split_lungs(mask: Tensor) -> Tensor:
    """Turn a both-lungs mask into a three-class target.

    Each connected lung component goes to the side of the separating column that
    holds most of its pixels; the separating column is the emptiest column within
    an eighth of the lungs' width of their horizontal centre. A component that has at
    least a quarter of its pixels on each side (both lungs touching) is cut at that
    column.

    Args:
        mask: ``uint8`` tensor ``(1, H, W)`` or ``(H, W)``: 0 background, 1 lung,
            255 ignore (the dataset convention).

    Returns:
        ``uint8`` tensor ``(H, W)``: 0 background, :data:`RIGHT_LUNG` (image left),
        :data:`LEFT_LUNG` (image right), :data:`IGNORE_INDEX` where ``mask`` is 255.

    Raises:
        ValueError: ``mask`` has another shape or values outside ``{0, 1, 255}``.
    """
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"mask must be (1, H, W) or (H, W), got shape {tuple(mask.shape)}")
    arr = mask.cpu().numpy().astype(np.uint8)
    if not np.isin(arr, (0, 1, IGNORE_INDEX)).all():
        raise ValueError("mask values must be 0 (background), 1 (lung) or 255 (ignore)")
    lung = arr == 1
    out = np.zeros(arr.shape, dtype=np.uint8)
    if lung.any():
        cut = _split_column(lung)
        comps = label(lung, connectivity=2)
        cols = np.arange(arr.shape[1])[None, :]
        for k in range(1, int(comps.max()) + 1):
            comp = comps == k
            n = int(comp.sum())
            n_left = int((comp & (cols <= cut)).sum())
            if min(n_left, n - n_left) >= n / 4:
                out[comp & (cols <= cut)] = RIGHT_LUNG
                out[comp & (cols > cut)] = LEFT_LUNG
            else:
                out[comp] = RIGHT_LUNG if n_left * 2 >= n else LEFT_LUNG
    out[arr == IGNORE_INDEX] = IGNORE_INDEX
    return torch.from_numpy(out)
