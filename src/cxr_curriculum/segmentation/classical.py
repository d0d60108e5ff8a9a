"""Classical lung segmentation: Otsu threshold + morphology (the baseline to beat).

The lungs are the large dark (radiolucent) regions inside the body on a frontal chest
radiograph. The baseline is a rule-based pipeline of the kind reviewed by van Ginneken,
ter Haar Romeny and Viergever, "Computer-aided diagnosis in chest radiography: a
survey" (IEEE TMI 2001, section on lung-field segmentation):
histogram equalisation and Gaussian smoothing, a global Otsu threshold (Otsu 1979),
the body as the largest bright region and the lung candidates as the dark pixels
inside its convex hull (air outside the body lies outside it), morphological opening
and closing, the two largest candidates, and hole filling. It needs no training
and serves as the reference in ``benchmarks/bench_lungseg.py``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage import exposure, filters, morphology
from skimage.measure import label, regionprops
from torch import Tensor

from cxr_curriculum.segmentation.inputs import check_batch
from cxr_curriculum.segmentation.targets import LEFT_LUNG, RIGHT_LUNG, split_lungs

__all__ = ["classical_lung_masks"]

_WORK_SIZE = 256  # the baseline runs at this square size, then resizes back


def _both_lungs(image: np.ndarray) -> np.ndarray:
    """Both-lungs boolean mask of one ``(S, S)`` image in ``[0, 1]``."""
    radius = max(1, image.shape[0] // 64)
    smooth = filters.gaussian(exposure.equalize_hist(image), sigma=radius)
    dark = smooth < filters.threshold_otsu(smooth)
    # The body is the largest bright region; the lungs are dark regions inside its hull
    # (air outside the body lies outside the hull).
    bright = label(morphology.opening(~dark, morphology.disk(radius)))
    if bright.max() == 0:
        return np.zeros_like(dark)
    body = bright == int(np.bincount(bright.ravel())[1:].argmax()) + 1
    candidates = morphology.opening(
        dark & morphology.convex_hull_image(body), morphology.disk(radius)
    )
    comps = label(candidates)
    regions = sorted(regionprops(comps), key=lambda r: r.area, reverse=True)
    keep = np.zeros_like(dark)
    for region in regions[:2]:
        if region.area >= 0.01 * dark.size:
            keep |= comps == region.label
    keep = morphology.closing(keep, morphology.disk(2 * radius))
    return np.asarray(ndi.binary_fill_holes(keep), dtype=bool)


def classical_lung_masks(images: Tensor) -> Tensor:
    """Segment the lungs of a batch with threshold + morphology.

    Args:
        images: ``float`` tensor ``(B, 1, H, W)`` in ``[0, 1]``.

    Returns:
        ``bool`` tensor ``(B, 2, H, W)``: channel 0 the patient's right lung (image
        left), channel 1 the left lung, like :meth:`LungSegmenter.predict`.

    Raises:
        ValueError: ``images`` is not a float ``(B, 1, H, W)`` tensor.
    """
    check_batch(images)
    height, width = images.shape[-2:]
    small = F.interpolate(
        images.float().cpu(),
        size=(_WORK_SIZE, _WORK_SIZE),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    out = torch.zeros(images.shape[0], 2, height, width, dtype=torch.bool)
    for i in range(images.shape[0]):
        lungs = torch.from_numpy(_both_lungs(small[i, 0].numpy().astype(np.float64)))
        target = split_lungs(lungs.to(torch.uint8))
        two = torch.stack([target == RIGHT_LUNG, target == LEFT_LUNG]).float()
        out[i] = F.interpolate(two[None], size=(height, width), mode="nearest-exact")[0] > 0.5
    return out.to(images.device)
