"""Keeping a task's test patients out of a pretraining pool.

Pretraining on unlabelled images of the patients a task is tested on is transductive:
the backbone has seen those patients (often those very films) before the test. The
usual protocol (arXiv:2301.10687) pretrains on images that no evaluation uses;
:func:`exclude_test_images` makes that exclusion automatic and counted.

A pool image is removed for a task when

* its file is one of the task's test files (absolute, normalised paths), or
* it has a patient id that one of the task's test images has, **and** both come from
  the same archive: patient ids are compared only within one *patient namespace*, the
  dataset class and the folder (or label table) it was read from, because the ids of
  two archives are unrelated (NIH's ``00000001`` is not the covid collection's ``1``).

Images without a patient id (a folder of files, :class:`~cxr_curriculum.data.UnlabeledImages`)
are compared by file only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch.utils.data import ConcatDataset, Dataset, Subset

__all__ = [
    "ImageRecord",
    "PoolExclusion",
    "exclude_test_images",
    "file_key",
    "image_records",
    "patient_namespace",
]

#: ``(namespace, patient id)``: a patient of one archive.
PatientKey = tuple[str, str]


class ImageRecord(NamedTuple):
    """One image of a dataset: its file key and, where known, its patient."""

    file: str
    patient: PatientKey | None


def file_key(path: str | os.PathLike[str]) -> str:
    """Absolute normalised path (symbolic links are not followed; cheap on large pools)."""
    return os.path.normpath(os.path.abspath(path))


def patient_namespace(dataset: Any) -> str | None:
    """Where a dataset's patient ids are valid: ``"<class>:<folder or table>"``.

    A dataset may name its own (``.patient_namespace``, as
    :class:`~cxr_curriculum.data.LabelTable` does); otherwise the class name and the
    ``root`` folder it was read from. None when the dataset has no patient ids.
    """
    if getattr(dataset, "patient_ids", None) is None:
        return None
    own = getattr(dataset, "patient_namespace", None)
    if isinstance(own, str):
        return own
    root = getattr(dataset, "root", None)
    where = file_key(root) if isinstance(root, (str, os.PathLike)) else "?"
    return f"{type(dataset).__qualname__}:{where}"


def image_records(dataset: Any) -> list[ImageRecord]:
    """File key and patient of every item, through ``Subset``, ``ConcatDataset`` and caches.

    Raises:
        ValueError: A dataset that does not list its files (``.files``).
    """
    from cxr_curriculum.data.cache import DecodedCache

    if isinstance(dataset, Subset):
        parent = image_records(dataset.dataset)
        return [parent[int(i)] for i in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        return [r for part in dataset.datasets for r in image_records(part)]
    if isinstance(dataset, DecodedCache):
        return image_records(dataset.dataset)
    files = getattr(dataset, "files", None)
    if files is None:
        raise ValueError(
            f"{type(dataset).__name__} does not list its files (.files); a pool or test set "
            "must, so that test images can be kept out of pretraining"
        )
    keys = getattr(dataset, "patient_keys", None)  # ImagePool: per file, from its sources
    if keys is not None:
        return [ImageRecord(file_key(f), k) for f, k in zip(files, keys, strict=True)]
    ids = getattr(dataset, "patient_ids", None)
    space = patient_namespace(dataset)
    if ids is None or space is None:
        return [ImageRecord(file_key(f), None) for f in files]
    return [ImageRecord(file_key(f), (space, str(p))) for f, p in zip(files, ids, strict=True)]


@dataclass(frozen=True)
class PoolExclusion:
    """How many pool images one task's test set kept out of pretraining.

    Attributes:
        task: The task's name.
        by_file: Pool images that are test images (the same file).
        by_patient: Other pool images of test patients (same archive, same patient id).
    """

    task: str
    by_file: int
    by_patient: int

    @property
    def removed(self) -> int:
        """Pool images removed for this task."""
        return self.by_file + self.by_patient

    def to_dict(self) -> dict[str, int]:
        """``{"removed", "by_file", "by_patient"}``."""
        return {"removed": self.removed, "by_file": self.by_file, "by_patient": self.by_patient}


def exclude_test_images(
    pool: Dataset[Any], tests: Mapping[str, Dataset[Any]]
) -> tuple[Dataset[Any], dict[str, PoolExclusion]]:
    """The pool without the images of every test set's patients (see the module docstring).

    Args:
        pool: The pretraining images (any dataset of this package, ``Subset``,
            ``ConcatDataset`` or :class:`~cxr_curriculum.data.DecodedCache` of them).
        tests: Test set per task name.

    Returns:
        The pool itself when nothing is removed (so its fingerprint is unchanged), else
        a ``Subset`` of it; and per task, what was removed (an image removed for two
        tasks counts for both).

    Raises:
        ValueError: The pool or a test set does not list its files.
    """
    records = image_records(pool)
    drop: set[int] = set()
    counts = {}
    for name, test in tests.items():
        test_records = image_records(test)
        files = {r.file for r in test_records}
        patients = {r.patient for r in test_records if r.patient is not None}
        by_file = by_patient = 0
        for i, r in enumerate(records):
            if r.file in files:
                by_file += 1
            elif r.patient is not None and r.patient in patients:
                by_patient += 1
            else:
                continue
            drop.add(i)
        counts[name] = PoolExclusion(name, by_file, by_patient)
    if not drop:
        return pool, counts
    return Subset(pool, [i for i in range(len(records)) if i not in drop]), counts
