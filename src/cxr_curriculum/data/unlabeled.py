"""A recursive folder of images as an unlabelled pool for self-supervised pretraining."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from cxr_curriculum.data.base import OnError, Transform, scan_files
from cxr_curriculum.data.io import ImageReadError, is_image_file, read_image

__all__ = ["DEFAULT_SKIP_DIRS", "ImageFiles", "UnlabeledImages"]

logger = logging.getLogger(__name__)

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

    Attributes:
        files: The usable image paths.
        skipped: ``(path, reason)`` of files dropped by ``on_error="skip"``.
    """

    def __init__(
        self,
        files: Sequence[Path],
        transform: Transform | None = None,
        *,
        on_error: OnError = "raise",
        check_files: bool = False,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {type(transform)!r}")
        self.transform = transform
        self.skipped: list[tuple[Path, str]] = []
        files = [Path(f) for f in files]
        if on_error == "skip" or check_files:
            bad = scan_files(files)
            if bad and on_error == "raise":
                _, path, reason = bad[0]
                more = f"; {len(bad) - 1} more bad file(s)" if len(bad) > 1 else ""
                raise ImageReadError(path, reason + more)
            if bad:
                drop = {i for i, _, _ in bad}
                files = [f for i, f in enumerate(files) if i not in drop]
                self.skipped = [(p, r) for _, p, r in bad]
                kinds = Counter(r.split(" (")[0] for _, _, r in bad)
                logger.warning(
                    "%s: skipped %d of %d files (%s)",
                    type(self).__name__,
                    len(bad),
                    len(bad) + len(files),
                    ", ".join(f"{c} {k}" for k, c in kinds.most_common()),
                )
        self.files: list[Path] = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor | Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image = read_image(self.files[index])
        return self.transform(image) if self.transform is not None else image

    def __repr__(self) -> str:
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"{type(self).__name__}({len(self)} images{skipped})"


def _resolved(paths: Iterable[str | os.PathLike[str]]) -> set[Path]:
    return {Path(p).resolve() for p in paths}


class UnlabeledImages(ImageFiles):
    """Every PNG/JPEG under a folder (recursively), as image tensors ``(1, H, W)``.

    8- and 16-bit, gray, RGB and RGBA files all become one-channel float in ``[0, 1]``.
    Files are sorted by path, so the order is the same on every machine.

    Args:
        root: Folder to search recursively.
        exclude: Files or folders to leave out (e.g. an evaluation split's files).
        transform: Callable applied to each image.
        skip_dirs: Folder names whose subtrees are ignored; by default lung-mask and
            annotation folders, so ``UnlabeledImages(data_root())`` holds radiographs only.
        on_error: ``"raise"`` or ``"skip"`` (see ``base``).
        check_files: Decode every file at construction.

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
                if is_image_file(name) and here / name not in excluded:
                    files.append(Path(dirpath) / name)
        files.sort()
        super().__init__(files, transform, on_error=on_error, check_files=check_files)
