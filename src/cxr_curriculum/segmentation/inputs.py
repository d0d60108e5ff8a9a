"""What the lung segmenter accepts, turned into one validated float batch.

Every input type (tensor, numpy array, PIL image, file path) goes through the same two
steps: a conversion to a float ``(B, 1, H, W)`` tensor with one documented rule per
dtype, then one check (:func:`check_batch`) that refuses what would give a silently
wrong mask: NaN or infinite pixels, values outside ``[0, 1]`` (8-bit data passed as
floats), images smaller than :data:`MIN_SIDE` pixels, empty batches.

Conversion rules (the same for tensors and numpy arrays):

=============== =====================================================================
dtype           meaning
=============== =====================================================================
``uint8``       ``0..255``, divided by 255
``uint16``      ``0..65535``, divided by 65535
float           already in ``[0, 1]`` (checked, never clamped or rescaled)
anything else   refused
=============== =====================================================================

PIL images: 16-bit modes (``I;16*``) as ``uint16``; mode ``I`` (how PIL opens some
16-bit PNGs) as in :func:`cxr_curriculum.data.read_image`; mode ``F`` as a float array;
every other mode is converted to 8-bit gray (``convert("L")``). Paths are read with
:func:`cxr_curriculum.data.read_image` (whatever formats it reads).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["MIN_SIDE", "ImageInput", "as_batch", "check_batch"]

#: What :meth:`~cxr_curriculum.segmentation.LungSegmenter.predict` accepts.
ImageInput = Tensor | np.ndarray | Image.Image | str | os.PathLike[str]

#: Smallest accepted image side in pixels: below this a radiograph has no lung shape
#: left to segment, and the model's 128-px input would be pure interpolation.
MIN_SIDE = 8

_INT_SCALE = {torch.uint8: 255.0, torch.uint16: 65535.0}
_LUMA = np.array([0.299, 0.587, 0.114])


def _describe_bad_pixels(bad: Tensor) -> str:
    """``"3 NaN/inf pixels, first at image 0, row 5, column 7"`` for a bool ``(B, 1, H, W)``."""
    first = [int(i) for i in bad.nonzero()[0].tolist()]
    return (
        f"{int(bad.sum())} NaN/inf pixel(s), first at image {first[0]}, row {first[2]}, "
        f"column {first[3]}"
    )


def check_batch(images: Tensor) -> None:
    """Refuse a batch that would give a silently wrong mask.

    Args:
        images: Float tensor ``(B, 1, H, W)``.

    Raises:
        ValueError: Not a float ``(B, 1, H, W)`` tensor, an empty batch, a side below
            :data:`MIN_SIDE`, NaN/inf pixels (with the first one's position) or values
            outside ``[0, 1]`` (with the range found).
    """
    if not isinstance(images, Tensor):
        raise ValueError(f"images must be a torch.Tensor (B, 1, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (B, 1, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor in [0, 1], got dtype {images.dtype}")
    height, width = images.shape[-2:]
    if images.shape[0] == 0 or min(height, width) < MIN_SIDE:
        raise ValueError(
            f"images must be a non-empty batch of images of at least {MIN_SIDE}x{MIN_SIDE} "
            f"pixels, got shape {tuple(images.shape)}"
        )
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        raise ValueError(f"images must be finite: found {_describe_bad_pixels(~finite)}")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        outside = ((images < 0) | (images > 1)).flatten(1).any(1).nonzero()[:, 0].tolist()
        hint = "8-bit data as floats? divide by 255 or pass uint8 (scaled automatically); "
        raise ValueError(
            f"images must have values in [0, 1], found [{low:g}, {high:g}] "
            f"({len(outside)} of {images.shape[0]} image(s), first at image {outside[0]}); "
            + (hint if 1.0 < high <= 255.0 else "")
            + "values are never clamped, as that would give a wrong mask"
        )


def _scale_integers(x: Tensor) -> Tensor:
    """uint8 / uint16 -> float32 in ``[0, 1]``; floats unchanged; other dtypes refused."""
    if x.is_floating_point():
        return x
    scale = _INT_SCALE.get(x.dtype)
    if scale is None:
        raise ValueError(f"images must be uint8, uint16 or float in [0, 1], got dtype {x.dtype}")
    # float64 first, as read_image does, so every input type gives identical pixels.
    return (x.to(torch.float64) / scale).to(torch.float32)


def _numpy_scale(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise ValueError(f"images must be uint8, uint16 or float in [0, 1], got dtype {dtype}")


def _array_to_batch(arr: np.ndarray) -> Tensor:
    """``(H, W)`` gray or ``(H, W, 3|4)`` colour array -> float ``(1, 1, H, W)``.

    Colour becomes BT.601 luma; alpha is dropped.
    """
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        gray = arr[..., :3].astype(np.float64) @ _LUMA / _numpy_scale(arr.dtype)
    elif arr.ndim == 2:
        gray = arr.astype(np.float64) / _numpy_scale(arr.dtype)
    else:
        raise ValueError(f"a numpy image must be (H, W) or (H, W, 3|4), got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None, None]


def _pil_to_batch(image: Image.Image) -> Tensor:
    """A PIL image -> float ``(1, 1, H, W)`` (see the module docstring for the modes)."""
    if image.mode.startswith("I;16"):
        return _array_to_batch(np.asarray(image).astype(np.uint16))
    if image.mode == "I":
        arr = np.asarray(image, dtype=np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(
                f"a mode 'I' PIL image must hold 0..65535, found [{arr.min():g}, {arr.max():g}]"
            )
        return _array_to_batch(arr / (65535.0 if arr.max(initial=0) > 255 else 255.0))
    if image.mode == "F":
        return _array_to_batch(np.asarray(image, dtype=np.float32))
    return _array_to_batch(np.asarray(image.convert("L")))


def as_batch(images: ImageInput) -> Tensor:
    """Turn any accepted input into a validated float ``(B, 1, H, W)`` batch in ``[0, 1]``.

    Args:
        images: A ``(B, 1, H, W)`` or ``(1, H, W)`` tensor, an ``(H, W)`` or
            ``(H, W, 3|4)`` numpy array, a PIL image, or a path (``str`` or
            ``os.PathLike``) to an image file.

    Raises:
        ValueError: See :func:`check_batch` and the conversion rules above;
            :class:`~cxr_curriculum.data.ImageReadError` (a ``ValueError``) for a file
            that cannot be read.
    """
    if isinstance(images, str | os.PathLike):
        from cxr_curriculum.data.io import read_image

        batch = read_image(Path(images))[None]
    elif isinstance(images, Image.Image):
        batch = _pil_to_batch(images)
    elif isinstance(images, np.ndarray):
        batch = _array_to_batch(images)
    elif isinstance(images, Tensor):
        batch = _scale_integers(images[None] if images.ndim == 3 else images)
    else:
        raise ValueError(
            f"images must be a tensor, numpy array, PIL image or path, got {type(images).__name__}"
        )
    check_batch(batch)
    return batch
