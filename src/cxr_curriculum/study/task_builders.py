"""Task builders of the labelled sets with image folders: Kermany, covid, NIH, Shenzhen,
RSNA and SIIM-ACR (binary, or NIH's findings).

Each builder's keyword arguments are the keys of its ``[[tasks]]`` table (see
:mod:`~cxr_curriculum.study.task_kinds`). Every one takes ``name``, ``root``,
``stride`` (every n-th image of both sets; quick runs), ``cache`` (a
:class:`~cxr_curriculum.data.DecodedCache` folder), ``cache_long_side`` and
``cache_workers``; those without an official test split take ``test_share`` and
``split_seed`` (a patient-level, label-stratified split, recorded in the task's config).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cxr_curriculum.data import (
    COVID_FRONTAL_VIEWS,
    COVID_VS_OTHER,
    V7_IGNORE_VALUE,
    CovidChestXray,
    NIHChestXray14,
    RSNAPneumonia,
    ShenzhenMontgomery,
    SIIMPneumothorax,
    bundled_sample_root,
    data_root,
)
from cxr_curriculum.study.generic_tasks import BinaryTask, split_by_patient
from cxr_curriculum.study.nih_task import NIHFindingsTask
from cxr_curriculum.study.tasks import KermanyTask, Task

__all__ = [
    "covid_task",
    "kermany_task",
    "nih_task",
    "rsna_task",
    "shenzhen_task",
    "siim_task",
    "split_source",
]


def split_source(kind: str, test_share: float, split_seed: int, **more: Any) -> dict[str, Any]:
    """The ``source`` of a task split by patient: kind, settings, share and seed."""
    return {"kind": kind, **more, "split": {"test_share": test_share, "seed": split_seed}}


def cache_options(
    stride: int, cache: str | os.PathLike[str] | None, cache_long_side: int, cache_workers: int
) -> dict[str, Any]:
    """The generic tasks' keyword arguments for ``stride`` and the cache keys."""
    return {
        "stride": stride,
        "cache_dir": cache,
        "cache_long_side": cache_long_side,
        "cache_workers": cache_workers,
    }


def kermany_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "kermany",
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> Task:
    """Pneumonia vs normal on Kermany et al. (Cell 2018): the published train/test split.

    ``root = "sample"`` is the bundled 48-image sample. Returns a
    :class:`~cxr_curriculum.study.KermanyTask`, so a study of an earlier version resumes
    with the same task config.
    """
    if root == "sample":
        root = bundled_sample_root()
    return KermanyTask(
        root,
        name=name,
        stride=stride,
        cache_dir=cache,
        cache_long_side=cache_long_side,
        cache_workers=cache_workers,
    )


