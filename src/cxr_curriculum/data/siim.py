"""SIIM-ACR Pneumothorax Segmentation (DICOM), with its run-length masks.

Kaggle "SIIM-ACR Pneumothorax Segmentation" (2019); Zawacki, Wu, Shih et al.
"Pneumothorax Segmentation Challenge", J. Digit. Imaging 32, 2019. Films (NIH
ChestX-ray14 images re-read for pneumothorax) are DICOM files in the challenge's
layout ``dicom-images-train/<study UID>/<series UID>/<SOP UID>.dcm``; ``train-rle.csv``
(header ``ImageId, EncodedPixels``) has one row per pneumothorax component, ``-1`` for
a film without one. Masks are decoded by :mod:`cxr_curriculum.data.rle`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import CXRDataset, JointTransform, OnError, Transform
from cxr_curriculum.data.errors import ImageReadError
from cxr_curriculum.data.findings import SIIM_FINDING_MAP
from cxr_curriculum.data.io import read_image
from cxr_curriculum.data.items import LabeledImage, MaskedImage
from cxr_curriculum.data.preprocess import resize_long_side
from cxr_curriculum.data.rle import EMPTY_RLE, decode_rle_union
from cxr_curriculum.data.tables import keep_present, read_table, table_or_error
from cxr_curriculum.data.windowing import Window

__all__ = ["SIIM_CLASSES", "SIIMPneumothorax", "siim_components"]


#: Class names: no pneumothorax (0), pneumothorax (1).
SIIM_CLASSES: tuple[str, str] = ("No Pneumothorax", "Pneumothorax")


def siim_components(rows: list[dict[str, str]], source: str = "table") -> dict[str, list[str]]:
    """Group ``train-rle.csv`` rows by image: ``ImageId -> [code, ...]`` (``[]`` for ``-1``).

    Raises:
        ValueError: An image has both ``-1`` and a mask, or ``-1`` twice.
    """
    images: dict[str, list[str]] = {}
    empty: set[str] = set()
    for row in rows:
        image_id, code = row["ImageId"].strip(), row["EncodedPixels"].strip()
        if code == EMPTY_RLE:
            if image_id in images:
                raise ValueError(f"{source}: ImageId {image_id} has '-1' and another row")
            empty.add(image_id)
            images[image_id] = []
        else:
            if image_id in empty:
                raise ValueError(f"{source}: ImageId {image_id} has '-1' and a mask")
            images.setdefault(image_id, []).append(code)
    return images


class SIIMPneumothorax(CXRDataset):
    """SIIM-ACR films: pneumothorax (1) or not (0), and its mask on request.

    Films are found by ``<ImageId>.dcm`` anywhere under ``root / image_dir`` (the
    study/series folders are not in the table); table rows without a film are left
    out and counted in ``.missing``. The patient id is the study folder (the table has
    no patient column; the films' anonymised ids cannot link one patient's films).
    Reading the DICOM files needs the ``dicom`` extra.

    Items are :class:`~cxr_curriculum.data.LabeledImage`, or with ``with_masks=True``
    :class:`~cxr_curriculum.data.MaskedImage` whose mask is the union of the image's
    components, ``uint8`` ``(1, H, W)`` with 1 pneumothorax, 0 elsewhere. The codes are
    decoded at ``mask_shape``, which must be the film's size as read from its file; a
    film served smaller by :class:`~cxr_curriculum.data.DecodedCache` gets the mask
    shrunk the same way (long side, aspect kept) with ``nearest-exact`` sampling, whose
    pixel-centred grid keeps the region's area and centroid (within a served pixel).

    Args:
        root: Dataset folder; defaults to ``data_root() / "siim-acr-pneumothorax"``.
        transform: Callable applied to the image (after ``joint_transform``).
        with_masks: Return the pneumothorax mask with each image.
        joint_transform: Callable ``(image, mask) -> (image, mask)`` for masked items.
        csv_file: The table, if not ``root/train-rle.csv[.gz|.zip]``.
        image_dir: Folder of the films under ``root``.
        mask_shape: ``(H, W)`` the codes were made on (1024 x 1024 in the challenge).
        relative: The challenge's relative run starts (``train-rle.csv``), or the
            standard absolute Kaggle form.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        encodings: Per item, the run-length codes of its components (``[]`` for none).
        missing: Table images without a film under ``root``.
    """

    finding_map = SIIM_FINDING_MAP

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
        with_masks: bool = False,
        joint_transform: JointTransform | None = None,
        *,
        csv_file: str | os.PathLike[str] | None = None,
        image_dir: str = "dicom-images-train",
        mask_shape: tuple[int, int] = (1024, 1024),
        relative: bool = True,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        if joint_transform is not None and not with_masks:
            raise ValueError("joint_transform needs with_masks=True")
        if joint_transform is not None and not callable(joint_transform):
            raise ValueError(f"joint_transform must be callable, got {type(joint_transform)!r}")
        self.root = Path(root) if root is not None else data_root() / "siim-acr-pneumothorax"
        self.csv_file = table_or_error(self.root, "train-rle.csv", "SIIM-ACR", csv_file)
        self.with_masks, self.relative = bool(with_masks), bool(relative)
        self.mask_shape = (int(mask_shape[0]), int(mask_shape[1]))
        images = siim_components(
            read_table(self.csv_file, ("ImageId", "EncodedPixels")), str(self.csv_file)
        )
        folder = self.root / image_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"SIIM-ACR: film folder {folder} not found")
        on_disk = {p.name[: -len(".dcm")]: p for p in folder.rglob("*.dcm")}
        found, self.missing = keep_present(
            ((i, on_disk.get(i)) for i in images),
            dataset="SIIMPneumothorax", what="images", table=self.csv_file, folder=folder,
            hint=" (looked for '<ImageId>.dcm' in any subfolder)",
        )  # fmt: skip
        ids = [i for i, _ in found]
        files = [p for _, p in found]
        studies = [p.relative_to(folder).parts[0] for p in files]
        self._set_records(files, [int(bool(images[i])) for i in ids], studies, SIIM_CLASSES)
        self.joint_transform = joint_transform  # after _set_records: masks come from codes
        by_file = {on_disk[i]: images[i] for i in ids}
        self.encodings: list[list[str]] = [list(by_file[f]) for f in self.files]

    def __getitem__(self, index: int) -> LabeledImage | MaskedImage:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        image = read_image(self.files[index], window=self.window)
        self.check_source_size(index, (int(image.shape[-2]), int(image.shape[-1])))
        return self.item_from(index, image)

    def check_source_size(self, index: int, size: tuple[int, int]) -> None:
        """With masks, refuse a film whose size (as read) is not ``mask_shape``.

        Raises:
            ImageReadError: Naming the film, with both sizes.
        """
        if self.with_masks and tuple(size) != self.mask_shape:
            raise ImageReadError(
                self.files[index],
                f"film size {size[0]}x{size[1]} does not match the mask size "
                f"{self.mask_shape[0]}x{self.mask_shape[1]} of its run-length code",
            )

    def mask(self, index: int) -> Tensor:
        """The item's pneumothorax mask, ``uint8`` ``(1, *mask_shape)``, without the image."""
        return decode_rle_union(self.encodings[index], self.mask_shape, relative=self.relative)

    def item_from(
        self, index: int, image: Tensor, mask: Tensor | None = None
    ) -> LabeledImage | MaskedImage:
        """The item ``index`` from its decoded film; the mask is decoded from its code.

        Args:
            index: Item index.
            image: ``float32`` ``(1, H, W)``: the film at ``mask_shape``, or shrunk from
                it (long side, aspect kept) as :class:`~cxr_curriculum.data.DecodedCache`
                serves it; the film's own size is checked by :meth:`check_source_size`.
            mask: A mask of the image's size, or None to decode it from the codes.

        Raises:
            ImageReadError: With masks, the image is neither ``mask_shape`` nor a
                reduction of it.
        """
        if not self.with_masks:
            return super().item_from(index, image)
        if mask is None:
            mask = self._mask_at(index, (int(image.shape[-2]), int(image.shape[-1])))
        if self.joint_transform is not None:
            image, mask = self.joint_transform(image, mask)
        if self.transform is not None:
            image = self.transform(image)
        return MaskedImage(image, mask, self.patient_ids[index])

    def _mask_at(self, index: int, size: tuple[int, int]) -> Tensor:
        """The mask at ``mask_shape`` shrunk to ``size`` as the cache shrank the film."""
        mask = self.mask(index)
        if size == self.mask_shape:
            return mask
        if max(size) < max(self.mask_shape):
            small = resize_long_side(mask[0].numpy(), max(size), mask=True)
            if small.shape == size:
                return torch.from_numpy(np.ascontiguousarray(small))[None]
        raise ImageReadError(
            self.files[index],
            f"image size {size[0]}x{size[1]} is neither the mask size "
            f"{self.mask_shape[0]}x{self.mask_shape[1]} of its run-length code nor a "
            "reduction of it with the aspect kept",
        )
