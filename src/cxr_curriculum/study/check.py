"""Checking a study before any training: tasks, file starts and the pretraining images.

A study that fails late wastes hours: a test split with one class used to pretrain every
arm and then die in DeLong's test naming no task. :func:`check_study` (``Study.check()``,
``python -m cxr_curriculum study FILE --check``, and the first thing ``Study.run()``
does) loads every task and refuses, naming the task, arm or file:

* a task whose data cannot be read (missing folder, bad table: the loaders name the
  file, row and column), whose training or test set is empty, whose binary labels have
  one class in either set, whose multi-label test set has no finding with enough
  positives, or whose own lung masks are missing or unreadable;
* an arm that starts from a file whose tensors do not fit the study's architecture;
* a pretraining pool that is empty (after the test patients are removed), holds a file
  that is not an image (every file's first bytes are read), or has an image that does
  not decode (a sample of :data:`SAMPLE_IMAGES` is decoded in full).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxr_curriculum.curriculum.sampling import first_image
from cxr_curriculum.data import ImageReadError
from cxr_curriculum.data.exclusion import image_records
from cxr_curriculum.data.formats import sniff_file
from cxr_curriculum.study.starts import check_start

if TYPE_CHECKING:
    from cxr_curriculum.study.study import Study

__all__ = ["SAMPLE_IMAGES", "check_study"]

#: Pool images decoded in full by the check (evenly spaced); every file is sniffed.
SAMPLE_IMAGES = 16
_READABLE = ("png", "jpeg", "dicom", "acr-nema")


def _named(what: str, err: Exception) -> ValueError:
    text = str(err)
    return ValueError(text if text.startswith(what) else f"{what}: {text}")


def _check_tasks(study: Study) -> list[str]:
    lines = []
    for task in study.tasks:
        try:
            info = task.check()
        except (ValueError, FileNotFoundError) as err:  # ImageReadError is a ValueError
            raise _named(f"task {task.name!r}", err) from err
        parts = [f"{info['n_train']} training and {info['n_test']} test images"]
        parts.append(f"{info['test_patients']} test patients")
        if "test_classes" in info:
            parts.append(
                "test classes " + ", ".join(f"{k} {v}" for k, v in info["test_classes"].items())
            )
        if "findings" in info:
            parts.append(f"{len(info['findings'])} findings scored")
        if "test_masks" in info:
            parts.append(f"{info['test_masks']} test images with own lung masks")
        lines.append(f"task {task.name!r} ({task.metric}): " + "; ".join(parts))
    return lines


def _check_arms(study: Study) -> list[str]:
    lines = []
    for arm in study.arms:
        if arm.start_file is None:
            continue
        try:
            sha = check_start(arm, study.arch)
        except (ValueError, FileNotFoundError) as err:
            raise _named(f"arm {arm.name!r}", err) from err
        lines.append(f"arm {arm.name!r}: starts from {arm.start_file} (sha256 {sha[:12]}...)")
    return lines


def _check_pool(study: Study) -> list[str]:
    if not any(a.stages for a in study.arms):
        return []
    if study.pool_source is None:
        raise ValueError("an arm has stages but the study has no pretraining data")
    data = study.pretrain_data
    assert data is not None
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        removed = sum(e.removed for e in study.pool_exclusion.values())
        why = f" after removing {removed} images of test patients" if removed else ""
        raise ValueError(f"the pretraining pool holds no images{why}")
    records = image_records(data)
    for record in records:
        kind = sniff_file(record.file)
        if kind not in _READABLE:
            raise ImageReadError(
                record.file, f"pretraining pool file is not a PNG, JPEG or DICOM image ({kind})"
            )
    step = max(1, n // SAMPLE_IMAGES)
    for i in list(range(0, n, step))[:SAMPLE_IMAGES]:
        first_image(data[i], i)
    lines = [
        f"pretraining pool: {n} images (every file is an image; {min(n, SAMPLE_IMAGES)} decoded)"
    ]
    verb = "removed" if study.exclude_test_patients else "left in (exclude_test_patients = false)"
    for name, e in study.pool_exclusion.items():
        lines.append(
            f"pretraining pool, task {name!r}: {e.removed} images of its test patients {verb} "
            f"({e.by_file} test files, {e.by_patient} other images of test patients)"
        )
    return lines


def check_study(study: Study) -> list[str]:
    """Check every task, file start and the pretraining pool (see the module docstring).

    Returns:
        One line per task, file start and pool fact, for the command line's ``--check``.

    Raises:
        ValueError: Naming the task, arm or file at fault (an
            :class:`~cxr_curriculum.data.ImageReadError` for a pool file).
    """
    lines: list[Any] = []
    lines += _check_tasks(study)
    lines += _check_arms(study)
    lines += _check_pool(study)
    return lines
