"""Shenzhen and Montgomery County tuberculosis chest X-rays with lung masks.

Jaeger, Candemir, Antani et al. "Two public chest X-ray datasets for computer-aided
screening of pulmonary diseases", Quant. Imaging Med. Surg. 4(6), 2014. Shenzhen
lung masks: Stirenko, Kochura, Alienin et al. "Chest X-Ray Analysis of Tuberculosis
by Deep Learning with Segmentation and Augmentation", arXiv:1803.01199 (CC BY-NC-SA 4.0).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import CXRDataset, JointTransform, OnError, Transform
from cxr_curriculum.data.io import is_image_file
from cxr_curriculum.data.windowing import Window

__all__ = ["ShenzhenMontgomery"]

_SOURCES = ("Shenzhen", "Montgomery")
_TB = ("normal", "tuberculosis")
_NAME = re.compile(r"^(CHNCXR|MCUCXR)_(\d+)_([01])$", re.IGNORECASE)


class ShenzhenMontgomery(CXRDataset):
    """Image + lung mask pairs from ``<root>/images/<name>.png`` and ``<root>/masks/<name>.png``.

    Items are :class:`~cxr_curriculum.data.MaskedImage` (mask 0 background, 1 lung), or
    with ``with_masks=False`` :class:`~cxr_curriculum.data.LabeledImage` (the masks stay
    listed in ``.lung_mask_files``). ``CHNCXR_*`` files are Shenzhen, ``MCUCXR_*``
    Montgomery; each file is one patient (``CHNCXR_0601_1.png`` -> ``CHNCXR_0601``). The
    ``_0``/``_1`` suffix is the published TB label (all pairs in the shared folder are
    TB-positive), kept in ``.tuberculosis``. ``labels`` is the source (0 Shenzhen, 1
    Montgomery; ``target="source"``), so that :func:`~cxr_curriculum.data.patient_split`
    keeps the ratio of the two hospitals, or the TB label (``target="tuberculosis"``,
    classes ``["normal", "tuberculosis"]``).

    Args:
        root: Dataset folder; defaults to ``data_root() / "shenzhen-montgomery-tb"``.
        transform: Callable applied to the image after ``joint_transform``.
        joint_transform: Callable ``(image, mask) -> (image, mask)``.
        mask_suffix: Text between the image stem and ``.png`` in mask names
            (``""`` here; ``"_mask"`` in some redistributions).
        with_masks: Return the mask with each image (``MaskedImage``).
        target: ``"source"`` (hospital) or ``"tuberculosis"`` labels.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every pair at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Raises:
        FileNotFoundError: A folder, or the mask of an image, is missing.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
        joint_transform: JointTransform | None = None,
        *,
        mask_suffix: str = "",
        with_masks: bool = True,
        target: Literal["source", "tuberculosis"] = "source",
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform,
            joint_transform=joint_transform,
            on_error=on_error,
            check_files=check_files,
            window=window,
        )
        if target not in ("source", "tuberculosis"):
            raise ValueError(f"target must be 'source' or 'tuberculosis', got {target!r}")
        self.root = Path(root) if root is not None else data_root() / "shenzhen-montgomery-tb"
        image_dir, mask_dir = self.root / "images", self.root / "masks"
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} not found (expected images/ and masks/)")
        masks_by_name = {p.name.lower(): p for p in mask_dir.iterdir() if is_image_file(p)}
        files, masks, labels, patients, tb = [], [], [], [], []
        for path in sorted(p for p in image_dir.iterdir() if is_image_file(p)):
            m = _NAME.match(path.stem)
            if m is None:
                raise ValueError(
                    f"{path}: expected a name like CHNCXR_0001_0.png or MCUCXR_0001_1.png"
                )
            mask = masks_by_name.get(f"{path.stem}{mask_suffix}{path.suffix}".lower())
            if mask is None:
                raise FileNotFoundError(f"no mask for {path} in {mask_dir}")
            files.append(path)
            masks.append(mask)
            labels.append(0 if m.group(1).upper() == "CHNCXR" else 1)
            patients.append(f"{m.group(1).upper()}_{m.group(2)}")
            tb.append(m.group(3) == "1")
        if not files:
            raise FileNotFoundError(f"no PNG/JPEG images in {image_dir}")
        by_file = dict(zip(files, zip(tb, masks, strict=True), strict=True))
        if target == "tuberculosis":
            labels, classes = [int(t) for t in tb], _TB
        else:
            classes = _SOURCES
        self._set_records(files, labels, patients, classes, masks if with_masks else None)
        self.tuberculosis: list[bool] = [by_file[p][0] for p in self.files]
        self.lung_mask_files: list[Path | None] = [by_file[p][1] for p in self.files]
