"""Windowing: from a radiograph's modality values to display intensities in ``[0, 1]``.

A DICOM film stores 10-16 bit values; what a radiologist sees is a *window* of them
(DICOM PS3.3 C.11.2, the VOI LUT module). The policies, chosen with ``window=``:

* ``"auto"`` (default): the file's own VOI transform when it has one (its VOI LUT
  Sequence, else its first Window Center/Width pair with its VOI LUT Function), else
  ``"minmax"``.
* ``"voi"``: the file's own VOI transform; a file without one is an error.
* ``"minmax"``: the image's minimum to 0 and maximum to 1 (linear).
* ``"percentile"``: the image's :data:`PERCENTILES` (0.5 % and 99.5 %) to 0 and 1,
  clipped: robust to collimator edges, burnt-in text and markers.

The functions here are pure numpy on ``float64`` arrays of any shape and return
``float64`` in ``[0, 1]``; every step keeps full precision (nothing goes through 8 bits).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

__all__ = [
    "PERCENTILES",
    "WINDOWS",
    "Window",
    "check_window",
    "linear_window",
    "minmax_window",
    "percentile_window",
]

#: A windowing policy (see the module docstring).
Window = Literal["auto", "voi", "minmax", "percentile"]

#: The accepted ``window=`` values.
WINDOWS: tuple[str, ...] = get_args(Window)

#: Lower and upper percentile of ``window="percentile"``.
PERCENTILES: tuple[float, float] = (0.5, 99.5)

#: VOI LUT Functions (0028,1056) that :func:`linear_window` implements.
VOI_FUNCTIONS: tuple[str, ...] = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def check_window(window: str) -> Window:
    """Validate a ``window=`` argument.

    Raises:
        ValueError: ``window`` is not one of :data:`WINDOWS`.
    """
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")
    return window  # type: ignore[return-value]


def linear_window(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """Apply a DICOM Window Center/Width, scaled to ``[0, 1]``.

    The formulas of DICOM PS3.3 C.11.2.1.2 (``LINEAR``) and C.11.2.1.3
    (``LINEAR_EXACT``, ``SIGMOID``) with output range ``y_min = 0``, ``y_max = 1``:
    ``LINEAR`` maps ``x <= c - 0.5 - (w - 1) / 2`` to 0, ``x > c - 0.5 + (w - 1) / 2``
    to 1 and ``((x - (c - 0.5)) / (w - 1) + 0.5)`` in between.

    Args:
        values: Modality values (after the modality LUT), any shape.
        center: Window Center (0028,1050).
        width: Window Width (0028,1051); at least 1 for ``LINEAR``, positive otherwise.
        function: VOI LUT Function (0028,1056), case-insensitive.

    Returns:
        ``float64`` array of ``values``' shape in ``[0, 1]``.

    Raises:
        ValueError: An unknown function or a width the function does not allow.
    """
    x = np.asarray(values, dtype=np.float64)
    kind = function.upper()
    if kind == "LINEAR":
        if not width >= 1:
            raise ValueError(f"a LINEAR window needs width >= 1, got {width}")
        if width == 1:  # a step at c - 0.5
            return (x > center - 0.5).astype(np.float64)
        return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    if kind not in VOI_FUNCTIONS:
        raise ValueError(f"VOI LUT Function must be one of {VOI_FUNCTIONS}, got {function!r}")
    if not width > 0:
        raise ValueError(f"a {kind} window needs width > 0, got {width}")
    if kind == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    with np.errstate(over="ignore"):  # exp overflow far below the centre: y = 0 exactly
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))


def _stretch(x: np.ndarray, low: float, high: float) -> np.ndarray:
    if not high > low:  # a constant image: all zeros rather than a division by zero
        return np.zeros_like(x)
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def minmax_window(values: np.ndarray) -> np.ndarray:
    """Map the minimum of ``values`` to 0 and the maximum to 1 (a constant image to 0)."""
    x = np.asarray(values, dtype=np.float64)
    return _stretch(x, float(x.min()), float(x.max()))


def percentile_window(
    values: np.ndarray, low: float = PERCENTILES[0], high: float = PERCENTILES[1]
) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles of ``values`` to 0 and 1, clipped.

    Raises:
        ValueError: Not ``0 <= low < high <= 100``.
    """
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    x = np.asarray(values, dtype=np.float64)
    lo, hi = np.percentile(x, [low, high])
    return _stretch(x, float(lo), float(hi))
