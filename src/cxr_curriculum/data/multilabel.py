"""The common base of the multi-label finding datasets, and their box annotations.

Multi-label chest X-ray tables (CheXpert, MIMIC-CXR, VinDr-CXR, PadChest) give each
image a vector of findings, some of them unknown: CheXpert's blank and uncertain
labels, a finding that the radiologists of VinDr-CXR disagree on. A
:class:`MultiLabelDataset` keeps them as ``.targets``, a ``float32`` tensor ``(N, C)``
with ``1`` positive, ``0`` negative and ``NaN`` unknown; items are
:class:`~cxr_curriculum.data.LabeledImage` whose ``label`` is that row ``(C,)``, as
for :class:`~cxr_curriculum.data.NIHChestXray14` in its multi-label form.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from cxr_curriculum.data.base import CXRDataset
from cxr_curriculum.data.findings import FindingMap

__all__ = ["NO_FINDING_NAMES", "Box", "MultiLabelDataset"]

#: Column names that mean "nothing abnormal" (left out of ``.labels``' "any finding").
NO_FINDING_NAMES: frozenset[str] = frozenset({"No Finding", "No finding", "normal"})


class Box(NamedTuple):
    """One box drawn on an image, in pixels of the original (full-size) image.

    Attributes:
        finding: The finding the box marks (e.g. ``"Lung Opacity"``).
        x_min: Left edge (column), pixels.
        y_min: Top edge (row), pixels.
        x_max: Right edge, pixels (``x_min + width``).
        y_max: Bottom edge, pixels.
        reader: Who drew it (VinDr-CXR's ``rad_id``), ``""`` when not recorded.
    """

    finding: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    reader: str = ""


def any_finding(targets: Tensor, classes: Sequence[str]) -> list[int]:
    """1 where any finding other than "No Finding" is positive, else 0: ``(N, C) -> N``."""
    keep = [i for i, c in enumerate(classes) if c not in NO_FINDING_NAMES]
    if not keep or targets.shape[0] == 0:
        return [0] * int(targets.shape[0])
    return (targets[:, keep] == 1).any(dim=1).to(torch.int64).tolist()


def positive_counts(targets: Tensor, classes: Sequence[str]) -> dict[str, int]:
    """Items on which each finding is positive, from ``(N, C)`` targets."""
    sums = (targets == 1).sum(dim=0).tolist()
    return {c: int(n) for c, n in zip(classes, sums, strict=True)}


class MultiLabelDataset(CXRDataset):
    """A dataset whose items carry a vector of findings with unknowns.

    Subclasses read their table and call :meth:`_set_targets`.

    Attributes:
        targets: ``float32`` tensor ``(N, C)``: 1 positive, 0 negative, NaN unknown,
            columns in ``classes`` order.
        labels: 1 where any finding other than "No Finding" is positive, else 0 (what
            :func:`~cxr_curriculum.data.patient_split` stratifies on).
        finding_map: How ``classes`` map onto
            :data:`~cxr_curriculum.data.CANONICAL_FINDINGS` (see ``findings``).
    """

    finding_map: FindingMap | None = None

    targets: Tensor

    def _set_targets(
        self,
        files: Sequence[Path],
        targets: Tensor,
        patient_ids: Sequence[str],
        classes: Sequence[str],
    ) -> list[int]:
        """Store records and targets (bad-file policy applied); return kept row positions."""
        targets = torch.as_tensor(targets, dtype=torch.float32)
        if targets.ndim != 2 or targets.shape != (len(files), len(classes)):
            raise ValueError(
                f"targets must be (N, C) = ({len(files)}, {len(classes)}), "
                f"got {tuple(targets.shape)}"
            )
        if len({Path(f) for f in files}) != len(files):
            raise ValueError("each image file may appear only once in a multi-label dataset")
        kept = self._set_records(files, any_finding(targets, classes), patient_ids, classes)
        self.targets = targets[kept].contiguous()
        return kept

    def _label(self, index: int) -> Tensor:
        return self.targets[index].clone()

    def class_counts(self) -> dict[str, int]:
        """Items on which each finding is positive (read from ``.targets``)."""
        return positive_counts(self.targets, self.classes)

    def finding_counts(self) -> dict[str, dict[str, int]]:
        """``{finding: {"positive": n, "negative": n, "unknown": n}}`` over the items."""
        out = {}
        for j, name in enumerate(self.classes):
            col = self.targets[:, j]
            out[name] = {
                "positive": int((col == 1).sum()),
                "negative": int((col == 0).sum()),
                "unknown": int(col.isnan().sum()),
            }
        return out
