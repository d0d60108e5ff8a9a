"""Pictures: saliency overlays with the lung contour, and grids of them (PNG via PIL).

The core needs only PIL (a dependency of torchvision): the colour map is a small
piecewise-linear "jet"-like ramp in torch. Display only: each map is scaled by its own
maximum of the positive part for colour (metrics never do this).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .masks import as_lung_masks

__all__ = ["overlay", "saliency_grid", "save_grid", "save_overlay"]

# Colour ramp: dark blue -> blue -> cyan -> yellow -> red (RGB in [0, 1]).
_RAMP = torch.tensor(
    [[0.0, 0.0, 0.5], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
)
_CONTOUR = (torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0]))  # right, left lung


def _colormap(x: Tensor) -> Tensor:
    """``(H, W)`` in ``[0, 1]`` -> ``(3, H, W)`` RGB."""
    pos = x.clamp(0, 1) * (len(_RAMP) - 1)
    lo = pos.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    return rgb.permute(2, 0, 1)


def _contour(mask: Tensor) -> Tensor:
    """Boundary pixels (1 px) of a ``(H, W)`` bool mask."""
    m = mask.float()[None, None]
    eroded = -F.max_pool2d(-m, 3, stride=1, padding=1)
    return (m - eroded)[0, 0] > 0


def overlay(
    image: Tensor, saliency: Tensor, mask: Tensor | None = None, alpha: float = 0.45
) -> Image.Image:
    """Blend a saliency map over an X-ray and draw the lung contours.

    Args:
        image: ``(1, H, W)`` or ``(H, W)`` float in ``[0, 1]``.
        saliency: ``(h, w)`` float map (resized bilinearly to the image).
        mask: ``(2, H', W')`` bool lungs (right green, left magenta) or a ``(H', W')`` mask;
            resized (nearest) to the image.
        alpha: Opacity of the colour map at the map's maximum.

    Returns:
        An RGB :class:`PIL.Image.Image` of size ``(W, H)``.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = image.detach().float().cpu()
    img = img[0] if img.ndim == 3 else img
    if img.ndim != 2 or saliency.ndim != 2:
        raise ValueError("image must be (1, H, W) or (H, W) and saliency (h, w)")
    size = (img.shape[0], img.shape[1])
    sal = F.interpolate(saliency.detach().float().cpu()[None, None], size=size, mode="bilinear")
    sal = sal[0, 0].clamp_min(0)
    peak = float(sal.max())
    heat = sal / peak if peak > 0 else sal
    gray = img.clamp(0, 1).expand(3, *size)
    weight = alpha * heat[None]
    rgb = gray * (1 - weight) + _colormap(heat) * weight
    if mask is not None:
        lungs, _ = as_lung_masks(mask.detach().cpu()[None])
        lungs = F.interpolate(lungs.float(), size=size, mode="nearest-exact")[0] > 0.5
        for ch in range(2):
            edge = _contour(lungs[ch])
            rgb[:, edge] = _CONTOUR[ch][:, None]
    array = (rgb.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(array, mode="RGB")


def saliency_grid(
    images: Tensor,
    saliency: Tensor,
    masks: Tensor | None = None,
    ncol: int = 4,
    titles: Sequence[str] | None = None,
) -> Image.Image:
    """Tile :func:`overlay` pictures of a batch, ``ncol`` per row (titles drawn if given).

    Args:
        images: ``(B, 1, H, W)``; saliency ``(B, h, w)``; masks ``(B, 2, H', W')`` or ``None``.
    """
    if ncol < 1:
        raise ValueError(f"ncol must be >= 1, got {ncol}")
    if saliency.shape[0] != images.shape[0]:
        raise ValueError("images and saliency need the same batch size")
    tiles = [
        overlay(images[i], saliency[i], None if masks is None else masks[i])
        for i in range(images.shape[0])
    ]
    w, h = tiles[0].size
    nrow = -(-len(tiles) // ncol)
    grid = Image.new("RGB", (ncol * w, nrow * h))
    if titles is not None:
        from PIL import ImageDraw

        for tile, title in zip(tiles, titles, strict=True):
            ImageDraw.Draw(tile).text((2, 2), str(title), fill=(255, 255, 0))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % ncol) * w, (i // ncol) * h))
    return grid


def save_overlay(
    path: str | os.PathLike[str], image: Tensor, saliency: Tensor, mask: Tensor | None = None
) -> None:
    """Write :func:`overlay` to a PNG file."""
    overlay(image, saliency, mask).save(path, format="PNG")


def save_grid(
    path: str | os.PathLike[str],
    images: Tensor,
    saliency: Tensor,
    masks: Tensor | None = None,
    ncol: int = 4,
    titles: Sequence[str] | None = None,
) -> None:
    """Write :func:`saliency_grid` to a PNG file."""
    saliency_grid(images, saliency, masks, ncol, titles).save(path, format="PNG")
