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
from cxr_curriculum.data.splits import dataset_files
from cxr_curriculum.data.unlabeled import ImageFiles
from cxr_curriculum.data.windowing import Window

__all__ = ["ImagePool"]


def _files_of(obj: Any) -> list[Path]:
    if isinstance(obj, (str, os.PathLike)):
        return [Path(obj)]
    files = dataset_files(obj)
    if files is None:
        raise ValueError(
            f"{type(obj).__name__} has no .files; ImagePool takes datasets (or Subsets of "
            "them) that list their image files"
        )
    return [Path(f) for f in files]


def _key(path: Path) -> str:
    # Absolute, normalised path; cheaper than Path.resolve() on large pools.
    return os.path.normpath(os.path.abspath(path))


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
        excluded = {_key(p) for obj in exclude_files for p in _files_of(obj)}
        files: list[Path] = []
        sources: list[int] = []
        seen: set[str] = set()
        self.excluded = 0
        for k, ds in enumerate(datasets):
            for path in _files_of(ds):
                full = _key(path)
                if full in excluded:
                    self.excluded += 1
                    continue
                if unique and full in seen:
                    continue
                seen.add(full)
                files.append(path)
                sources.append(k)
        super().__init__(
            files, transform, on_error=on_error, check_files=check_files, window=window
        )
        by_file = dict(zip(files, sources, strict=True))
        self.sources: list[int] = [by_file[p] for p in self.files]
