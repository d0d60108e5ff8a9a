"""Which image format a file holds, read from its first bytes, never from its name.

The name is not to be trusted: V7's lung masks are PNG files named ``.jpg``, DICOM
archives name files by UID with no extension, and a DICOM file may carry a TIFF header
in its 128-byte preamble (DICOM PS3.10 section 7.5 allows it), so that TIFF readers
open it as a TIFF. The order of the checks below is therefore fixed:

1. ``DICM`` at byte offset 128: DICOM (PS3.10 file format), whatever the preamble holds.
2. PNG and JPEG signatures.
3. Other known image formats (TIFF, BMP, GIF, WebP, JPEG 2000, ...), which are refused
   by name in the error rather than as "unidentified".
4. ACR-NEMA style DICOM with no preamble and no ``DICM`` (old CR files, some PACS
   exports): the file starts with a data element tag of group ``0x0008`` (identifying
   information) or ``0x0002`` (file meta information), little endian, followed by
   either an explicit VR (two upper-case letters) or a 4-byte length that fits in the
   file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Literal

from cxr_curriculum.data.errors import ImageReadError

__all__ = [
    "DICOM_SUFFIXES",
    "HEADER_BYTES",
    "ImageFormat",
    "sniff_bytes",
    "sniff_file",
    "sniff_format",
]

#: What :func:`sniff_format` returns.
ImageFormat = Literal[
    "png", "jpeg", "dicom", "acr-nema", "tiff", "bmp", "gif", "webp", "jpeg2000", "unknown"
]

#: File name suffixes of DICOM files (compared case-insensitively).
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")

#: Bytes of a file that :func:`sniff_bytes` needs.
HEADER_BYTES = 132

_SIGNATURES: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),  # JP2 box
    (b"\xff\x4f\xff\x51", "jpeg2000"),  # raw J2K codestream
)

_ACR_GROUPS = (0x0002, 0x0008)


def _is_acr_nema(head: bytes, size: int) -> bool:
    """A little-endian data set that starts with a group 0x0002/0x0008 element."""
    if len(head) < 8:
        return False
    group, _element = struct.unpack_from("<HH", head, 0)
    if group not in _ACR_GROUPS:
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR
        return True
    (length,) = struct.unpack_from("<I", head, 4)  # implicit VR: 4-byte value length
    return length == 0xFFFFFFFF or 8 + length <= size


def sniff_bytes(head: bytes, size: int | None = None) -> ImageFormat:
    """The format of a file from its first :data:`HEADER_BYTES` bytes.

    Args:
        head: The file's first bytes (at least 132 for the ``DICM`` check).
        size: The file's size in bytes (for the ACR-NEMA length check); defaults to
            ``len(head)``.

    Returns:
        One of :data:`ImageFormat`; ``"unknown"`` when nothing matches.
    """
    size = len(head) if size is None else size
    if head[128:132] == b"DICM":
        return "dicom"
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 6 and struct.unpack_from("<I", head, 2)[0] == size:
        return "bmp"  # the BMP header's file size field must match
    if _is_acr_nema(head, size):
        return "acr-nema"
    return "unknown"


def sniff_format(path: str | os.PathLike[str]) -> ImageFormat:
    """The format of the file at ``path``, read from its first 132 bytes.

    Raises:
        OSError: The file cannot be opened.
    """
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(HEADER_BYTES)
        size = os.fstat(f.fileno()).st_size
    return sniff_bytes(head, size)


def sniff_file(path: str | os.PathLike[str], what: str = "file") -> ImageFormat:
    """:func:`sniff_format`, with a file that cannot be opened reported as an image error.

    Raises:
        ImageReadError: ``"cannot open file (Permission denied)"`` (``what`` names the
            file's role, e.g. ``"lung mask"``).
    """
    try:
        return sniff_format(path)
    except OSError as exc:
        raise ImageReadError(path, f"cannot open {what} ({exc.strerror})") from None
