"""Deterministic resize for evaluation (image and optional mask)."""

from __future__ import annotations

from typing import overload

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from ._checks import as_size, check_image, check_mask

__all__ = ["Resize"]


class Resize:
    """Resize an image ``(1, H, W)`` to ``image_size`` (aspect not kept), and its mask.

    The image is resized bilinearly with antialiasing and clamped to ``[0, 1]``; the
    ``uint8`` mask with pixel-centred nearest interpolation (``nearest-exact``), so its
    values (0, 1, 255 = ignore) are kept. This is what :class:`XRayAugment` does with
    ``strength=0``. A ``generator`` keyword is accepted and ignored, so ``Resize`` can
    stand in for a random view (e.g. inside :class:`MultiView`).

    Args:
        image_size: Output size, an int (square) or ``(height, width)``.

    Example:
        >>> Resize(32)(torch.rand(1, 50, 40)).shape
        torch.Size([1, 32, 32])
    """

    def __init__(self, image_size: int | tuple[int, int]) -> None:
        self.image_size = as_size(image_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_size={self.image_size})"

    @overload
    def __call__(
        self,
        image: torch.Tensor,
        mask: None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor: ...

    @overload
    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Resize ``image`` ``(1, H, W)`` (and ``mask``) to ``(1, *image_size)``."""
        check_image(image)
        h, w = image.shape[-2:]
        size = list(self.image_size)
        out = TF.resized_crop(image, 0, 0, h, w, size, InterpolationMode.BILINEAR, antialias=True)
        out = out.clamp(0.0, 1.0)
        if mask is None:
            return out
        check_mask(mask, image)
        return out, TF.resized_crop(mask, 0, 0, h, w, size, InterpolationMode.NEAREST_EXACT)
