"""A recursive folder of images as an unlabelled pool for self-supervised pretraining.

Which files are images (PNG, JPEG, DICOM; DICOM also without a suffix) is decided by
:func:`~cxr_curriculum.data.is_image_file`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from cxr_curriculum.data.base import (
    OnError,
    Transform,
    apply_bad_file_policy,
    check_on_error,
    dicom_meta_of,
)
from cxr_curriculum.data.dicom import DicomMeta
from cxr_curriculum.data.io import is_image_file, read_image
from cxr_curriculum.data.windowing import Window, check_window

__all__ = ["DEFAULT_SKIP_DIRS", "ImageFiles", "UnlabeledImages"]

#: Folder names whose contents are never pool images (lung masks, annotations).
DEFAULT_SKIP_DIRS: tuple[str, ...] = ("masks", "v7-lung-masks", "annotations")


class ImageFiles(Dataset[Any]):
    """A list of image files whose items are the image tensors themselves.

    Base of :class:`UnlabeledImages` and :class:`~cxr_curriculum.data.ImagePool`; it
    applies the same bad-file policy as the labelled datasets (see ``base``).

    Args:
        files: Image paths.
        transform: Callable applied to each image ``(1, H, W)``.
        on_error: ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        files: The usable image paths.
        skipped: ``(path, reason)`` of files dropped by ``on_error="skip"``.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        transform: Transform | None = None,
        *,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        check_on_error(on_error)
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {type(transform)!r}")
        self.transform = transform
        self.window: Window = check_window(window)
        paths = [Path(f) for f in files]
        keep, self.skipped = apply_bad_file_policy(
            type(self).__name__,
            paths,
            None,
            on_error=on_error,
            check_files=check_files,
            window=self.window,
        )
        self.files: list[Path] = [paths[i] for i in keep]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor | Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return self.item_from(index, read_image(self.files[index], window=self.window))

    def item_from(self, index: int, image: Tensor, mask: Tensor | None = None) -> Tensor | Any:
        """The item ``index`` from an already decoded image: ``transform(image)`` or it.

        ``index`` and ``mask`` are unused (these items carry neither label nor mask);
        they keep the signature of :meth:`CXRDataset.item_from`.
        """
        return self.transform(image) if self.transform is not None else image

    def dicom_meta(self, index: int) -> DicomMeta | None:
        """Header facts (view, pixel spacing, patient id) of a DICOM item; None otherwise."""
        return dicom_meta_of(self.files[index])

    def __repr__(self) -> str:
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"{type(self).__name__}({len(self)} images{skipped})"


def _resolved(paths: Iterable[str | os.PathLike[str]]) -> set[Path]:
    return {Path(p).resolve() for p in paths}


class UnlabeledImages(ImageFiles):
    """Every image under a folder (recursively), as image tensors ``(1, H, W)``.

    PNG and JPEG (8- and 16-bit, gray, RGB and RGBA) and DICOM files all become
    one-channel float in ``[0, 1]``. A file is taken when its suffix is ``.png``,
    ``.jpg``, ``.jpeg``, ``.dcm`` or ``.dicom`` (any case), or when it has no suffix (or
    a numeric one, as UID-named DICOM files do) and starts with a DICOM or ACR-NEMA
    header. Files are sorted by path, so the order is the same on every machine.

    Args:
        root: Folder to search recursively.
        exclude: Files or folders to leave out (e.g. an evaluation split's files).
        transform: Callable applied to each image.
        skip_dirs: Folder names whose subtrees are ignored; by default lung-mask and
            annotation folders, so ``UnlabeledImages(data_root())`` holds radiographs only.
        on_error: ``"raise"`` or ``"skip"`` (see ``base``).
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Raises:
        FileNotFoundError: ``root`` is not a folder.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        exclude: Iterable[str | os.PathLike[str]] | None = None,
        transform: Transform | None = None,
        *,
        skip_dirs: Collection[str] = DEFAULT_SKIP_DIRS,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} not found")
        if isinstance(exclude, (str, os.PathLike)):
            exclude = [exclude]
        excluded = _resolved(exclude or ())
        skip = set(skip_dirs)
        base = self.root.resolve()
        files = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = base / Path(dirpath).relative_to(self.root)
            dirnames[:] = sorted(d for d in dirnames if d not in skip and here / d not in excluded)
            for name in sorted(filenames):
                if here / name not in excluded and is_image_file(Path(dirpath) / name):
                    files.append(Path(dirpath) / name)
        files.sort()
        super().__init__(
            files, transform, on_error=on_error, check_files=check_files, window=window
        )
