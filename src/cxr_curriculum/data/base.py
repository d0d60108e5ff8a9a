"""The common base of the file-backed datasets and their bad-file policy.

A dataset is a list of records (file, label, patient id, optional mask file) built
from file names and metadata alone, so ``.files``, ``.labels``, ``.patient_ids`` and
``.classes`` are available without reading a single image.

Bad-file policy (``on_error`` and ``check_files``):

* ``on_error="raise"`` (default), ``check_files=False``: nothing is read up front; a
  bad file raises :class:`~cxr_curriculum.data.ImageReadError` naming the file when
  its item is loaded.
* ``on_error="raise"``, ``check_files=True``: every file (and mask) is decoded once at
  construction; any bad file raises one ``ImageReadError`` before training starts.
* ``on_error="skip"``: every file is decoded once at construction; bad files are
  dropped, recorded in ``.skipped`` as ``(path, reason)`` and counted in one
  ``WARNING`` log line by reason. Lengths, labels and patient ids then describe only
  the usable files.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from torch import Tensor
from torch.utils.data import Dataset

from cxr_curriculum.data.io import ImageReadError, read_image, read_mask
from cxr_curriculum.data.items import LabeledImage, MaskedImage

__all__ = ["CXRDataset", "JointTransform", "OnError", "Transform", "scan_files"]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
Transform = Callable[[Tensor], Any]
JointTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _check(path: Path, mask_path: Path | None, ignore_value: int | None) -> ImageReadError | None:
    try:
        image = read_image(path)
        if mask_path is not None:
            size = (int(image.shape[-2]), int(image.shape[-1]))
            read_mask(mask_path, ignore_value=ignore_value, size=size)
    except ImageReadError as exc:
        return exc
    return None


def scan_files(
    files: Sequence[Path],
    mask_files: Sequence[Path] | None = None,
    *,
    ignore_value: int | None = None,
) -> list[tuple[int, Path, str]]:
    """Decode every file (and mask) once and list the bad ones.

    Args:
        files: Image files.
        mask_files: Optional masks, one per image, that must match its size.
        ignore_value: Raw mask value meaning "ignore" (see :func:`read_mask`).

    Returns:
        ``(index, offending path, reason)`` for each bad record, in order.
    """
    bad = []
    for i, path in enumerate(files):
        exc = _check(path, mask_files[i] if mask_files is not None else None, ignore_value)
        if exc is not None:
            bad.append((i, exc.path, exc.reason))
    return bad


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0]


class CXRDataset(Dataset[Any]):
    """Base of the labelled (and optionally masked) chest X-ray datasets.

    Subclasses find their records and call :meth:`_set_records`. Items are
    :class:`~cxr_curriculum.data.LabeledImage` without masks and
    :class:`~cxr_curriculum.data.MaskedImage` with masks.

    Attributes:
        files: Image paths, one per item.
        labels: Class index per item (into ``classes``).
        patient_ids: Patient id per item.
        classes: Class names.
        mask_files: Mask path per item, or None for unmasked sets.
        skipped: ``(path, reason)`` of files dropped by ``on_error="skip"``.
    """

    #: Raw mask value that means "ignore" for this dataset's masks.
    mask_ignore_value: int | None = None

    def __init__(
        self,
        *,
        transform: Transform | None = None,
        joint_transform: JointTransform | None = None,
        on_error: OnError = "raise",
        check_files: bool = False,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {type(transform)!r}")
        if joint_transform is not None and not callable(joint_transform):
            raise ValueError(
                f"joint_transform must be callable or None, got {type(joint_transform)!r}"
            )
        self.transform = transform
        self.joint_transform = joint_transform
        self.on_error: OnError = on_error
        self.check_files = bool(check_files)
        self.files: list[Path] = []
        self.labels: list[int] = []
        self.patient_ids: list[str] = []
        self.classes: list[str] = []
        self.mask_files: list[Path] | None = None
        self.skipped: list[tuple[Path, str]] = []

    def _set_records(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        patient_ids: Sequence[str],
        classes: Sequence[str],
        mask_files: Sequence[Path] | None = None,
    ) -> None:
        """Store the records, applying the bad-file policy."""
        n = len(files)
        if len(labels) != n or len(patient_ids) != n or (mask_files and len(mask_files) != n):
            raise ValueError("files, labels, patient_ids and mask_files must have equal lengths")
        if self.joint_transform is not None and mask_files is None:
            raise ValueError("joint_transform needs a dataset with masks")
        keep = list(range(n))
        if self.on_error == "skip" or self.check_files:
            bad = scan_files(list(files), mask_files, ignore_value=self.mask_ignore_value)
            if bad and self.on_error == "raise":
                _, path, reason = bad[0]
                more = f"; {len(bad) - 1} more bad file(s)" if len(bad) > 1 else ""
                raise ImageReadError(path, reason + more)
            if bad:
                bad_idx = {i for i, _, _ in bad}
                keep = [i for i in keep if i not in bad_idx]
                self.skipped = [(p, r) for _, p, r in bad]
                kinds = Counter(_reason_kind(r) for _, _, r in bad)
                logger.warning(
                    "%s: skipped %d of %d files (%s)",
                    type(self).__name__,
                    len(bad),
                    n,
                    ", ".join(f"{c} {k}" for k, c in kinds.most_common()),
                )
        self.files = [Path(files[i]) for i in keep]
        self.labels = [int(labels[i]) for i in keep]
        self.patient_ids = [str(patient_ids[i]) for i in keep]
        self.classes = list(classes)
        self.mask_files = None if mask_files is None else [Path(mask_files[i]) for i in keep]

    def __len__(self) -> int:
        return len(self.files)

    def _label(self, index: int) -> Any:
        return self.labels[index]

    def __getitem__(self, index: int) -> LabeledImage | MaskedImage:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        image = read_image(self.files[index])
        if self.mask_files is None:
            if self.transform is not None:
                image = self.transform(image)
            return LabeledImage(image, self._label(index), self.patient_ids[index])
        mask = read_mask(
            self.mask_files[index],
            ignore_value=self.mask_ignore_value,
            size=(int(image.shape[-2]), int(image.shape[-1])),
        )
        if self.joint_transform is not None:
            image, mask = self.joint_transform(image, mask)
        if self.transform is not None:
            image = self.transform(image)
        return MaskedImage(image, mask, self.patient_ids[index])

    def class_counts(self) -> dict[str, int]:
        """Number of items per class name (read from labels; no image is opened)."""
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def __repr__(self) -> str:
        masks = ", masks" if self.mask_files is not None else ""
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"{type(self).__name__}({len(self)} images, classes={self.classes}{masks}{skipped})"
