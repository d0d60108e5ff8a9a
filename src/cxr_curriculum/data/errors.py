"""The errors of image reading: a bad file, or a missing optional decoder.

:class:`ImageReadError` names the file and the reason. It survives the trip from a
``DataLoader`` worker process: torch's ``ExceptionWrapper.reraise`` rebuilds a worker's
exception as ``type(exc)(message)`` (one string holding the worker's traceback) and
falls back to a ``RuntimeError`` when that call fails, which lost the type and
``.path``. ``ImageReadError(message)`` is therefore accepted too: the path and reason
are read back from the message's last ``ImageReadError: cannot read PATH: REASON``
line, so ``except ImageReadError as e: e.path`` works with ``num_workers > 0`` as well.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["DICOM_EXTRA_HINT", "DicomSupportError", "ImageReadError"]

#: How to install DICOM support; quoted by every error about it.
DICOM_EXTRA_HINT = 'pip install "cxr_curriculum[dicom]"'

# The last "...ImageReadError: cannot read PATH: REASON" line of a worker's traceback.
_MESSAGE = re.compile(r"^(?:[\w.]+\.)?ImageReadError: cannot read (.+)$", re.MULTILINE)


def _split(rest: str) -> tuple[str, str] | None:
    """``PATH: REASON`` -> (PATH, REASON): the first ": " after which PATH exists, else
    the first ": " (paths holding ": " are rare; a missing one is then cut there)."""
    cuts = [i for i in range(len(rest) - 1) if rest.startswith(": ", i)]
    if not cuts:
        return None
    best = next((i for i in cuts if os.path.lexists(rest[:i])), cuts[0])
    return rest[:best], rest[best + 2 :]


class ImageReadError(ValueError):
    """An image or mask file that cannot be used, with the file and the reason.

    Construct it as ``ImageReadError(path, reason)``. The one-argument form
    ``ImageReadError(message)`` rebuilds an error from its formatted message (what
    torch's ``DataLoader`` does with a worker's exception); its ``str`` is then the
    whole message, worker traceback included.

    Attributes:
        path: The offending file.
        reason: A short human-readable reason, e.g. ``"empty file (0 bytes)"``.

    Raises:
        TypeError: One argument that holds no ``ImageReadError: cannot read ...`` line.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None) -> None:
        if reason is None:
            text = str(path)
            found = _MESSAGE.findall(text)
            parts = _split(found[-1]) if found else None
            if parts is None:
                raise TypeError(
                    "ImageReadError takes (path, reason), or one message holding "
                    f"'ImageReadError: cannot read PATH: REASON'; got {text[:200]!r}"
                )
            where, why = parts
            self.path = Path(where)
            self.reason = why
            super().__init__(text)
            return
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}")

    def __reduce__(self) -> tuple[type[ImageReadError], tuple[Path, str]]:
        # Keeps the exception picklable across DataLoader worker processes.
        return (type(self), (self.path, self.reason))


class DicomSupportError(ImportError):
    """DICOM support (the ``dicom`` extra, or a decoder plugin of it) is not installed.

    An environment problem, not a bad file: it is raised even under
    ``on_error="skip"``, so that a DICOM archive is never silently skipped whole.
    """
