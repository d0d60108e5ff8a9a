"""Reading chest X-ray images and lung masks, with clear errors.

Every image becomes a ``torch.float32`` tensor ``(1, H, W)`` in ``[0, 1]`` and every
lung mask a ``torch.uint8`` tensor ``(1, H, W)`` with 0 background, 1 lung and
:data:`MASK_IGNORE` (255) for pixels to ignore (see ``docs/architecture.md``).

Formats are read from the file's content, never its name
(:mod:`~cxr_curriculum.data.formats`): PNG and JPEG (8 or 16 bit, gray or colour) with
Pillow, DICOM and ACR-NEMA at full bit depth with pydicom (the ``dicom`` extra; see
:mod:`~cxr_curriculum.data.dicom_pixels`). DICOM is recognised first, so a DICOM file whose
preamble holds a TIFF header is read as DICOM. Every other format (TIFF, BMP, GIF,
WebP, JPEG 2000 files) is refused with a reason that names it.

A file that cannot be read raises :class:`ImageReadError`, which names the file and
the reason (zero-byte, truncated, not an image, too small, mask size not matching its
image), instead of an anonymous PIL traceback in the middle of an epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from cxr_curriculum.data.dicom_pixels import read_dicom
from cxr_curriculum.data.errors import ImageReadError
from cxr_curriculum.data.formats import DICOM_SUFFIXES, HEADER_BYTES, sniff_bytes
from cxr_curriculum.data.raster import read_raster
from cxr_curriculum.data.windowing import Window, check_window

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_IGNORE",
    "MIN_IMAGE_SIDE",
    "DecodedImage",
    "ImageReadError",
    "check_image",
    "decode_image",
    "is_image_file",
    "read_image",
    "read_mask",
]

#: Value of a mask pixel that carries no label (neither lung nor background).
MASK_IGNORE = 255

#: File name suffixes treated as images (compared case-insensitively): PNG, JPEG, DICOM.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", *DICOM_SUFFIXES)

#: Smallest image side (pixels) that :func:`read_image` and every loader accept. Smaller
#: files (1x1 placeholders, 8x1 strips, icons) are not radiographs: they raise
#: ``ImageReadError("image too small ...")``, or are counted skips under
#: ``on_error="skip"``.
MIN_IMAGE_SIDE = 16

_NO_SUFFIX_NAMES_SKIPPED = ("DICOMDIR",)  # a DICOM directory record, not an image


class DecodedImage(NamedTuple):
    """A decoded file before it becomes a tensor.

    Attributes:
        array: ``float32`` ``(H, W)`` in ``[0, 1]``.
        bits: Precision of the source: 8, or the DICOM Bits Stored / 16 for deeper files.
        format: ``"png"``, ``"jpeg"``, ``"dicom"`` or ``"acr-nema"``.
    """

    array: np.ndarray
    bits: int
    format: str


def _head(path: Path) -> tuple[bytes, int]:
    """The first bytes and the size of a file, or ImageReadError (missing, empty)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open file ({exc.strerror})") from None
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    return head, size


def _refuse(path: Path, fmt: str) -> ImageReadError:
    if fmt == "unknown":
        return ImageReadError(path, "not a PNG/JPEG/DICOM image (unidentified format)")
    return ImageReadError(
        path,
        f"unsupported image format {fmt.upper()} (PNG, JPEG and DICOM are read; convert "
        "the file, e.g. to a 16-bit PNG)",
    )


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a loader scanning a folder takes ``path`` as an image.

    The rule: a suffix in :data:`IMAGE_SUFFIXES` (``.png``, ``.jpg``, ``.jpeg``,
    ``.dcm``, ``.dicom``, any case); or, for files named without a suffix or with a
    numeric one (DICOM archives name files by UID, e.g. ``1.2.840.113619.2.5``), a
    DICOM or ACR-NEMA header in the first 132 bytes (the file is opened). ``DICOMDIR``
    files are not images.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if (suffix and not suffix[1:].isdigit()) or p.name.upper() in _NO_SUFFIX_NAMES_SKIPPED:
        return False
    try:
        head, size = _head(p)
    except ImageReadError:
        return False
    return sniff_bytes(head, size) in ("dicom", "acr-nema")


