"""Patient-level, label-stratified splits and label-fraction subsets.

Images of one patient are never on two sides of a split: a classifier that has seen a
patient's other radiograph can recognise the patient instead of the disease. Both
functions work on any dataset that exposes ``.patient_ids`` (and ``.labels`` for
stratification), and on ``torch.utils.data.Subset``s of one, nested to any depth.

Semi-supervised protocols (e.g. 1 %, 10 %, 100 % of labels as in arXiv:2301.10687)
use :func:`label_fraction_subset`, which is nested: for one seed, the 1 % subset is
inside the 10 % subset, which is inside the whole set.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

__all__ = [
    "dataset_files",
    "dataset_labels",
    "dataset_patient_ids",
    "label_fraction_subset",
    "patient_split",
]


def _field(dataset: Any, name: str) -> list[Any] | None:
    if isinstance(dataset, Subset):
        parent = _field(dataset.dataset, name)
        return None if parent is None else [parent[i] for i in dataset.indices]
    value = getattr(dataset, name, None)
    return None if value is None else list(value)


def dataset_labels(dataset: Any) -> list[int] | None:
    """``.labels`` of a dataset or (nested) ``Subset``; None if it has none."""
    return _field(dataset, "labels")


def dataset_patient_ids(dataset: Any) -> list[str]:
    """``.patient_ids`` of a dataset or (nested) ``Subset``.

    Raises:
        ValueError: The dataset has no ``patient_ids``.
    """
    ids = _field(dataset, "patient_ids")
    if ids is None:
        raise ValueError(f"{type(dataset).__name__} has no .patient_ids; patient splits need them")
    return [str(p) for p in ids]


def dataset_files(dataset: Any) -> list[Any] | None:
    """``.files`` of a dataset or (nested) ``Subset``; None if it has none."""
    return _field(dataset, "files")


def _patient_strata(dataset: Any, stratify: bool) -> dict[Any, list[str]]:
    """Patients grouped by their majority label (one stratum if not stratified)."""
    ids = dataset_patient_ids(dataset)
    labels = dataset_labels(dataset) if stratify else None
    per_patient: dict[str, Counter[Any]] = defaultdict(Counter)
    for i, pid in enumerate(ids):
        per_patient[pid][labels[i] if labels is not None else 0] += 1
    strata: dict[Any, list[str]] = defaultdict(list)
    for pid in sorted(per_patient):
        counts = per_patient[pid]
        label = min(counts, key=lambda k: (-counts[k], str(k)))  # majority, ties by name
        strata[label].append(pid)
    return dict(sorted(strata.items(), key=lambda kv: str(kv[0])))


def _shuffled(items: list[str], generator: torch.Generator) -> list[str]:
    return [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]


def _indices_of(dataset: Any, patients: set[str]) -> list[int]:
    return [i for i, p in enumerate(dataset_patient_ids(dataset)) if p in patients]


def patient_split(
    dataset: Dataset[Any],
    fractions: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
    stratify: bool = True,
) -> tuple[Subset[Any], ...]:
    """Split a dataset by patient, stratified by label.

    Within each label stratum (a patient's label is the majority label of its images)
    the patients are shuffled with ``seed`` and cut at the cumulative fractions, so
    every split gets about ``fraction`` of each label's patients.

    Args:
        dataset: A dataset with ``.patient_ids`` (and ``.labels`` if ``stratify``).
        fractions: Positive fractions summing to 1, one per split.
        seed: Seed of the ``torch.Generator`` that shuffles the patients.
        stratify: Balance labels across splits (needs ``.labels``).

    Returns:
        One ``Subset`` per fraction; no patient is in two of them.

    Raises:
        ValueError: Bad fractions, or too few patients for a split to be non-empty.
    """
    fracs = [float(f) for f in fractions]
    total_ok = math.isclose(sum(fracs), 1.0, abs_tol=1e-6)
    if len(fracs) < 2 or any(not f > 0 for f in fracs) or not total_ok:
        raise ValueError(
            f"fractions must be >= 2 positive numbers summing to 1, got {tuple(fractions)}"
        )
    if stratify and dataset_labels(dataset) is None:
        raise ValueError(f"{type(dataset).__name__} has no .labels; pass stratify=False")
    generator = torch.Generator().manual_seed(int(seed))
    bounds = [sum(fracs[: k + 1]) for k in range(len(fracs))]
    groups: list[set[str]] = [set() for _ in fracs]
    for patients in _patient_strata(dataset, stratify).values():
        order = _shuffled(patients, generator)
        n = len(order)
        cuts = [0] + [round(b * n) for b in bounds]
        cuts[-1] = n
        for k in range(len(fracs)):
            groups[k].update(order[cuts[k] : cuts[k + 1]])
    subsets = tuple(Subset(dataset, _indices_of(dataset, g)) for g in groups)
    empty = [k for k, s in enumerate(subsets) if len(s) == 0]
    if empty:
        raise ValueError(
            f"split(s) {empty} would be empty: {len(set(dataset_patient_ids(dataset)))} patients "
            f"are too few for fractions {tuple(fractions)}"
        )
    return subsets


def label_fraction_subset(
    dataset: Dataset[Any],
    fraction: float,
    seed: int = 0,
    stratify: bool = True,
) -> Subset[Any]:
    """A patient-level subset holding about ``fraction`` of the images of each label.

    Patients of each label stratum are shuffled with ``seed`` and taken in that order
    until the stratum's share ``ceil(fraction * images)`` is reached (at least one
    patient per stratum). The order depends only on the seed and the dataset, so for
    one seed smaller fractions give subsets of larger ones (1 % within 10 % within
    100 %).

    Args:
        dataset: A dataset with ``.patient_ids`` (and ``.labels`` if ``stratify``).
        fraction: In ``(0, 1]``; ``1.0`` returns every index.
        seed: Seed of the ``torch.Generator`` that orders the patients.
        stratify: Keep each label's share.

    Returns:
        A ``Subset`` of ``dataset`` (indices in dataset order).

    Raises:
        ValueError: ``fraction`` outside ``(0, 1]``.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if stratify and dataset_labels(dataset) is None:
        raise ValueError(f"{type(dataset).__name__} has no .labels; pass stratify=False")
    generator = torch.Generator().manual_seed(int(seed))
    counts = Counter(dataset_patient_ids(dataset))
    chosen: set[str] = set()
    for patients in _patient_strata(dataset, stratify).values():
        order = _shuffled(patients, generator)
        target = math.ceil(float(fraction) * sum(counts[p] for p in order))
        taken = 0
        for pid in order:
            if taken >= target:
                break
            chosen.add(pid)
            taken += counts[pid]
    return Subset(dataset, _indices_of(dataset, chosen))
