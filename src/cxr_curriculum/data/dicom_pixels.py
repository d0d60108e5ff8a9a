"""Decoding DICOM radiographs at full bit depth, to display values in ``[0, 1]``.

The display pipeline of DICOM PS3.3 C.11 (and PS3.4 N.2.1.1), in this order, all in
``float64``:

1. stored values, decoded by pydicom with ``BitsStored`` respected (bits above it,
   e.g. overlays, are masked; signed data sign-extended);
2. the modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence,
   ``pydicom.pixels.apply_modality_lut``);
3. the window of :mod:`~cxr_curriculum.data.windowing` (``window="auto"``: the file's
   VOI LUT Sequence, else its first Window Center/Width, else min-max), giving ``[0, 1]``;
   under ``"auto"`` a header window that would send nearly all of the film's pixels to
   one end (:data:`HIDDEN_FRACTION`; e.g. a window outside the stored values, which
   shows a constant image) gives way to the film's own range (min-max), with one
   :class:`DicomWindowWarning` per file naming it, recorded in
   :attr:`DicomPixels.window` and :func:`window_fallbacks`;
4. ``MONOCHROME1`` films (higher value = darker) inverted as ``1 - y``, so that bone
   and lungs look the same way round as in a ``MONOCHROME2`` film or a PNG.

torchxrayvision's ``read_xray_dcm`` and MONAI's ``PydicomReader`` were read for
comparison: neither applies both LUTs by default nor detects DICOM by content.

Opening the file, the ``dicom`` extra and the no-identifiers rule are in
:mod:`~cxr_curriculum.data.dicom`.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cxr_curriculum.data.dicom import open_dicom, pydicom_module, quiet_pydicom, truncation
from cxr_curriculum.data.errors import DICOM_EXTRA_HINT, DicomSupportError, ImageReadError
from cxr_curriculum.data.windowing import (
    Window,
    check_window,
    linear_window,
    minmax_window,
    percentile_window,
)

__all__ = [
    "HIDDEN_FRACTION",
    "DicomPixels",
    "DicomWindowWarning",
    "read_dicom",
    "window_fallbacks",
]

#: Under ``window="auto"``, a header window that leaves at least this fraction of a film's
#: pixels at 0 or at 1 (within one 1/1024 display step) hides the film: the film's own
#: range is used instead, if it shows more.
HIDDEN_FRACTION = 0.99
_STEP = 1.0 / 1024
_FALLBACKS: dict[str, str] = {}
_LOCK = threading.Lock()

_GRAY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
_LUMA = np.array([0.299, 0.587, 0.114])


class DicomWindowWarning(UserWarning):
    """A film's header VOI window would hide it; its own range was used (``window="auto"``)."""


class DicomPixels(NamedTuple):
    """A decoded DICOM image.

    Attributes:
        array: ``float64`` ``(H, W)`` display values in ``[0, 1]``.
        bits_stored: The file's Bits Stored (the precision the values came from).
        window: What was applied: ``"voi-lut"``, ``"voi-window"``, ``"minmax"``,
            ``"percentile"``, ``"colour"`` (RGB/YBR luma), or ``"minmax-fallback"``
            when the header's window would have hidden the film.
        note: Why a fallback happened (``None`` otherwise).
    """

    array: np.ndarray
    bits_stored: int
    window: str = ""
    note: str | None = None


def window_fallbacks() -> dict[str, str]:
    """Files whose header window was replaced by their own range in this process.

    Returns:
        ``{path: why}``; DataLoader worker processes keep their own record (their warning
        still reaches the console).
    """
    with _LOCK:
        return dict(_FALLBACKS)


def _check_image_object(path: Path, ds: Any) -> str:
    """The photometric interpretation, or ImageReadError for what cannot be shown."""
    if "PixelData" not in ds:
        cut = truncation(path, ds)
        if cut is not None:
            raise ImageReadError(path, f"{cut}; copy the file again from its source")
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or "unknown SOP class"
        raise ImageReadError(path, f"DICOM object without pixel data ({kind})")
    frames = ds.get("NumberOfFrames")
    n = int(frames) if frames not in (None, "") else 1
    if n > 1:
        raise ImageReadError(path, f"multi-frame DICOM ({n} frames); one image per file is read")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in _GRAY + _COLOUR:
        raise ImageReadError(
            path, f"unsupported DICOM Photometric Interpretation {photometric or '(none)'}"
        )
    return photometric


def _decode(path: Path, ds: Any) -> np.ndarray:
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise ImageReadError(path, f"unsupported DICOM transfer syntax {syntax.name}") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
        raise DicomSupportError(
            f"{path} is compressed as {syntax.name}, and no decoder for it is installed "
            f"({missing}); install the 'dicom' extra: {DICOM_EXTRA_HINT}"
        )
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # decoders raise ValueError, RuntimeError, OSError, ...
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ImageReadError(
            path, f"corrupt or truncated DICOM pixel data ({type(exc).__name__}: {text})"
        ) from None