def decode_image(path: str | os.PathLike[str], *, window: Window = "auto") -> DecodedImage:
    """Decode any supported file into a gray array with its source precision.

    The lower level of :func:`read_image` (which adds the size check and the tensor);
    :class:`~cxr_curriculum.data.DecodedCache` uses ``bits`` to store 8-bit sources as
    ``uint8`` and deeper ones as ``uint16``.

    Args:
        path: The image file.
        window: DICOM windowing policy (see :mod:`~cxr_curriculum.data.windowing`);
            PNG/JPEG files are already display images and are not windowed.

    Raises:
        ImageReadError: Missing, empty, truncated, unsupported or not an image.
        DicomSupportError: A DICOM file and no DICOM support installed.
    """
    window = check_window(window)
    p = Path(path)
    head, size = _head(p)
    fmt = sniff_bytes(head, size)
    if fmt in ("dicom", "acr-nema"):
        pixels = read_dicom(p, window=window, acr_nema=fmt == "acr-nema")
        bits = 8 if pixels.bits_stored <= 8 else 16
        return DecodedImage(pixels.array.astype(np.float32), bits, fmt)
    if fmt not in ("png", "jpeg"):
        raise _refuse(p, fmt)
    arr, bits = read_raster(p, fmt)
    return DecodedImage(arr.astype(np.float32), bits, fmt)


def check_size(path: str | os.PathLike[str], height: int, width: int, min_side: int) -> None:
    """Raise ImageReadError when an image's shorter side is under ``min_side`` pixels."""
    if min(height, width) < min_side:
        raise ImageReadError(
            path,
            f"image too small ({height}x{width} px HxW; the shorter side must be at least "
            f"{min_side} px)",
        )


def read_image(
    path: str | os.PathLike[str], *, window: Window = "auto", min_side: int = MIN_IMAGE_SIDE
) -> Tensor:
    """Read a radiograph (PNG, JPEG or DICOM, told apart by content) as one channel.

    PNG/JPEG: 8-bit and 16-bit files, gray, RGB and RGBA are accepted; colour is turned
    into BT.601 luma and alpha is dropped. DICOM (and ACR-NEMA): full bit depth, modality
    LUT, the ``window`` policy, MONOCHROME1 inverted (see ``docs/data.md``, "DICOM").

    Args:
        path: The image file.
        window: DICOM windowing policy: ``"auto"`` (the file's VOI LUT or window, else
            min-max), ``"voi"``, ``"minmax"`` or ``"percentile"``.
        min_side: Smallest accepted height and width in pixels (0 turns the check off).

    Returns:
        ``torch.float32`` tensor ``(1, H, W)`` with values in ``[0, 1]``.

    Raises:
        ImageReadError: The file is missing, empty, truncated, smaller than
            ``min_side``, in another format (TIFF, BMP, ...) or not an image.
        DicomSupportError: A DICOM file and the ``dicom`` extra is not installed.
    """
    decoded = decode_image(path, window=window)
    height, width = decoded.array.shape
    check_size(path, height, width, min_side)
    return torch.from_numpy(np.ascontiguousarray(decoded.array)).unsqueeze(0)


def _open_pixels(path: Path) -> np.ndarray:
    """A PNG/JPEG mask file as float64 gray in ``[0, 1]``, or ImageReadError."""
    head, size = _head(path)
    fmt = sniff_bytes(head, size)
    if fmt in ("dicom", "acr-nema"):
        raise ImageReadError(path, "a DICOM file where a PNG/JPEG mask was expected")
    if fmt not in ("png", "jpeg"):
        raise _refuse(path, fmt)
    return read_raster(path, fmt)[0]


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

    The file is read as :func:`read_image` reads it (so images under
    :data:`MIN_IMAGE_SIDE` are reported as too small).

    Args:
        path: The image file.
        mask_path: Optional mask that must decode and have the image's size.

    Returns:
        None when the file is usable, else the reason as a string (the
        :class:`ImageReadError` message, which names the file).
    """
    try:
        image = read_image(path)
        if mask_path is not None:
            read_mask(mask_path, size=(int(image.shape[-2]), int(image.shape[-1])))
    except ImageReadError as exc:
        return str(exc)
    return None
