"""Kermany pediatric pneumonia chest X-rays (``train|test/NORMAL|PNEUMONIA``).

Kermany, Goldbaum, Cai et al. "Identifying Medical Diagnoses and Treatable Diseases
by Image-Based Deep Learning", Cell 172(5), 2018; data: "Labeled Optical Coherence
Tomography (OCT) and Chest X-Ray Images for Classification", Mendeley Data,
doi:10.17632/rscbjbr9sj.2, CC BY 4.0.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import CXRDataset, OnError, Transform
from cxr_curriculum.data.io import is_image_file
from cxr_curriculum.data.windowing import Window

__all__ = ["KermanyPneumonia", "kermany_patient_id", "kermany_subtype"]

_SPLITS = ("train", "val", "test")
_CLASSES = ("NORMAL", "PNEUMONIA")
_SUBTYPES = ("normal", "bacteria", "virus")
_PERSON = re.compile(r"^(person\d+)_(bacteria|virus)_", re.IGNORECASE)
_IM = re.compile(r"^((?:NORMAL2-)?IM-\d+)", re.IGNORECASE)


def kermany_patient_id(name: str) -> str:
    """Patient id from a Kermany file name.

    ``person1000_virus_1681.jpeg`` -> ``person1000``; ``IM-0115-0001.jpeg`` ->
    ``IM-0115``; ``NORMAL2-IM-0115-0001.jpeg`` -> ``NORMAL2-IM-0115``.

    The ``NORMAL2-IM-`` series and the ``IM-`` series are **different patients**. The
    dataset's own description (Kermany, Zhang, Goldbaum, Mendeley Data V2,
    doi:10.17632/rscbjbr9sj.2, as mirrored on Kaggle and Hugging Face) says how the
    images were selected and graded but nothing about how file names relate to
    patients, so the rule rests on the images: in the five-seed Kermany study
    (``benchmarks/results/study_kermany_cpu``) the test scores of ``NORMAL2-IM-x`` and
    ``IM-x`` images correlate like those of unrelated images (0.002), while images of
    one patient correlate at 0.37. Earlier versions of this loader merged the two series (404
    patients in the test split instead of 427). ``personN`` in ``train/`` and ``test/``
    is one id (the description does not say the splits use separate numbering).

    Raises:
        ValueError: The name follows neither pattern.
    """
    stem = Path(name).name
    m = _PERSON.match(stem) or _IM.match(stem)
    if m is None:
        raise ValueError(
            f"cannot parse a Kermany patient id from {name!r}; expected "
            "'personN_bacteria|virus_K.jpeg' or '[NORMAL2-]IM-xxxx-xxxx.jpeg'"
        )
    return m.group(1).lower() if m.group(1).lower().startswith("person") else m.group(1).upper()


def kermany_subtype(name: str) -> str:
    """``"bacteria"``, ``"virus"`` or ``"normal"`` from a Kermany file name."""
    m = _PERSON.match(Path(name).name)
    return m.group(2).lower() if m else "normal"


class KermanyPneumonia(CXRDataset):
    """Kermany pediatric chest X-rays, NORMAL (0) vs PNEUMONIA (1).

    Layout as published: ``<root>/<split>/{NORMAL,PNEUMONIA}/*.jpeg``. Children aged
    1-5 from Guangzhou Women and Children's Medical Center.

    Args:
        root: Dataset folder; defaults to ``data_root() / "kermany-pneumonia"``. The
            bundled sample (:func:`~cxr_curriculum.data.bundled_sample_root`) also works.
        split: ``"train"``, ``"val"`` or ``"test"`` (a folder under ``root``).
        transform: Callable applied to the image tensor ``(1, H, W)``.
        target: ``"pneumonia"`` for classes ``["NORMAL", "PNEUMONIA"]`` or ``"subtype"``
            for ``["normal", "bacteria", "virus"]``.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"`` (see ``base``).
        check_files: Decode every file at construction (see ``base``).
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        subtypes: ``"normal"``, ``"bacteria"`` or ``"virus"`` per item.

    Example:
        >>> from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
        >>> ds = KermanyPneumonia(bundled_sample_root(), split="train")
        >>> len(ds), ds.classes
        (32, ['NORMAL', 'PNEUMONIA'])
        >>> image, label, patient = ds[0]
        >>> image.shape[0], image.dtype
        (1, torch.float32)
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: str = "train",
        transform: Transform | None = None,
        *,
        target: Literal["pneumonia", "subtype"] = "pneumonia",
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if target not in ("pneumonia", "subtype"):
            raise ValueError(f"target must be 'pneumonia' or 'subtype', got {target!r}")
        self.root = Path(root) if root is not None else data_root() / "kermany-pneumonia"
        self.split = split
        self.target = target
        folder = self.root / split
        if not folder.is_dir():
            have = sorted(p.name for p in self.root.glob("*") if p.is_dir())
            raise FileNotFoundError(
                f"Kermany split folder {folder} not found "
                f"(folders in {self.root}: {have or 'none'})"
            )
        files: list[Path] = []
        labels: list[int] = []
        subtypes: list[str] = []
        for label, cls in enumerate(_CLASSES):
            cls_dir = folder / cls
            if not cls_dir.is_dir():
                raise FileNotFoundError(f"Kermany class folder {cls_dir} not found")
            for path in sorted(p for p in cls_dir.iterdir() if is_image_file(p)):
                sub = kermany_subtype(path.name)
                if (sub == "normal") != (cls == "NORMAL"):
                    raise ValueError(f"{path}: subtype {sub!r} contradicts folder {cls}")
                files.append(path)
                labels.append(label if target == "pneumonia" else _SUBTYPES.index(sub))
                subtypes.append(sub)
        if not files:
            raise FileNotFoundError(f"no PNG/JPEG images under {folder}/{{NORMAL,PNEUMONIA}}")
        patients = [kermany_patient_id(p.name) for p in files]
        by_file = dict(zip(files, subtypes, strict=True))
        classes = _CLASSES if target == "pneumonia" else _SUBTYPES
        self._set_records(files, labels, patients, classes)
        self.subtypes: list[str] = [by_file[p] for p in self.files]