def covid_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "covid",
    views: Sequence[str] = COVID_FRONTAL_VIEWS,
    test_share: float = 0.3,
    split_seed: int = 0,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> BinaryTask:
    """The paper's task (arXiv:2301.10687): Covid-19 vs the other labelled findings.

    ieee8023 covid-chestxray (Cohen et al., arXiv:2006.11988): COVID-19 (findings
    starting with "COVID-19") against every other labelled finding of the same
    collection (other pneumonias, "No Finding"), so that no hospital-of-origin shortcut
    separates the classes; rows whose finding is ``todo`` or ``Unknown`` are left out
    (:data:`~cxr_curriculum.data.COVID_VS_OTHER`). Frontal views only
    (:data:`~cxr_curriculum.data.COVID_FRONTAL_VIEWS`: PA, AP, AP Supine and erect AP;
    lateral and unrecorded views are left out). On the shared copy this gives 411
    images of 240 patients: COVID-19 351 images (215 patients), other 60 (33 patients;
    8 patients have images of both classes); views PA 205, AP Supine 151, AP 106.

    The test set is a patient-level split (``test_share`` of each class's patients,
    ``split_seed``; recorded in the task's config). The V7 Labs lung masks (drawn by
    people, CC BY 4.0) are the task's own masks: 346 of the COVID-19 images and 2 of
    the others have one, so lung attention against them is measured on Covid-19 films.
    """
    if isinstance(views, str):
        raise ValueError(f"views must be a list of view names, e.g. [{views!r}]; got {views!r}")
    views = tuple(views)

    def data() -> tuple[Any, Any]:
        full = CovidChestXray(root, views=views, label_map=COVID_VS_OTHER)
        return split_by_patient(full, test_share, split_seed)

    source = split_source(
        "covid", test_share, split_seed, views=list(views), labels="COVID-19 vs other"
    )
    return BinaryTask(
        data,
        name=name,
        source=source,
        mask_source="V7 Labs lung masks (drawn by people)",
        mask_ignore_value=V7_IGNORE_VALUE,
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def nih_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "nih",
    csv_file: str | os.PathLike[str] | None = None,
    positive: str | None = None,
    negative: str | None = None,
    test_share: float = 0.3,
    split_seed: int = 0,
    min_positives: int = 5,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> Task:
    """NIH ChestX-ray14 (Wang et al., CVPR 2017) from its ``Data_Entry`` table.

    Without ``positive``: the 14 findings, macro AUROC over those with ``min_positives``
    positive and negative test images (:class:`~cxr_curriculum.study.NIHFindingsTask`;
    ``stride`` and ``cache`` need a binary task). With ``positive`` (e.g.
    ``"Pneumonia"``): a binary task, against ``negative`` (e.g. ``"No Finding"``) or
    every other row. Patient-level split (``test_share``, ``split_seed``).
    """
    if positive is None:
        if negative is not None:
            raise ValueError("negative needs positive (a binary NIH task)")
        if cache is not None or stride != 1:
            raise ValueError("stride and cache need a binary NIH task (positive = ...)")
        return NIHFindingsTask(
            root,
            csv_file,
            test_share=test_share,
            split_seed=split_seed,
            min_positives=min_positives,
            name=name,
        )

    def data() -> tuple[Any, Any]:
        csv = csv_file or data_root() / "label-tables" / "Data_Entry_2017_v2020.csv.gz"
        full = NIHChestXray14(root, csv_file=csv, positive=positive, negative=negative)
        return split_by_patient(full, test_share, split_seed)

    source = split_source("nih", test_share, split_seed, positive=positive, negative=negative)
    return BinaryTask(
        data,
        name=name,
        source=source,
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def shenzhen_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "shenzhen",
    test_share: float = 0.3,
    split_seed: int = 0,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> BinaryTask:
    """Tuberculosis vs normal on Shenzhen / Montgomery (Jaeger et al. 2014), with lung masks.

    Labels are the published TB suffix of each file name (``_1`` TB, ``_0`` normal);
    the lung masks of the folder (Shenzhen: Stirenko et al. 2018) are the task's own.
    Patient-level split. The shared folder holds TB-positive films only: such a task
    has one class and is refused by the study's check.
    """

    def data() -> tuple[Any, Any]:
        full = ShenzhenMontgomery(root, with_masks=False, target="tuberculosis")
        return split_by_patient(full, test_share, split_seed)

    return BinaryTask(
        data,
        name=name,
        source=split_source("shenzhen", test_share, split_seed, labels="tuberculosis vs normal"),
        mask_source="Shenzhen/Montgomery lung masks (drawn by people)",
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def rsna_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "rsna",
    csv_file: str | os.PathLike[str] | None = None,
    image_dir: str = "stage_2_train_images",
    suffix: str = ".dcm",
    test_share: float = 0.3,
    split_seed: int = 0,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> BinaryTask:
    """RSNA Pneumonia (Shih et al. 2019): "Lung Opacity" vs not, one film per patient.

    The challenge's test labels are not public: a patient-level split of the training
    table (``stage_2_train_labels.csv``; films ``image_dir/<patientId><suffix>``).
    """

    def data() -> tuple[Any, Any]:
        full = RSNAPneumonia(root, csv_file=csv_file, image_dir=image_dir, suffix=suffix)
        return split_by_patient(full, test_share, split_seed)

    return BinaryTask(
        data,
        name=name,
        source=split_source("rsna", test_share, split_seed),
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )


def siim_task(
    root: str | os.PathLike[str] | None = None,
    *,
    name: str = "siim",
    csv_file: str | os.PathLike[str] | None = None,
    image_dir: str = "dicom-images-train",
    test_share: float = 0.3,
    split_seed: int = 0,
    stride: int = 1,
    cache: str | os.PathLike[str] | None = None,
    cache_long_side: int = 512,
    cache_workers: int = 0,
) -> BinaryTask:
    """SIIM-ACR Pneumothorax (Zawacki et al. 2019): pneumothorax vs not.

    A split of ``train-rle.csv`` by study folder (the table has no patient column; see
    :class:`~cxr_curriculum.data.SIIMPneumothorax`).
    """

    def data() -> tuple[Any, Any]:
        full = SIIMPneumothorax(root, csv_file=csv_file, image_dir=image_dir)
        return split_by_patient(full, test_share, split_seed)

    return BinaryTask(
        data,
        name=name,
        source=split_source("siim", test_share, split_seed),
        **cache_options(stride, cache, cache_long_side, cache_workers),
    )
