"""Label fractions for semi-supervised protocols and dataset fields read without images."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from cxr_curriculum.data import dataset_labels, dataset_patient_ids, label_fraction_subset

__all__ = [
    "LABEL_FRACTIONS",
    "class_names_of",
    "labels_of",
    "num_classes_of",
    "patient_ids_of",
    "targets_of",
    "train_subset",
]

#: The label fractions of the paper's downstream table (arXiv:2301.10687): 1 %, 10 %, 100 %.
LABEL_FRACTIONS: tuple[float, ...] = (0.01, 0.1, 1.0)


def train_subset(dataset: Dataset[Any], fraction: float, seed: int = 0) -> Dataset[Any]:
    """The labelled training images used at a label fraction.

    Patient-level and label-stratified, via
    :func:`cxr_curriculum.data.label_fraction_subset`: for one seed the 1 % subset is
    inside the 10 % subset, and the same seed always gives the same images. A
    multi-label dataset is stratified by its ``.labels`` where it has them (NIH
    ChestX-ray14: "any finding"), else split by patient without stratification.

    Args:
        dataset: A dataset with ``.patient_ids`` (and ``.labels`` to stratify), or a
            ``Subset`` of one. With ``fraction == 1`` any dataset works.
        fraction: Share of the labelled images in ``(0, 1]``.
        seed: Seed that orders the patients.

    Returns:
        ``dataset`` itself for ``fraction == 1``, else a ``Subset``.

    Raises:
        ValueError: If ``fraction`` is outside ``(0, 1]`` or the dataset lacks the fields.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1] (e.g. 0.01, 0.1, 1.0); got {fraction}")
    if float(fraction) == 1.0:
        return dataset
    stratify = dataset_labels(dataset) is not None
    return label_fraction_subset(dataset, float(fraction), seed=seed, stratify=stratify)


def labels_of(dataset: Dataset[Any]) -> Tensor | None:
    """``(N,)`` int64 labels from ``.labels`` (no image is read), or None."""
    labels = dataset_labels(dataset)
    return None if labels is None else torch.as_tensor(labels, dtype=torch.long)


def patient_ids_of(dataset: Dataset[Any]) -> tuple[str, ...] | None:
    """Patient id per item from ``.patient_ids``, or None if the dataset has none."""
    try:
        return tuple(dataset_patient_ids(dataset))
    except ValueError:
        return None


def _root(dataset: Any) -> tuple[Any, list[int] | None]:
    """The innermost dataset of a (nested) ``Subset`` and the indices into it (None: all)."""
    indices: list[int] | None = None
    while isinstance(dataset, Subset):
        step = [int(i) for i in dataset.indices]
        indices = step if indices is None else [step[i] for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def targets_of(dataset: Dataset[Any]) -> Tensor | None:
    """``(N, C)`` float32 multi-label targets from ``.targets`` (NaN = unknown), or None.

    A dataset is multi-label when it (or the dataset a ``Subset`` wraps) has a 2-D
    ``.targets`` (NIH ChestX-ray14 in CSV form, CheXpert); a 1-D ``.targets`` (class
    indices, as torchvision datasets have) is not. No image is read.
    """
    root, indices = _root(dataset)
    targets = getattr(root, "targets", None)
    if targets is None:
        return None
    try:
        t = torch.as_tensor(targets)
    except (TypeError, ValueError):  # e.g. a list of strings
        return None
    if t.ndim != 2:
        return None
    t = t.float()
    return t if indices is None else t[torch.as_tensor(indices, dtype=torch.long)]


def class_names_of(dataset: Dataset[Any], n_columns: int) -> tuple[str, ...] | None:
    """``.classes`` (finding names for a multi-label dataset) of a dataset or Subset.

    None unless there are exactly ``n_columns`` of them (one per score column).
    """
    root, _ = _root(dataset)
    classes = getattr(root, "classes", None)
    if classes is None or len(classes) != n_columns:
        return None
    return tuple(str(c) for c in classes)


def num_classes_of(*datasets: Dataset[Any], labels: Tensor | None = None) -> int:
    """Number of classes: ``len(.classes)`` of the first dataset that has it.

    Falls back to ``max(label) + 1`` over ``labels``.

    Raises:
        ValueError: If neither source gives at least two classes.
    """
    for ds in datasets:
        root = ds
        while hasattr(root, "dataset") and not hasattr(root, "classes"):
            root = root.dataset
        classes = getattr(root, "classes", None)
        if classes is not None and len(classes) >= 2:
            return len(classes)
    if labels is not None and labels.numel() and int(labels.max()) >= 1:
        return int(labels.max()) + 1
    raise ValueError("cannot tell the number of classes (need .classes or >= 2 label values)")
