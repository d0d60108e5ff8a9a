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

A bad file is any that :func:`~cxr_curriculum.data.read_image` refuses: missing, empty,
truncated, not PNG/JPEG/DICOM, or smaller than
:data:`~cxr_curriculum.data.MIN_IMAGE_SIDE` (16 px) on a side. A missing DICOM extra
is not a bad file: :class:`~cxr_curriculum.data.DicomSupportError` is always raised.

Every dataset also builds its items from an already decoded image with
:meth:`CXRDataset.item_from`, which is how :class:`~cxr_curriculum.data.DecodedCache`
serves the same items from its cache.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from torch import Tensor
from torch.utils.data import Dataset

from cxr_curriculum.data.dicom import DicomMeta, read_dicom_meta
from cxr_curriculum.data.errors import ImageReadError
from cxr_curriculum.data.formats import sniff_file
from cxr_curriculum.data.io import read_image, read_mask
from cxr_curriculum.data.items import LabeledImage, MaskedImage
from cxr_curriculum.data.windowing import Window, check_window

__all__ = [
    "CXRDataset",
    "JointTransform",
    "OnError",
    "Transform",
    "apply_bad_file_policy",
    "dicom_meta_of",
    "scan_files",
]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
Transform = Callable[[Tensor], Any]
JointTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _check(
    path: Path, mask_path: Path | None, ignore_value: int | None, window: Window
) -> ImageReadError | None:
    try:
        image = read_image(path, window=window)
        if mask_path is not None:
            size = (int(image.shape[-2]), int(image.shape[-1]))
            read_mask(mask_path, ignore_value=ignore_value, size=size)
    except ImageReadError as exc:
        return exc
    return None


def scan_files(
    files: Sequence[str | os.PathLike[str]],
    mask_files: Sequence[str | os.PathLike[str]] | None = None,
    *,
    ignore_value: int | None = None,
    window: Window = "auto",
) -> list[tuple[int, Path, str]]:
    """Decode every file (and mask) once and list the bad ones.

    Args:
        files: Image files.
        mask_files: Optional masks, one per image, that must match its size.
        ignore_value: Raw mask value meaning "ignore" (see :func:`read_mask`).
        window: DICOM windowing policy the files will be read with.

    Returns:
        ``(index, offending path, reason)`` for each bad record, in order.
    """
    bad = []
    for i, path in enumerate(map(Path, files)):
        mask = Path(mask_files[i]) if mask_files is not None else None
        exc = _check(path, mask, ignore_value, window)
        if exc is not None:
            bad.append((i, exc.path, exc.reason))
    return bad


def _reason_kind(reason: str) -> str:
    return reason.split(" (")[0]


def apply_bad_file_policy(
    owner: str,
    files: Sequence[str | os.PathLike[str]],
    mask_files: Sequence[str | os.PathLike[str]] | None,
    *,
    on_error: OnError,
    check_files: bool,
    ignore_value: int | None = None,
    window: Window = "auto",
) -> tuple[list[int], list[tuple[Path, str]]]:
    """The indices to keep and the ``(path, reason)`` skipped, per the module's policy.

    Args:
        owner: Name used in the log line (the dataset's class name).
        files: Image files.
        mask_files: Optional masks, one per image.
        on_error: ``"raise"`` or ``"skip"``.
        check_files: Decode every file even under ``"raise"``.
        ignore_value: Raw mask value meaning "ignore".
        window: DICOM windowing policy.

    Raises:
        ImageReadError: A bad file under ``on_error="raise"`` with ``check_files``.
    """
    keep = list(range(len(files)))
    if on_error != "skip" and not check_files:
        return keep, []
    bad = scan_files(files, mask_files, ignore_value=ignore_value, window=window)
    if bad and on_error == "raise":
        _, path, reason = bad[0]
        more = f"; {len(bad) - 1} more bad file(s)" if len(bad) > 1 else ""
        raise ImageReadError(path, reason + more)
    if not bad:
        return keep, []
    drop = {i for i, _, _ in bad}
    kinds = Counter(_reason_kind(r) for _, _, r in bad)
    logger.warning(
        "%s: skipped %d of %d files (%s)",
        owner,
        len(bad),
        len(files),
        ", ".join(f"{c} {k}" for k, c in kinds.most_common()),
    )
    return [i for i in keep if i not in drop], [(p, r) for _, p, r in bad]


