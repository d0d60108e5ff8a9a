"""Decoding PNG and JPEG files with Pillow into gray ``float64`` arrays in ``[0, 1]``.

Only the format the file's content says it is (see :mod:`~cxr_curriculum.data.formats`)
is tried, so Pillow never guesses: a DICOM file with a TIFF header in its preamble, or
a TIFF named ``.png``, never reaches it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from cxr_curriculum.data.errors import ImageReadError

__all__ = ["read_raster"]

# ITU-R BT.601 luma weights, the same that PIL's ``convert("L")`` uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG"}


def _to_array(img: Image.Image) -> tuple[np.ndarray, int]:
    """Any PIL image as a float64 gray array in ``[0, 1]`` and its bit depth (8 or 16)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.float64) / 65535.0, 16
    if mode == "I":
        # 32-bit integer mode: PIL's representation of 16-bit grayscale PNGs.
        arr = np.asarray(img, dtype=np.float64)
        if arr.max(initial=0) > 255:
            return np.clip(arr / 65535.0, 0.0, 1.0), 16
        return np.clip(arr / 255.0, 0.0, 1.0), 8
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max(initial=0.0)
        return (np.clip(arr / top, 0.0, 1.0) if top > 1.0 else np.clip(arr, 0.0, 1.0)), 16
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.float64) / 255.0, 8
    if mode == "LA":
        return np.asarray(img.getchannel(0), dtype=np.float64) / 255.0, 8
    # RGB, RGBA, P, CMYK, YCbCr, ...: alpha is dropped, colour becomes BT.601 luma.
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    return np.clip(rgb @ _LUMA, 0.0, 1.0), 8


def read_raster(path: str | os.PathLike[str], fmt: str) -> tuple[np.ndarray, int]:
    """Decode a PNG or JPEG file completely.

    Args:
        path: The file.
        fmt: ``"png"`` or ``"jpeg"``, as sniffed from its content.

    Returns:
        ``float64`` ``(H, W)`` in ``[0, 1]`` (colour as BT.601 luma, alpha dropped) and
        the bit depth of the source (8, or 16 for 16-bit and float files).

    Raises:
        ImageReadError: Truncated, corrupt or too large.
    """
    path = Path(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated files will be read "
            "silently as partly grey images",
            RuntimeWarning,
            stacklevel=4,
        )
    try:
        with Image.open(path, formats=[_PIL_FORMATS[fmt]]) as img:
            img.load()
            return _to_array(img)
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text or "broken data stream" in text or isinstance(exc, EOFError):
            raise ImageReadError(path, f"truncated or corrupt image data ({text})") from None
        raise ImageReadError(path, f"unreadable image ({type(exc).__name__}: {text})") from None
