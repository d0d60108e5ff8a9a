"""VinDr-CXR (DICOM), three radiologists per training image, with a consensus rule.

Nguyen, Lam, Pham et al. "VinDr-CXR: An open dataset of chest X-rays with
radiologist's annotations", Scientific Data 9, 2022; Kaggle "VinBigData Chest X-ray
Abnormalities Detection" (2020). Each of the 15,000 training films was read
independently by three of 17 radiologists; ``train.csv`` has one row per box (or one
``No finding`` row) per reader: ``image_id, class_name, class_id, rad_id, x_min, y_min,
x_max, y_max``. Films are ``train/<image_id>.dicom``.

Consensus rule (``min_votes``): a finding is positive when at least ``min_votes`` of the
image's readers marked it (default 2: the majority of three), negative when none did.
A finding marked by fewer than ``min_votes`` readers is negative (``uncertain=
"negative"``, default) or unknown (``uncertain="ignore"``, NaN). ``min_votes=1`` is the
"any reader" rule. ``No finding`` is not voted on: it is derived after the consensus,
1 when no finding is positive and none is unknown, 0 when one is positive, else NaN.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Literal

import torch

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import OnError, Transform
from cxr_curriculum.data.findings import VINDR_FINDING_MAP
from cxr_curriculum.data.multilabel import Box, MultiLabelDataset
from cxr_curriculum.data.tables import existing, keep_present, read_table, table_or_error
from cxr_curriculum.data.windowing import Window

__all__ = ["VINDR_FINDINGS", "VINDR_NO_FINDING", "VinDrCXR"]


#: The 14 findings of VinDr-CXR's challenge table, in ``class_id`` order (0-13).
VINDR_FINDINGS: tuple[str, ...] = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation",
    "ILD", "Infiltration", "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis",
)  # fmt: skip
#: The ``class_name`` of a reader who saw nothing (``class_id`` 14); the last class.
VINDR_NO_FINDING = "No finding"


def _box(row: dict[str, str]) -> Box | None:
    coords = [row.get(k, "").strip() for k in ("x_min", "y_min", "x_max", "y_max")]
    if not all(coords):
        return None
    x0, y0, x1, y1 = (float(c) for c in coords)
    return Box(row["class_name"], x0, y0, x1, y1, row["rad_id"])


class VinDrCXR(MultiLabelDataset):
    """VinDr-CXR training films with consensus labels from their three readers.

    Classes are :data:`VINDR_FINDINGS`, then any other finding the table names
    (sorted), then ``"No finding"``. Films absent from ``root/train`` are left out and
    counted in ``.missing``. The table has no patient column (the films are
    de-identified), so each film is its own patient id. Reading the DICOM files needs
    the ``dicom`` extra.

    Args:
        root: Dataset folder; defaults to ``data_root() / "vindr-cxr"``.
        min_votes: Readers needed for a positive finding (see the module docstring).
        uncertain: A finding marked by fewer than ``min_votes`` readers (but some) is
            ``"negative"`` (0) or ``"ignore"`` (NaN, unknown).
        transform: Callable applied to the image tensor.
        csv_file: The table, if not ``root/train.csv[.gz|.zip]``: any table with
            ``image_id``, ``class_name`` and ``rad_id`` (box columns optional).
        image_dir: Folder of the films under ``root``.
        suffix: File name suffix of the films.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        targets: ``float32`` ``(N, C)`` consensus labels.
        votes: ``int64`` ``(N, C)``: readers who marked each finding (``No finding``:
            readers who saw nothing).
        readers: Per item, the sorted ``rad_id`` of its readers.
        boxes: Per item, every reader's boxes (:class:`~cxr_curriculum.data.Box`).
    """

    finding_map = VINDR_FINDING_MAP

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        min_votes: int = 2,
        uncertain: Literal["negative", "ignore"] = "negative",
        transform: Transform | None = None,
        *,
        csv_file: str | os.PathLike[str] | None = None,
        image_dir: str = "train",
        suffix: str = ".dicom",
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        if isinstance(min_votes, bool) or not isinstance(min_votes, int) or min_votes < 1:
            raise ValueError(f"min_votes must be an int >= 1, got {min_votes!r}")
        if uncertain not in ("negative", "ignore"):
            raise ValueError(f"uncertain must be 'negative' or 'ignore', got {uncertain!r}")
        self.root = Path(root) if root is not None else data_root() / "vindr-cxr"
        self.min_votes, self.uncertain = min_votes, uncertain
        self.csv_file = table_or_error(self.root, "train.csv", "VinDr-CXR", csv_file)
        rows = read_table(self.csv_file, ("image_id", "class_name", "rad_id"))
        marks: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        readers: dict[str, set[str]] = defaultdict(set)
        boxes: dict[str, list[Box]] = defaultdict(list)
        for row in rows:
            image, name, reader = row["image_id"].strip(), row["class_name"].strip(), row["rad_id"]
            marks[image][name].add(reader)
            readers[image].add(reader)
            box = _box(row)
            if box is not None:
                boxes[image].append(box)
        named = {n for m in marks.values() for n in m}
        others = sorted(named - {*VINDR_FINDINGS, VINDR_NO_FINDING})
        classes = [*VINDR_FINDINGS, *others, VINDR_NO_FINDING]
        few = [i for i, r in readers.items() if len(r) < min_votes]
        if few:
            raise ValueError(
                f"min_votes={min_votes} but {len(few)} image(s) of {self.csv_file} have fewer "
                f"readers (e.g. {few[0]}: {len(readers[few[0]])})"
            )
        folder = self.root / image_dir
        found, self.missing = keep_present(
            ((i, existing(folder / f"{i}{suffix}")) for i in marks),
            dataset="VinDrCXR", what="images", table=self.csv_file, folder=folder,
            hint=f" (looked for '<image_id>{suffix}')",
        )  # fmt: skip
        ids = [i for i, _ in found]
        votes = torch.tensor([[len(marks[i].get(c, ())) for c in classes] for i in ids])
        targets = self._consensus(votes)
        keep = self._set_targets([p for _, p in found], targets, ids, classes)
        self.votes = votes[keep]
        self.readers: list[list[str]] = [sorted(readers[ids[k]]) for k in keep]
        self.boxes: list[list[Box]] = [list(boxes[ids[k]]) for k in keep]

    def _consensus(self, votes: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` votes -> ``(N, C)`` targets under ``min_votes`` / ``uncertain``."""
        findings = votes[:, :-1]
        out = torch.zeros(votes.shape, dtype=torch.float32)
        some = (findings > 0) & (findings < self.min_votes)
        out[:, :-1][findings >= self.min_votes] = 1.0
        if self.uncertain == "ignore":
            out[:, :-1][some] = float("nan")
        body = out[:, :-1]
        positive = (body == 1).any(dim=1)
        unknown = body.isnan().any(dim=1)
        out[:, -1] = torch.where(positive, 0.0, torch.where(unknown, float("nan"), 1.0))
        return out
