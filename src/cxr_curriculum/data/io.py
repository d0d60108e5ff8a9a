"""Reading chest X-ray images and lung masks, with clear errors.

Every image becomes a ``torch.float32`` tensor ``(1, H, W)`` in ``[0, 1]`` and every
lung mask a ``torch.uint8`` tensor ``(1, H, W)`` with 0 background, 1 lung and
:data:`MASK_IGNORE` (255) for pixels to ignore (see ``docs/architecture.md``).

A file that cannot be read raises :class:`ImageReadError`, which names the file and
the reason (zero-byte, truncated, not an image, mask size not matching its image),
instead of an anonymous PIL traceback in the middle of an epoch.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_IGNORE",
    "ImageReadError",
    "check_image",
    "is_image_file",
    "read_image",
    "read_mask",
]

#: Value of a mask pixel that carries no label (neither lung nor background).
MASK_IGNORE = 255

#: File name suffixes treated as images (compared case-insensitively).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")

# ITU-R BT.601 luma weights, the same that PIL's ``convert("L")`` uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


class ImageReadError(ValueError):
    """An image or mask file that cannot be used, with the file and the reason.

    Attributes:
        path: The offending file.
        reason: A short human-readable reason, e.g. ``"empty file (0 bytes)"``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[Path, str]]:
        # Keeps the exception picklable across DataLoader worker processes.
        return (type(self), (self.path, self.reason))


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has an image suffix (PNG or JPEG, any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _open_pixels(path: Path) -> np.ndarray:
    """Decode a file completely into a numpy array, or raise :class:`ImageReadError`."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot stat file ({exc})") from None
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated files will be read "
            "silently as partly grey images",
            RuntimeWarning,
            stacklevel=3,
        )
    try:
        with Image.open(path) as img:
            img.load()
            return _to_array(img)
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a PNG/JPEG image (unidentified format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text or "broken data stream" in text or isinstance(exc, EOFError):
            raise ImageReadError(path, f"truncated or corrupt image data ({text})") from None
        raise ImageReadError(path, f"unreadable image ({type(exc).__name__}: {text})") from None


def _to_array(img: Image.Image) -> np.ndarray:
    """Turn any PIL image into a float64 gray array in ``[0, 1]``."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img, dtype=np.float64) / 65535.0
    if mode == "I":
        # 32-bit integer mode: PIL's representation of 16-bit grayscale PNGs.
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / scale, 0.0, 1.0)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max(initial=0.0)
        return np.clip(arr / top, 0.0, 1.0) if top > 1.0 else np.clip(arr, 0.0, 1.0)
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    if mode == "LA":
        return np.asarray(img.getchannel(0), dtype=np.float64) / 255.0
    # RGB, RGBA, P, CMYK, YCbCr, ...: alpha is dropped, colour becomes BT.601 luma.
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    return np.clip(rgb @ _LUMA, 0.0, 1.0)


def read_image(path: str | os.PathLike[str]) -> Tensor:
    """Read a PNG or JPEG radiograph as one channel.

    8-bit and 16-bit files, gray, RGB and RGBA are accepted; colour is turned into
    BT.601 luma and alpha is dropped.

    Args:
        path: The image file.

    Returns:
        ``torch.float32`` tensor ``(1, H, W)`` with values in ``[0, 1]``.

    Raises:
        ImageReadError: The file is missing, empty, truncated or not an image.
    """
    arr = _open_pixels(Path(path))
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).unsqueeze(0)


def read_mask(
    path: str | os.PathLike[str],
    *,
    ignore_value: int | None = None,
    size: tuple[int, int] | None = None,
) -> Tensor:
    """Read a lung mask as ``0`` background, ``1`` lung, :data:`MASK_IGNORE` ignore.

    A pixel is lung when its 8-bit gray value is at least 128, or, for masks stored as
    0/1, when it equals 1. The format is read from the file content, so V7 masks that
    are PNG files named ``.jpg`` are read correctly.

    Args:
        path: The mask file.
        ignore_value: Raw gray value that marks "ignore" (127 for V7 Labs masks), or
            None when the mask has no ignore region.
        size: Expected ``(H, W)`` of the matching image; a mask of another size raises.

    Returns:
        ``torch.uint8`` tensor ``(1, H, W)`` with values in ``{0, 1, 255}``.

    Raises:
        ImageReadError: The file cannot be read or its size differs from ``size``.
    """
    path = Path(path)
    raw = np.rint(_open_pixels(path) * 255.0).astype(np.int16)
    if size is not None and tuple(raw.shape) != tuple(size):
        raise ImageReadError(
            path,
            f"mask size {raw.shape[0]}x{raw.shape[1]} (HxW) does not match its image "
            f"size {size[0]}x{size[1]}",
        )
    lung = raw == 1 if raw.max(initial=0) == 1 else raw >= 128
    out = lung.astype(np.uint8)
    if ignore_value is not None:
        out[raw == ignore_value] = MASK_IGNORE
    return torch.from_numpy(out).unsqueeze(0)


def check_image(
    path: str | os.PathLike[str],
    mask_path: str | os.PathLike[str] | None = None,
) -> str | None:
    """Fully decode a file (and its mask) and say what is wrong, if anything.

    Args:
        path: The image file.
        mask_path: Optional mask that must decode and have the image's size.

    Returns:
        None when the file is usable, else the reason as a string (the
        :class:`ImageReadError` message, which names the file).
    """
    try:
        arr = _open_pixels(Path(path))
        if mask_path is not None:
            read_mask(mask_path, size=(arr.shape[0], arr.shape[1]))
    except ImageReadError as exc:
        return str(exc)
    return None
