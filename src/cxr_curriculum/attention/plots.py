"""Pictures: saliency overlays with the lung contour, and grids of them (PNG via PIL).

The core needs only PIL (a dependency of torchvision): the colour map is a small
piecewise-linear "jet"-like ramp in torch. Display only: each map is scaled by its own
maximum of the positive part for colour (metrics never do this).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from cxr_curriculum._artefacts import atomic_write

from .masks import as_lung_masks

__all__ = [
    "DISPLAY_SIDE",
    "display_scale",
    "overlay",
    "saliency_grid",
    "save_grid",
    "save_overlay",
]

#: Shorter side (px) that pictures of small inputs are upscaled to by default.
DISPLAY_SIDE = 256
_TITLE_LINES = 3
_GAP = 4  # px between pictures of a grid
_BACKGROUND = (24, 24, 24)

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


def _contour(mask: Tensor, width: int = 1) -> Tensor:
    """Boundary pixels (``width`` px, inside the mask) of a ``(H, W)`` bool mask."""
    m = mask.float()[None, None]
    k = 2 * width + 1
    eroded = -F.max_pool2d(-m, k, stride=1, padding=width)
    return (m - eroded)[0, 0] > 0


def display_scale(height: int, width: int, scale: int | None = None) -> int:
    """The integer upscale factor of a picture of ``height x width`` pixels.

    Args:
        height: Input height.
        width: Input width.
        scale: An explicit factor (>= 1), or ``None``: ``round(DISPLAY_SIDE / shorter
            side)``, at least 1, so a 64-px input is shown at 256 px and a 224-px one
            as it is.
    """
    if scale is None:
        return max(1, round(DISPLAY_SIDE / max(1, min(height, width))))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1 or None (automatic), got {scale!r}")
    return scale


def overlay(
    image: Tensor,
    saliency: Tensor,
    mask: Tensor | None = None,
    alpha: float = 0.45,
    scale: int | None = None,
) -> Image.Image:
    """Blend a saliency map over an X-ray and draw the lung contours.

    Args:
        image: ``(1, H, W)`` or ``(H, W)`` float in ``[0, 1]``.
        saliency: ``(h, w)`` float map (resized bilinearly to the picture).
        mask: ``(2, H', W')`` bool lungs (right green, left magenta) or a ``(H', W')`` mask;
            resized (``nearest-exact``) to the picture.
        alpha: Opacity of the colour map at the map's maximum.
        scale: Integer upscale factor of the picture; ``None`` picks one so that the
            shorter side is about :data:`DISPLAY_SIDE` px (see :func:`display_scale`).
            The X-ray is upscaled bilinearly, the map from its own size, the masks
            with ``nearest-exact``; contours are ``scale // 2`` px wide (at least 1).

    Returns:
        An RGB :class:`PIL.Image.Image` of size ``(W * s, H * s)``, ``s`` the scale.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = image.detach().float().cpu()
    img = img[0] if img.ndim == 3 else img
    if img.ndim != 2 or saliency.ndim != 2:
        raise ValueError("image must be (1, H, W) or (H, W) and saliency (h, w)")
    s = display_scale(img.shape[0], img.shape[1], scale)
    size = (img.shape[0] * s, img.shape[1] * s)
    if s > 1:
        img = F.interpolate(img[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
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
            edge = _contour(lungs[ch], max(1, s // 2))
            rgb[:, edge] = _CONTOUR[ch][:, None]
    array = (rgb.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return Image.fromarray(array, mode="RGB")


def _pieces(draw: ImageDraw.ImageDraw, word: str, font: Any, width: int) -> list[str]:
    """Split a word wider than ``width`` px into pieces that fit (long file names)."""
    pieces = [""]
    for char in word:
        if pieces[-1] and draw.textlength(pieces[-1] + char, font=font) > width:
            pieces.append("")
        pieces[-1] += char
    return pieces


def _fit_lines(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Wrap ``text`` to ``width`` px in at most :data:`_TITLE_LINES` lines.

    A newline starts a new line; words wrap at spaces; a word wider than a line (a long
    file name) is broken where it must. A title that needs more lines ends with ``...``.
    """
    lines: list[str] = []
    for paragraph in str(text).splitlines():
        start = len(lines)
        for word in paragraph.split():
            trial = f"{lines[-1]} {word}" if len(lines) > start else word
            if len(lines) > start and draw.textlength(trial, font=font) <= width:
                lines[-1] = trial
            else:
                lines += _pieces(draw, word, font, width)
    if len(lines) > _TITLE_LINES:
        last = lines[_TITLE_LINES - 1]
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        lines = [*lines[: _TITLE_LINES - 1], last + "..."]
    return lines


def saliency_grid(
    images: Tensor,
    saliency: Tensor,
    masks: Tensor | None = None,
    ncol: int = 4,
    titles: Sequence[str] | None = None,
    scale: int | None = None,
) -> Image.Image:
    """Tile :func:`overlay` pictures of a batch, ``ncol`` per row.

    Titles are drawn in a strip above each picture (never over the image), wrapped to
    the picture's width in up to three lines, in a font sized to the picture (about
    18 px for a 256-px picture).

    Args:
        images: ``(B, 1, H, W)``; saliency ``(B, h, w)``; masks ``(B, 2, H', W')`` or ``None``.
        ncol: Pictures per row.
        titles: One title per image, or ``None``.
        scale: Upscale factor of each picture (see :func:`overlay`).
    """
    if ncol < 1:
        raise ValueError(f"ncol must be >= 1, got {ncol}")
    if saliency.shape[0] != images.shape[0]:
        raise ValueError("images and saliency need the same batch size")
    if titles is not None and len(titles) != images.shape[0]:
        raise ValueError(f"{len(titles)} titles for {images.shape[0]} images")
    tiles = [
        overlay(images[i], saliency[i], None if masks is None else masks[i], scale=scale)
        for i in range(images.shape[0])
    ]
    w, h = tiles[0].size
    font = ImageFont.load_default(size=max(10, min(20, w // 14)))
    line_h = int(font.getbbox("Hg")[3]) + 3 if isinstance(font, ImageFont.FreeTypeFont) else 13
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = [_fit_lines(probe, t, font, w - 6) for t in titles] if titles is not None else []
    strip = max((len(lines) for lines in wrapped), default=0) * line_h + (4 if wrapped else 0)
    ncol = min(ncol, len(tiles))
    nrow = -(-len(tiles) // ncol)
    cell_w, cell_h = w + _GAP, h + strip + _GAP
    grid = Image.new("RGB", (ncol * cell_w - _GAP, nrow * cell_h - _GAP), _BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for i, tile in enumerate(tiles):
        x, y = (i % ncol) * cell_w, (i // ncol) * cell_h
        grid.paste(tile, (x, y + strip))
        for j, line in enumerate(wrapped[i] if wrapped else []):
            draw.text((x + 3, y + 2 + j * line_h), line, fill=(255, 255, 255), font=font)
    return grid


def save_overlay(
    path: str | os.PathLike[str],
    image: Tensor,
    saliency: Tensor,
    mask: Tensor | None = None,
    scale: int | None = None,
) -> None:
    """Write :func:`overlay` to a PNG file (upscaled to about 256 px by default)."""
    _save_png(overlay(image, saliency, mask, scale=scale), path)


def save_grid(
    path: str | os.PathLike[str],
    images: Tensor,
    saliency: Tensor,
    masks: Tensor | None = None,
    ncol: int = 4,
    titles: Sequence[str] | None = None,
    scale: int | None = None,
) -> None:
    """Write :func:`saliency_grid` to a PNG file (pictures about 256 px by default)."""
    _save_png(saliency_grid(images, saliency, masks, ncol, titles, scale), path)


def _save_png(picture: Image.Image, path: str | os.PathLike[str]) -> None:
    """Write a PNG atomically (a complete old or new file, never half of one)."""
    atomic_write(path, lambda f: picture.save(f, format="PNG"), what="picture")
