"""Opening DICOM files with pydicom, and their non-identifying metadata.

pydicom (the ``dicom`` extra, with the pylibjpeg plugins for JPEG, JPEG-LS and JPEG
2000) is imported only when a DICOM file is read; without it a
:class:`~cxr_curriculum.data.DicomSupportError` names the extra to install. ACR-NEMA
files (no preamble, no ``DICM``, no file meta) are read with ``force=True`` and the
transfer syntax pydicom guesses from the first elements.

Header values are never put into errors or logs (patient names, ids and dates are
identifying): errors quote exception types, not pydicom's messages about the header,
and pydicom's validation warnings, which can quote values, are silenced while reading
(:func:`quiet_pydicom`). The pixel pipeline is in
:mod:`~cxr_curriculum.data.dicom_pixels`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_curriculum.data.errors import DICOM_EXTRA_HINT, DicomSupportError, ImageReadError
from cxr_curriculum.data.formats import sniff_file

__all__ = [
    "DicomMeta",
    "open_dicom",
    "pydicom_module",
    "quiet_pydicom",
    "read_dicom_meta",
    "truncation",
]


@dataclass(frozen=True)
class DicomMeta:
    """Header facts that loaders use; identifying values are kept out of ``repr``.

    Attributes:
        rows: Image height in pixels.
        columns: Image width in pixels.
        frames: Number of Frames (1 for a single image).
        bits_stored: Bits Stored.
        photometric: Photometric Interpretation, e.g. ``"MONOCHROME1"``.
        transfer_syntax: Name of the transfer syntax, e.g. ``"JPEG 2000 Image
            Compression (Lossless Only)"``.
        modality: ``"CR"``, ``"DX"``, ... or None.
        view_position: ``"PA"``, ``"AP"``, ``"LL"``, ... or None.
        body_part: Body Part Examined, e.g. ``"CHEST"``, or None.
        pixel_spacing: ``(row, column)`` spacing in mm from Pixel Spacing, else Imager
            Pixel Spacing; None when absent or not positive.
        patient_id: Patient ID (for patient-level splits), or None. Identifying: not in
            ``repr`` and never logged.
    """

    rows: int
    columns: int
    frames: int
    bits_stored: int
    photometric: str
    transfer_syntax: str
    modality: str | None = None
    view_position: str | None = None
    body_part: str | None = None
    pixel_spacing: tuple[float, float] | None = None
    patient_id: str | None = field(default=None, repr=False)


def pydicom_module(path: str | os.PathLike[str]) -> Any:
    """The pydicom module, or DicomSupportError naming the extra (``path`` is the file)."""
    try:
        import pydicom
    except ImportError:
        raise DicomSupportError(
            f"{path} is a DICOM file; reading DICOM needs the optional 'dicom' extra "
            f"(pydicom and the pylibjpeg plugins): {DICOM_EXTRA_HINT}"
        ) from None
    return pydicom


@contextlib.contextmanager
def quiet_pydicom(pydicom: Any) -> Iterator[None]:
    """Silence pydicom's validation warnings and logs (they can quote header values)."""
    settings = pydicom.config.settings
    mode = settings.reading_validation_mode
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings.reading_validation_mode = pydicom.config.IGNORE
        try:
            yield
        finally:
            settings.reading_validation_mode = mode


def open_dicom(path: str | os.PathLike[str], *, acr_nema: bool, pixels: bool) -> Any:
    """Parse a DICOM file (call inside :func:`quiet_pydicom`).

    ACR-NEMA files get the transfer syntax pydicom guessed, so their pixels decode.

    Raises:
        ImageReadError: A malformed header (the message holds its type only).
    """
    path = Path(path)
    pydicom = pydicom_module(path)
    try:
        ds = pydicom.dcmread(path, force=acr_nema, stop_before_pixels=not pixels)
    except Exception as exc:  # pydicom raises many types for malformed headers
        # The type only: pydicom's messages can quote header values.
        raise ImageReadError(path, f"malformed DICOM header ({type(exc).__name__})") from None
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        uid = pydicom.uid
        syntax = (
            uid.ImplicitVRLittleEndian
            if implicit
            else (uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
        )
        if meta is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


_UNDEFINED_LENGTH = 0xFFFFFFFF


def truncation(path: str | os.PathLike[str], ds: Any) -> str | None:
    """Why a parsed DICOM without pixel data looks cut short, or ``None``.

    pydicom stops silently at the end of a cut file, so a film cut to a few hundred bytes
    parses as an object without pixel data. It is called truncated when its data set is
    empty, when an element's declared length runs past the end of the file, when bytes
    are left after the last complete element, or when its SOP class is an image storage
    class (an image object always carries pixel data).

    Args:
        path: The file ``ds`` was read from.
        ds: The pydicom data set (read without ``stop_before_pixels``).
    """
    size = Path(path).stat().st_size
    if len(ds) == 0:
        return f"truncated DICOM file ({size} bytes): no data set could be read from it"
    end = 0
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset converts every element)
        raw = ds.get_item(tag)
        tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if isinstance(tell, int) and isinstance(length, int) and length != _UNDEFINED_LENGTH:
            end = max(end, tell + length)
    if end > size:
        return f"truncated DICOM file ({size} bytes; its elements need at least {end})"
    if 0 < end < size - 1 and "PixelData" not in ds:
        return f"truncated DICOM file ({size} bytes; {size - end} unreadable bytes at its end)"
    sop = getattr(ds.get("SOPClassUID"), "name", "") or ""
    if "Image Storage" in sop:
        return f"truncated DICOM file ({size} bytes): an image object ({sop}) without pixel data"
    return None


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _spacing(ds: Any) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0:
            return (row, col)
    return None


def read_dicom_meta(path: str | os.PathLike[str]) -> DicomMeta:
    """Read a DICOM file's header (no pixel data) into a :class:`DicomMeta`.

    Args:
        path: A DICOM or ACR-NEMA file.

    Raises:
        ImageReadError: The file is not DICOM or its header is malformed.
        DicomSupportError: pydicom is not installed.
    """
    p = Path(path)
    fmt = sniff_file(p)
    if fmt not in ("dicom", "acr-nema"):
        raise ImageReadError(p, f"not a DICOM file (content is {fmt})")
    with quiet_pydicom(pydicom_module(p)):
        return _meta(open_dicom(p, acr_nema=fmt == "acr-nema", pixels=False))


def _meta(ds: Any) -> DicomMeta:
    frames = ds.get("NumberOfFrames")
    return DicomMeta(
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        frames=int(frames) if frames not in (None, "") else 1,
        bits_stored=int(ds.get("BitsStored", 0) or 0),
        photometric=_text(ds, "PhotometricInterpretation") or "",
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID.name),
        modality=_text(ds, "Modality"),
        view_position=_text(ds, "ViewPosition"),
        body_part=_text(ds, "BodyPartExamined"),
        pixel_spacing=_spacing(ds),
        patient_id=_text(ds, "PatientID"),
    )
