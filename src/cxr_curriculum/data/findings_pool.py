"""Several labelled datasets pooled on one finding vocabulary (unknowns stay unknown)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cxr_curriculum.data.base import OnError, Transform
from cxr_curriculum.data.findings import (
    CANONICAL_FINDINGS,
    FindingMap,
    harmonised_targets,
    root_and_indices,
)
from cxr_curriculum.data.multilabel import MultiLabelDataset
from cxr_curriculum.data.splits import dataset_files, dataset_patient_ids
from cxr_curriculum.data.windowing import Window

__all__ = ["FindingsPool"]


class FindingsPool(MultiLabelDataset):
    """Datasets pooled on the canonical findings, as one multi-label dataset.

    Each dataset's labels are mapped with :func:`~cxr_curriculum.data.harmonised_targets`
    (its own ``finding_map``, or ``mappings[k]``): a finding that a dataset does not
    label is NaN, never 0, so a masked loss skips it. Images are read from the
    datasets' ``.files`` (the datasets' own transforms are not applied; pass
    ``transform``). Patient ids are prefixed with the dataset's class name
    (``"NIHChestXray14:00000061"``), so equal ids from unrelated datasets stay apart
    while two splits of one dataset share them.

    Args:
        datasets: Loaders with a ``finding_map`` (or Subsets of them), each file once.
        vocabulary: Canonical names of the target columns, in order.
        mappings: Per dataset, a mapping that overrides its ``finding_map`` (or None).
        transform: Callable applied to each image tensor.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        targets: ``float32`` ``(N, len(vocabulary))``, NaN unknown.
        sources: Per item, the index of its dataset in ``datasets``.
        source_names: Class name of each dataset.

    Raises:
        ValueError: No dataset, a dataset without ``.files`` or a mapping, or a file in
            two datasets.
    """

    def __init__(
        self,
        *datasets: Any,
        vocabulary: Sequence[str] = CANONICAL_FINDINGS,
        mappings: Sequence[FindingMap | None] | None = None,
        transform: Transform | None = None,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        if not datasets:
            raise ValueError("FindingsPool needs at least one dataset")
        if mappings is not None and len(mappings) != len(datasets):
            raise ValueError(f"mappings must have one entry per dataset ({len(datasets)})")
        parts: list[torch.Tensor] = []
        files: list[Any] = []
        patients: list[str] = []
        sources: list[int] = []
        self.source_names = [type(root_and_indices(ds)[0]).__name__ for ds in datasets]
        for k, ds in enumerate(datasets):
            mapping = None if mappings is None else mappings[k]
            parts.append(harmonised_targets(ds, vocabulary, mapping))
            ds_files = dataset_files(ds)
            if ds_files is None:
                raise ValueError(f"dataset {k} ({self.source_names[k]}) has no .files")
            files.extend(ds_files)
            patients.extend(f"{self.source_names[k]}:{p}" for p in dataset_patient_ids(ds))
            sources.extend([k] * len(ds_files))
        self.finding_map: FindingMap = {name: ((name, "same"),) for name in vocabulary}
        if len(set(files)) != len(files):
            raise ValueError("FindingsPool: a file is in more than one dataset (or twice in one)")
        keep = self._set_targets(files, torch.cat(parts), patients, list(vocabulary))
        self.sources: list[int] = [sources[i] for i in keep]
