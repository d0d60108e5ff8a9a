"""Run-length encoded masks, as in the SIIM-ACR Pneumothorax challenge.

SIIM-ACR's ``train-rle.csv`` (Kaggle, 2019; Zawacki, Wu, Shih et al., J. Digit. Imaging
32, 2019) stores each pneumothorax component as ``"start length start length ..."``
over the pixels of a 1024 x 1024 image taken **column by column** (pixel ``p`` is row
``p % H``, column ``p // H``: the challenge's ``rle2mask`` reshapes and transposes),
with each start **relative** to the end of the previous run (the first is relative to
pixel 0). ``-1`` means no pneumothorax. The common Kaggle form (``relative=False``)
counts every start from pixel 1 of the same column-major order.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

__all__ = ["EMPTY_RLE", "decode_rle", "decode_rle_union", "encode_rle"]

#: The code of an image without the finding.
EMPTY_RLE = "-1"


def _runs(encoding: str, size: int, relative: bool) -> list[tuple[int, int]]:
    """``(first pixel, length)`` of each run, 0-based, checked against ``size``."""
    try:
        numbers = [int(t) for t in encoding.split()]
    except ValueError:
        raise ValueError(f"RLE must be integers, got {encoding[:40]!r}") from None
    if len(numbers) % 2:
        raise ValueError(f"RLE must be start/length pairs, got {len(numbers)} numbers")
    runs = []
    end = 0
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        first = end + start if relative else start - 1
        if start < 0 or length <= 0 or first < end:
            raise ValueError(
                f"RLE run (start {start}, length {length}) is negative, empty or overlaps "
                "the previous run"
            )
        end = first + length
        if end > size:
            raise ValueError(f"RLE run ends at pixel {end}, past the {size} pixels of the mask")
        runs.append((first, length))
    return runs


def decode_rle(
    encoding: str,
    shape: tuple[int, int] = (1024, 1024),
    *,
    relative: bool = True,
) -> Tensor:
    """Decode one run-length code into a mask.

    Args:
        encoding: ``"start length ..."``, or ``"-1"`` (or blank) for an empty mask.
        shape: ``(H, W)`` of the image the code was made on.
        relative: SIIM-ACR's relative starts (default), or absolute 1-based starts.

    Returns:
        ``torch.uint8`` tensor ``(1, H, W)``: 1 inside the runs, 0 elsewhere.

    Raises:
        ValueError: The code is malformed or runs past ``H * W`` pixels.
    """
    height, width = int(shape[0]), int(shape[1])
    flat = np.zeros(height * width, dtype=np.uint8)
    text = encoding.strip()
    if text and text != EMPTY_RLE:
        for first, length in _runs(text, flat.size, relative):
            flat[first : first + length] = 1
    # Column-major: pixel p is (row p % H, column p // H).
    mask = flat.reshape(width, height).T
    return torch.from_numpy(np.ascontiguousarray(mask)).unsqueeze(0)


def decode_rle_union(
    encodings: Iterable[str],
    shape: tuple[int, int] = (1024, 1024),
    *,
    relative: bool = True,
) -> Tensor:
    """The union of several codes of one image (SIIM-ACR lists one row per component).

    Returns:
        ``torch.uint8`` tensor ``(1, H, W)`` in ``{0, 1}``.
    """
    out = torch.zeros(1, int(shape[0]), int(shape[1]), dtype=torch.uint8)
    for encoding in encodings:
        out |= decode_rle(encoding, shape, relative=relative)
    return out


def encode_rle(mask: Tensor | np.ndarray, *, relative: bool = True) -> str:
    """Encode a mask the way :func:`decode_rle` reads it.

    Args:
        mask: ``(H, W)`` or ``(1, H, W)``; nonzero pixels are inside.
        relative: SIIM-ACR's relative starts (default), or absolute 1-based starts.

    Returns:
        The code, or ``"-1"`` for an empty mask.
    """
    arr = np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"mask must be (H, W) or (1, H, W), got shape {arr.shape}")
    padded = np.zeros(arr.size + 2, dtype=bool)
    padded[1:-1] = (arr != 0).T.reshape(-1)  # column by column
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    if starts.size == 0:
        return EMPTY_RLE
    if relative:
        gaps = starts - np.concatenate([[0], ends[:-1]])
        pairs = np.stack([gaps, ends - starts], axis=1)
    else:
        pairs = np.stack([starts + 1, ends - starts], axis=1)
    return " ".join(str(int(v)) for v in pairs.reshape(-1))
