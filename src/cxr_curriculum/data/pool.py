"""Compose several datasets into one image-only pool for self-supervised pretraining.

Pretraining on "all images except the evaluation split" is the usual protocol
(arXiv:2301.10687 pretrains on unlabelled chest X-rays and evaluates on held-out
labelled ones); :class:`ImagePool` makes the exclusion explicit and checkable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from cxr_curriculum.data.base import OnError, Transform
from cxr_curriculum.data.exclusion import ImageRecord, PatientKey, file_key, image_records
from cxr_curriculum.data.unlabeled import ImageFiles
from cxr_curriculum.data.windowing import Window

__all__ = ["ImagePool"]


def _records_of(obj: Any) -> list[ImageRecord]:
    if isinstance(obj, (str, os.PathLike)):
        return [ImageRecord(file_key(obj), None)]
    try:
        return image_records(obj)
    except ValueError:
        raise ValueError(
            f"{type(obj).__name__} has no .files; ImagePool takes datasets (or Subsets of "
            "them) that list their image files"
        ) from None


def _paths_of(obj: Any) -> list[Path]:
    """The item files of a dataset, through ``Subset``/``ConcatDataset``/cache wrappers."""
    from torch.utils.data import ConcatDataset, Subset

    if isinstance(obj, Subset):
        parent = _paths_of(obj.dataset)
        return [parent[int(i)] for i in obj.indices]
    if isinstance(obj, ConcatDataset):
        return [p for part in obj.datasets for p in _paths_of(part)]
    return [Path(f) for f in obj.files]


class ImagePool(ImageFiles):
    """The images of several datasets as one dataset of image tensors ``(1, H, W)``.

    Labels and masks are dropped; images are read again from the datasets' files, so
    the datasets' own transforms do not apply (pass ``transform`` here). Any dataset
    or ``Subset`` that exposes ``.files`` works (all loaders of this package do).

    Args:
        *datasets: Datasets or Subsets to pool.
        exclude_files: File paths, datasets or Subsets whose files are left out (e.g.
            the test split of a downstream task). Paths are compared as absolute
            normalised paths (symbolic links are not followed).
        transform: Callable applied to each image.
        unique: Keep a file once when several datasets list it.
        on_error: ``"raise"`` or ``"skip"`` (see ``base``).
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        sources: Index of the dataset each file came from.
        patient_keys: Per file, ``(patient namespace, patient id)`` from its dataset, or
            None where that dataset has no patient ids (see
            :func:`~cxr_curriculum.data.exclude_test_images`).
        excluded: Number of files left out because of ``exclude_files``.

    Example:
        >>> from cxr_curriculum.data import ImagePool, KermanyPneumonia, bundled_sample_root
        >>> train = KermanyPneumonia(bundled_sample_root(), "train")
        >>> test = KermanyPneumonia(bundled_sample_root(), "test")
        >>> pool = ImagePool(train, test, exclude_files=[test])
        >>> len(pool), pool[0].shape
        (32, torch.Size([1, 224, 224]))
    """

    def __init__(
        self,
        *datasets: Any,
        exclude_files: Iterable[Any] = (),
        transform: Transform | None = None,
        unique: bool = True,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        if not datasets:
            raise ValueError("ImagePool needs at least one dataset")
        if isinstance(exclude_files, (str, os.PathLike, Dataset)):
            exclude_files = [exclude_files]
        excluded = {r.file for obj in exclude_files for r in _records_of(obj)}
        files: list[Path] = []
        sources: list[int] = []
        keys: list[PatientKey | None] = []
        seen: set[str] = set()
        self.excluded = 0
        for k, ds in enumerate(datasets):
            records = _records_of(ds)
            paths = [Path(ds)] if isinstance(ds, (str, os.PathLike)) else _paths_of(ds)
            for path, record in zip(paths, records, strict=True):
                if record.file in excluded:
                    self.excluded += 1
                    continue
                if unique and record.file in seen:
                    continue
                seen.add(record.file)
                files.append(path)
                sources.append(k)
                keys.append(record.patient)
        super().__init__(
            files, transform, on_error=on_error, check_files=check_files, window=window
        )
        by_file = {p: (s, key) for p, s, key in zip(files, sources, keys, strict=True)}
        self.sources: list[int] = [by_file[p][0] for p in self.files]
        self.patient_keys: list[PatientKey | None] = [by_file[p][1] for p in self.files]