def _first(value: Any) -> float:
    """The first of a (possibly multi-valued) DS element: the default window."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return float(value)
    return float(value[0])


def _voi_lut(values: np.ndarray, ds: Any) -> np.ndarray:
    """The file's first VOI LUT, scaled from the LUT's own output range to [0, 1]."""
    from pydicom.pixels import apply_voi

    entries, first, _bits = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
    table = apply_voi(first + np.arange(entries or 2**16), ds).astype(np.float64)
    out = apply_voi(np.rint(values).astype(np.int64), ds).astype(np.float64)
    low, high = float(table.min()), float(table.max())
    return np.clip((out - low) / (high - low), 0.0, 1.0) if high > low else np.zeros_like(out)


def _voi(path: Path, values: np.ndarray, ds: Any, window: Window) -> tuple[np.ndarray, str]:
    """The file's VOI transform in [0, 1] and its name; ``"auto"`` falls back to min-max."""
    problem = "no VOI window or VOI LUT in the file"
    if ds.get("VOILUTSequence"):
        try:
            return _voi_lut(values, ds), "voi-lut"
        except Exception as exc:  # a malformed LUT: descriptor or data missing or wrong
            problem = f"invalid VOI LUT in the file ({type(exc).__name__})"
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        function = str(ds.get("VOILUTFunction", "") or "LINEAR")
        try:
            return linear_window(values, _first(center), _first(width), function), "voi-window"
        except (TypeError, ValueError, IndexError) as exc:
            problem = f"invalid VOI window in the file ({exc})"
    if window == "voi":
        raise ImageReadError(
            path, f"{problem} (window='voi'); use window='auto', 'minmax' or 'percentile'"
        )
    return minmax_window(values), "minmax"


def _hidden(shown: np.ndarray) -> tuple[float, int]:
    """The fraction of pixels within one display step of one end, and which end."""
    low, high = float(np.mean(shown <= _STEP)), float(np.mean(shown >= 1.0 - _STEP))
    return (low, 0) if low >= high else (high, 1)


def _window_text(ds: Any, kind: str) -> str:
    if kind == "voi-lut":
        return "its VOI LUT"
    return f"its VOI window (center {_first(ds.WindowCenter):g}, width {_first(ds.WindowWidth):g})"


def _unhide(
    values: np.ndarray, shown: np.ndarray, ds: Any, kind: str
) -> tuple[np.ndarray, str, str | None]:
    """Under ``"auto"``: the film's own range when the header window hides the film."""
    if kind not in ("voi-lut", "voi-window"):
        return shown, kind, None
    fraction, end = _hidden(shown)
    if fraction < HIDDEN_FRACTION:
        return shown, kind, None
    own = minmax_window(values)
    if _hidden(own)[0] >= fraction:  # the film's own range shows no more
        return shown, kind, None
    where = "below" if end == 0 else "above"
    note = (
        f"{_window_text(ds, kind)} puts {100 * fraction:.1f} % of the film's pixels {where} "
        f"it (the film's values run from {float(values.min()):g} to "
        f"{float(values.max()):g}) and would show a nearly constant image, so the film's own range "
        "(min-max) was used instead; pass window='voi' to keep the header's window"
    )
    return own, "minmax-fallback", note


def read_dicom(
    path: str | os.PathLike[str], *, window: Window = "auto", acr_nema: bool = False
) -> DicomPixels:
    """Decode a single-frame DICOM radiograph to display values in ``[0, 1]``.

    Args:
        path: The DICOM file.
        window: Windowing policy (see :mod:`~cxr_curriculum.data.windowing`).
        acr_nema: The file has no preamble and no ``DICM`` (read with pydicom's
            ``force=True`` and the transfer syntax it guesses).

    Returns:
        :class:`DicomPixels`: ``float64`` ``(H, W)`` in ``[0, 1]`` (MONOCHROME1
        inverted), the file's Bits Stored and the window applied. Colour objects
        (RGB/YBR) become BT.601 luma of their stored range; ``window`` does not apply
        to them.

    Warns:
        DicomWindowWarning: Once per file and process, when ``window="auto"`` replaced
            a header window that hid the film with the film's own range.

    Raises:
        ImageReadError: Malformed header, no pixel data, multi-frame, unsupported
            photometric interpretation or transfer syntax, corrupt pixel data, or no
            VOI in the file with ``window="voi"``.
        DicomSupportError: pydicom or the decoder plugin for its compression is not
            installed (the message says ``pip install "cxr_curriculum[dicom]"``).
        ValueError: An unknown ``window``.
    """
    window = check_window(window)
    p = Path(path)
    with quiet_pydicom(pydicom_module(p)):
        pixels = _read(p, window, acr_nema)
    if pixels.note is not None:  # outside quiet_pydicom, which silences warnings
        with _LOCK:
            first = str(p) not in _FALLBACKS
            _FALLBACKS[str(p)] = pixels.note
        if first:
            warnings.warn(f"{p}: {pixels.note}", DicomWindowWarning, stacklevel=2)
    return pixels


def _read(p: Path, window: Window, acr_nema: bool) -> DicomPixels:
    """The pipeline of the module docstring (run inside ``quiet_pydicom``)."""
    ds = open_dicom(p, acr_nema=acr_nema, pixels=True)
    photometric = _check_image_object(p, ds)
    stored = _decode(p, ds)
    bits = int(ds.get("BitsStored", 8) or 8)
    if photometric in _COLOUR:
        if stored.ndim != 3 or stored.shape[-1] != 3:
            raise ImageReadError(p, f"colour DICOM with pixel array shape {stored.shape}")
        return DicomPixels(np.clip(stored @ _LUMA / (2**bits - 1), 0.0, 1.0), bits, "colour")
    if stored.ndim != 2:
        raise ImageReadError(p, f"expected one gray image, got pixel array shape {stored.shape}")
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    note = None
    if window in ("auto", "voi"):
        shown, kind = _voi(p, values, ds, window)
        if window == "auto":
            shown, kind, note = _unhide(values, shown, ds, kind)
    elif window == "minmax":
        shown, kind = minmax_window(values), "minmax"
    else:
        shown, kind = percentile_window(values), "percentile"
    if photometric == "MONOCHROME1":
        shown = 1.0 - shown
    return DicomPixels(shown, bits, kind, note)
