"""MIMIC-CXR-JPG, from its metadata, split and label tables.

Johnson, Lungren, Peng et al. "MIMIC-CXR-JPG, a large publicly available database of
labeled chest radiographs", arXiv:1901.07042 (PhysioNet, credentialed access). The
published layout (PhysioNet ``mimic-cxr-jpg/2.0.0/``):

* ``mimic-cxr-2.0.0-metadata.csv.gz``: one row per image: ``dicom_id``,
  ``subject_id``, ``study_id``, ``ViewPosition`` (``PA``, ``AP``, ``LATERAL``, ...);
* ``mimic-cxr-2.0.0-split.csv.gz``: ``dicom_id``, ``study_id``, ``subject_id``,
  ``split`` (``train``, ``validate``, ``test``);
* ``mimic-cxr-2.0.0-chexpert.csv.gz`` and ``mimic-cxr-2.0.0-negbio.csv.gz``: one row
  per *study* (``subject_id``, ``study_id``) with the 14 CheXpert observations coded
  ``1`` / ``0`` / ``-1`` / blank by the CheXpert or the NegBio labeler;
* images at ``files/p10/p10000032/s50414267/<dicom_id>.jpg`` (``p`` + the first two
  digits of the subject, ``p`` + subject, ``s`` + study).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import OnError, Transform
from cxr_curriculum.data.chexpert import (
    CHEXPERT_OBSERVATIONS,
    BlankPolicy,
    UncertainPolicy,
    check_policies,
    observation_targets,
)
from cxr_curriculum.data.findings import CHEXPERT_FINDING_MAP
from cxr_curriculum.data.multilabel import MultiLabelDataset
from cxr_curriculum.data.tables import existing, keep_present, read_table, table_or_error
from cxr_curriculum.data.windowing import Window

__all__ = ["MIMICCXR", "MIMIC_FRONTAL_VIEWS", "mimic_image_path"]

logger = logging.getLogger(__name__)

_PREFIX = "mimic-cxr-2.0.0"
_SPLITS = ("train", "validate", "test")
#: ``ViewPosition`` values kept by ``frontal_only=True``.
MIMIC_FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP")


def mimic_image_path(
    root: str | os.PathLike[str], subject_id: str, study_id: str, dicom_id: str
) -> Path:
    """``root/files/p10/p10000032/s50414267/<dicom_id>.jpg`` for subject 10000032.

    Raises:
        ValueError: The subject or study id is not made of digits.
    """
    subject, study = str(subject_id).strip(), str(study_id).strip()
    if len(subject) < 2 or not subject.isdigit() or not study.isdigit():
        raise ValueError(f"MIMIC-CXR ids must be digits, got subject {subject!r}, study {study!r}")
    folder = Path(root) / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
    return folder / f"{dicom_id}.jpg"


class MIMICCXR(MultiLabelDataset):
    """MIMIC-CXR-JPG images with their study's CheXpert (or NegBio) labels.

    Every image of a study gets that study's 14 observations; images of studies
    without a label row are left out (``.unlabelled``), as are images absent from
    ``root`` (``.missing``); each count is logged once.

    Args:
        root: The ``mimic-cxr-jpg/2.0.0`` folder (tables + ``files/``); defaults to
            ``data_root() / "mimic-cxr-jpg"``.
        split: ``"train"``, ``"validate"``, ``"test"`` (from the split table), or None
            for every image.
        uncertain: Policy for ``-1``: ``"ignore"`` (NaN), ``"positive"``, ``"negative"``.
        frontal_only: Keep only images whose ``ViewPosition`` is ``PA`` or ``AP``.
        transform: Callable applied to the image tensor.
        labeler: ``"chexpert"`` or ``"negbio"``: which label table to read.
        blank: A blank cell is ``"unknown"`` (NaN, default) or ``"negative"``.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        targets: ``float32`` ``(N, 14)``, columns in ``classes`` (the label table's order).
        study_ids: Study per item; ``views``: ``ViewPosition`` per item.
    """

    finding_map = CHEXPERT_FINDING_MAP

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: Literal["train", "validate", "test"] | None = "train",
        uncertain: UncertainPolicy = "ignore",
        frontal_only: bool = False,
        transform: Transform | None = None,
        *,
        labeler: Literal["chexpert", "negbio"] = "chexpert",
        blank: BlankPolicy = "unknown",
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        if split is not None and split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS} or None, got {split!r}")
        if labeler not in ("chexpert", "negbio"):
            raise ValueError(f"labeler must be 'chexpert' or 'negbio', got {labeler!r}")
        check_policies(uncertain, blank)
        self.root = Path(root) if root is not None else data_root() / "mimic-cxr-jpg"
        self.split, self.uncertain, self.blank, self.labeler = split, uncertain, blank, labeler
        keys = ("dicom_id", "subject_id", "study_id")
        meta_file = table_or_error(self.root, f"{_PREFIX}-metadata.csv", "MIMIC-CXR", None)
        images = read_table(meta_file, (*keys, "ViewPosition"))
        if split is not None:
            split_file = table_or_error(self.root, f"{_PREFIX}-split.csv", "MIMIC-CXR", None)
            wanted = {r["dicom_id"] for r in read_table(split_file, (*keys, "split"))
                      if r["split"] == split}  # fmt: skip
            images = [r for r in images if r["dicom_id"] in wanted]
        if frontal_only:
            images = [r for r in images if r["ViewPosition"] in MIMIC_FRONTAL_VIEWS]
        self.label_file = table_or_error(self.root, f"{_PREFIX}-{labeler}.csv", "MIMIC-CXR", None)
        studies = read_table(self.label_file, ("subject_id", "study_id", *CHEXPERT_OBSERVATIONS))
        by_study = {(r["subject_id"], r["study_id"]): r for r in studies}
        labelled = [r for r in images if (r["subject_id"], r["study_id"]) in by_study]
        self.unlabelled = len(images) - len(labelled)
        if self.unlabelled:
            logger.warning("MIMIC-CXR: %d of %d images of %s have no label row; they are left out",
                           self.unlabelled, len(images), meta_file.name)  # fmt: skip
        paths = [mimic_image_path(self.root, r["subject_id"], r["study_id"], r["dicom_id"])
                 for r in labelled]  # fmt: skip
        of_split = "" if split is None else f" of split {split!r}"
        kept, self.missing = keep_present(
            ((r, existing(p)) for r, p in zip(labelled, paths, strict=True)),
            dataset="MIMIC-CXR", what=f"labelled images{of_split}", table=meta_file,
            folder=self.root / "files",
        )  # fmt: skip
        classes = [c for c in studies[0] if c in CHEXPERT_OBSERVATIONS]
        label_rows = [by_study[(r["subject_id"], r["study_id"])] for r, _ in kept]
        number = {id(r): n for n, r in enumerate(studies, 1)}  # data rows of the label table
        targets = observation_targets(
            label_rows, classes, uncertain, blank, source=str(self.label_file),
            row_numbers=[number[id(r)] for r in label_rows],
        )  # fmt: skip
        keep = self._set_targets(
            [p for _, p in kept], targets, [str(r["subject_id"]) for r, _ in kept], classes
        )
        self.study_ids: list[str] = [kept[i][0]["study_id"] for i in keep]
        self.views: list[str] = [kept[i][0]["ViewPosition"] for i in keep]