def check_on_error(on_error: str) -> OnError:
    """Validate an ``on_error`` argument (``"raise"`` or ``"skip"``)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error  # type: ignore[return-value]


def dicom_meta_of(path: str | os.PathLike[str]) -> DicomMeta | None:
    """:func:`~cxr_curriculum.data.read_dicom_meta` for a DICOM file, None for others.

    Raises:
        ImageReadError: The file cannot be opened, or its DICOM header is malformed.
    """
    fmt = sniff_file(path)
    return read_dicom_meta(path) if fmt in ("dicom", "acr-nema") else None


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
        window: Window = "auto",
    ) -> None:
        check_on_error(on_error)
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
        self.window: Window = check_window(window)
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
    ) -> list[int]:
        """Store the records, applying the bad-file policy; return the positions kept."""
        n = len(files)
        if len(labels) != n or len(patient_ids) != n or (mask_files and len(mask_files) != n):
            raise ValueError("files, labels, patient_ids and mask_files must have equal lengths")
        if self.joint_transform is not None and mask_files is None:
            raise ValueError("joint_transform needs a dataset with masks")
        keep, self.skipped = apply_bad_file_policy(
            type(self).__name__,
            list(files),
            mask_files,
            on_error=self.on_error,
            check_files=self.check_files,
            ignore_value=self.mask_ignore_value,
            window=self.window,
        )
        self.files = [Path(files[i]) for i in keep]
        self.labels = [int(labels[i]) for i in keep]
        self.patient_ids = [str(patient_ids[i]) for i in keep]
        self.classes = list(classes)
        self.mask_files = None if mask_files is None else [Path(mask_files[i]) for i in keep]
        return keep

    def __len__(self) -> int:
        return len(self.files)

    def _label(self, index: int) -> Any:
        return self.labels[index]

    def __getitem__(self, index: int) -> LabeledImage | MaskedImage:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        image = read_image(self.files[index], window=self.window)
        mask = None
        if self.mask_files is not None:
            mask = read_mask(
                self.mask_files[index],
                ignore_value=self.mask_ignore_value,
                size=(int(image.shape[-2]), int(image.shape[-1])),
            )
        return self.item_from(index, image, mask)

    def item_from(
        self, index: int, image: Tensor, mask: Tensor | None = None
    ) -> LabeledImage | MaskedImage:
        """The item ``index`` built from an already decoded image (and mask).

        Applies ``joint_transform`` and ``transform`` as :meth:`__getitem__` does.

        Args:
            index: Item index.
            image: ``float32`` ``(1, H, W)`` in ``[0, 1]``.
            mask: ``uint8`` ``(1, H, W)`` of the same size; required for masked sets.

        Raises:
            ValueError: A masked dataset and no mask.
        """
        if self.mask_files is None:
            if self.transform is not None:
                image = self.transform(image)
            return LabeledImage(image, self._label(index), self.patient_ids[index])
        if mask is None:
            raise ValueError(f"{type(self).__name__} has masks: item_from needs the mask")
        if self.joint_transform is not None:
            image, mask = self.joint_transform(image, mask)
        if self.transform is not None:
            image = self.transform(image)
        return MaskedImage(image, mask, self.patient_ids[index])

    def check_source_size(self, index: int, size: tuple[int, int]) -> None:
        """Refuse a decoded image size that item ``index`` cannot use (here: none).

        :class:`~cxr_curriculum.data.DecodedCache` calls it for every item with the
        ``(H, W)`` the image had when decoded from its file, before the cache shrank
        it, since :meth:`item_from` then sees only the shrunk image. Datasets whose
        labels are tied to the file's pixel grid override it (SIIM-ACR's run-length
        masks).

        Raises:
            ImageReadError: Naming the file, where a subclass refuses the size.
        """

    def dicom_meta(self, index: int) -> DicomMeta | None:
        """Header facts (view, pixel spacing, patient id) of a DICOM item; None otherwise."""
        return dicom_meta_of(self.files[index])

    def class_counts(self) -> dict[str, int]:
        """Number of items per class name (read from labels; no image is opened)."""
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def __repr__(self) -> str:
        masks = ", masks" if self.mask_files is not None else ""
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"{type(self).__name__}({len(self)} images, classes={self.classes}{masks}{skipped})"
