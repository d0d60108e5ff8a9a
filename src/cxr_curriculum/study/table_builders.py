"""Task builders of the label-table archives: CheXpert, MIMIC-CXR, VinDr-CXR, PadChest
(multi-label) and ``table``, any CSV of paths, patients and labels.

As in :mod:`~cxr_curriculum.study.task_builders`, each builder's keyword arguments are
the keys of its ``[[tasks]]`` table. Multi-label tasks take ``min_positives``: the
findings scored are those with at least that many positive and negative test images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cxr_curriculum.data import MIMICCXR, CheXpert, LabelTable, PadChest, VinDrCXR
from cxr_curriculum.study.generic_tasks import BinaryTask, MultiLabelTask, split_by_patient
from cxr_curriculum.study.task_builders import cache_options, split_source
from cxr_curriculum.study.tasks import Task

__all__ = ["chexpert_task", "mimic_task", "padchest_task", "table_task", "vindr_task"]


def chexpert_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "chexpert",
    split: Literal["official", "patients"] = "official",
    csv_file: str | os.PathLike[str] | None = None,
    valid_csv: str | os.PathLike[str] | None = None,
    uncertain: Literal["ignore", "positive", "negative"] = "ignore",
    blank: Literal["unknown", "negative"] = "unknown",
    frontal_only: bool = False,
    test_share: float = 0.3,
    split_seed: int = 0,
    min_positives: int = 5,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> MultiLabelTask:
    """CheXpert (Irvin et al., AAAI 2019): the 14 observations, macro AUROC.

    ``split = "official"``: train on ``train.csv``, test on ``valid.csv`` (the 234
    radiologist-labelled validation images; ``valid_csv`` if not in ``root``).
    ``split = "patients"``: a patient-level split of ``train.csv`` (``test_share``,
    ``split_seed``). ``uncertain`` is the paper's U-Ignore / U-Ones / U-Zeros policy.
    """
    if split not in ("official", "patients"):
        raise ValueError(f"split must be 'official' or 'patients', got {split!r}")
    opts: dict[str, Any] = {"uncertain": uncertain, "blank": blank, "frontal_only": frontal_only}

    def data() -> tuple[Any, Any]:
        train = CheXpert(root, split="train", csv_file=csv_file, **opts)
        if split == "patients":
            return split_by_patient(train, test_share, split_seed)
        return train, CheXpert(root, split="valid", csv_file=valid_csv, **opts)

    source: dict[str, Any] = {"kind": "chexpert", **opts, "split": "official (valid.csv)"}
    if split == "patients":
        source = split_source("chexpert", test_share, split_seed, **opts)
    return MultiLabelTask(
        data,
        name=name,
        source=source,
        min_positives=min_positives,
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def mimic_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "mimic",
    labeler: Literal["chexpert", "negbio"] = "chexpert",
    uncertain: Literal["ignore", "positive", "negative"] = "ignore",
    blank: Literal["unknown", "negative"] = "unknown",
    frontal_only: bool = True,
    min_positives: int = 5,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> MultiLabelTask:
    """MIMIC-CXR-JPG (Johnson et al. 2019): the 14 observations on the official split.

    Trains on the split table's ``train`` images and tests on its ``test`` images
    (frontal views by default); labels from the ``chexpert`` or ``negbio`` table.
    """
    opts: dict[str, Any] = {
        "labeler": labeler,
        "uncertain": uncertain,
        "blank": blank,
        "frontal_only": frontal_only,
    }

    def data() -> tuple[Any, Any]:
        return MIMICCXR(root, split="train", **opts), MIMICCXR(root, split="test", **opts)

    return MultiLabelTask(
        data,
        name=name,
        source={"kind": "mimic", **opts, "split": "official (train / test)"},
        min_positives=min_positives,
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def vindr_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "vindr",
    csv_file: str | os.PathLike[str] | None = None,
    min_votes: int = 2,
    uncertain: Literal["negative", "ignore"] = "negative",
    image_dir: str = "train",
    suffix: str = ".dicom",
    test_share: float = 0.3,
    split_seed: int = 0,
    min_positives: int = 5,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> MultiLabelTask:
    """VinDr-CXR (Nguyen et al. 2022): consensus findings of three readers, macro AUROC.

    The challenge table is the training set only: a split by film (each film is its
    own patient; the table has no patient column). ``min_votes`` and ``uncertain`` are
    :class:`~cxr_curriculum.data.VinDrCXR`'s consensus rule.
    """
    opts: dict[str, Any] = {"min_votes": min_votes, "uncertain": uncertain}

    def data() -> tuple[Any, Any]:
        full = VinDrCXR(root, csv_file=csv_file, image_dir=image_dir, suffix=suffix, **opts)
        return split_by_patient(full, test_share, split_seed)

    return MultiLabelTask(
        data,
        name=name,
        source=split_source("vindr", test_share, split_seed, **opts),
        min_positives=min_positives,
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def padchest_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "padchest",
    csv_file: str | os.PathLike[str] | None = None,
    findings: Sequence[str] | None = None,
    projections: Sequence[str] | None = None,
    physician_only: bool = False,
    test_share: float = 0.3,
    split_seed: int = 0,
    min_positives: int = 5,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> MultiLabelTask:
    """PadChest (Bustos et al. 2020): report-extracted labels, macro AUROC.

    ``findings`` (default :data:`~cxr_curriculum.data.PADCHEST_FINDINGS`),
    ``projections`` (e.g. ``["PA", "AP"]``) and ``physician_only`` select as
    :class:`~cxr_curriculum.data.PadChest` does; a patient-level split (``PatientID``).
    """
    opts: dict[str, Any] = {
        "findings": None if findings is None else list(findings),
        "projections": None if projections is None else list(projections),
        "physician_only": physician_only,
    }

    def data() -> tuple[Any, Any]:
        full = PadChest(root, csv_file=csv_file, **opts)
        return split_by_patient(full, test_share, split_seed)

    return MultiLabelTask(
        data,
        name=name,
        source=split_source("padchest", test_share, split_seed, **opts),
        min_positives=min_positives,
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def table_task(
    table: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "table",
    path_column: str,
    patient_column: str,
    label_columns: Sequence[str],
    split_column: str | None = None,
    train_split: str = "train",
    test_split: str = "test",
    mask_column: str | None = None,
    mask_ignore_value: int | None = None,
    uncertain: Literal["ignore", "positive", "negative"] = "ignore",
    blank: Literal["unknown", "negative"] = "unknown",
    test_share: float = 0.3,
    split_seed: int = 0,
    min_positives: int = 5,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> Task:
    """Any labelled archive: a :class:`~cxr_curriculum.data.LabelTable` as a task.

    One name in ``label_columns`` is a binary task (AUROC; rows with an unknown label
    are left out), several a multi-label task (macro AUROC). With ``split_column``, rows
    whose value is ``train_split`` train and ``test_split`` test (the archive's own
    split); without it, a patient-level split (``test_share``, ``split_seed``). A
    ``mask_column`` gives a binary task lung masks of its own: lung attention is scored
    against them as well as against the bundled segmenter's.
    """
    columns = [label_columns] if isinstance(label_columns, str) else list(label_columns)
    if not columns:
        raise ValueError("label_columns must name at least one column")
    if mask_column is not None and len(columns) > 1:
        raise ValueError("mask_column needs a binary task (one label column)")
    common: dict[str, Any] = {
        "path_column": path_column,
        "patient_column": patient_column,
        "label_columns": columns,
        "split_column": split_column,
        "mask_column": mask_column,
        "mask_ignore_value": mask_ignore_value,
        "uncertain": uncertain,
        "blank": blank,
    }

    if split_column is not None and train_split == test_split:
        raise ValueError(
            f"{table}: train_split and test_split are both {train_split!r}; "
            f"a task must test on rows it did not train on"
        )

    def data() -> tuple[Any, Any]:
        if split_column is None:
            return split_by_patient(LabelTable(table, root, **common), test_share, split_seed)
        train = LabelTable(table, root, split=train_split, **common)
        test = LabelTable(table, root, split=test_split, **common)
        both = sorted(set(train.patient_ids) & set(test.patient_ids))
        if both:
            raise ValueError(
                f"{table}: column {split_column!r} puts {len(both)} patients in both "
                f"{train_split!r} and {test_split!r} (e.g. {both[:3]}); a study's test "
                f"patients must be unseen in training: fix the split, or leave out "
                f"split_column for a patient-level split"
            )
        return train, test

    described = {k: v for k, v in common.items() if v is not None and k != "mask_ignore_value"}
    described = {"table": Path(table).name, **described}
    if split_column is None:
        source = split_source("table", test_share, split_seed, **described)
    else:
        split = {"train": train_split, "test": test_split}
        source = {"kind": "table", **described, "split": split}
    cached = cache_options(stride, cache, cache_long_side, cache_workers)
    if len(columns) > 1:
        return MultiLabelTask(data, name=name, source=source, min_positives=min_positives, **cached)
    return BinaryTask(
        data,
        name=name,
        source=source,
        mask_source=None if mask_column is None else f"lung masks of column {mask_column!r}",
        mask_ignore_value=mask_ignore_value,
        **cached,
    )
