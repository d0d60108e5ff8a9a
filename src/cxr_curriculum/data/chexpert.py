"""CheXpert, from its own ``train.csv`` / ``valid.csv``.

Irvin, Rajpurkar, Ko et al. "CheXpert: A Large Chest Radiograph Dataset with
Uncertainty Labels and Expert Comparison", AAAI 2019. Fourteen observations were
extracted from the reports by the CheXpert labeler and coded ``1`` positive, ``0``
negative, ``-1`` uncertain and blank (not mentioned). The paper's policies for the
uncertain label are "U-Ignore", "U-Ones" and "U-Zeros" (``uncertain="ignore"``,
``"positive"``, ``"negative"``). MIMIC-CXR-JPG uses the same observations and coding
(:class:`~cxr_curriculum.data.MIMICCXR`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import OnError, Transform
from cxr_curriculum.data.findings import CHEXPERT_FINDING_MAP
from cxr_curriculum.data.multilabel import MultiLabelDataset
from cxr_curriculum.data.tables import keep_present, read_table, table_or_error
from cxr_curriculum.data.windowing import Window

__all__ = [
    "CHEXPERT_OBSERVATIONS",
    "BlankPolicy",
    "CheXpert",
    "UncertainPolicy",
    "chexpert_patient_id",
    "observation_targets",
]


#: The 14 observations, in the order of CheXpert's ``train.csv``.
CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
    "Pleural Other", "Fracture", "Support Devices",
)  # fmt: skip

UncertainPolicy = Literal["ignore", "positive", "negative"]
BlankPolicy = Literal["unknown", "negative"]
_SPLITS = ("train", "valid")
_PATIENT = re.compile(r"^patient\d+$")


def check_policies(uncertain: str, blank: str) -> None:
    """Validate the ``uncertain`` and ``blank`` arguments (shared with MIMIC-CXR)."""
    if uncertain not in ("ignore", "positive", "negative"):
        raise ValueError(f"uncertain must be 'ignore', 'positive' or 'negative', got {uncertain!r}")
    if blank not in ("unknown", "negative"):
        raise ValueError(f"blank must be 'unknown' or 'negative', got {blank!r}")


def code_value(text: str, where: str) -> float:
    """A table cell as ``1.0``, ``0.0``, ``-1.0`` or NaN (blank); a clear error otherwise."""
    text = text.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.inf
    if value not in (1.0, 0.0, -1.0):
        raise ValueError(f"{where}: label {text!r} is not one of 1, 0, -1 or blank")
    return value


def observation_targets(
    rows: Sequence[Mapping[str, str]],
    names: Sequence[str],
    uncertain: UncertainPolicy = "ignore",
    blank: BlankPolicy = "unknown",
    *,
    source: str = "table",
    row_numbers: Sequence[int] | None = None,
) -> Tensor:
    """Code CheXpert-style label cells (``1``, ``0``, ``-1``, blank) as targets.

    Args:
        rows: Table rows (dicts).
        names: The observation columns to read, in output order.
        uncertain: ``-1`` becomes NaN (``"ignore"``), 1 (``"positive"``) or 0
            (``"negative"``).
        blank: A blank cell becomes NaN (``"unknown"``) or 0 (``"negative"``).
        source: Name used in errors (the table file).
        row_numbers: Each row's data-row number in ``source`` (counted from 1 after the
            header), for errors; default ``1..len(rows)`` (rows as read, none left out).

    Returns:
        ``float32`` tensor ``(len(rows), len(names))`` with 1, 0 and NaN.

    Raises:
        ValueError: A cell holds something else (the message names ``source``, the data
            row, counted from 1 after the header, and the column), or a policy is unknown.
    """
    check_policies(uncertain, blank)
    on_uncertain = {"ignore": math.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    on_blank = math.nan if blank == "unknown" else 0.0
    out = np.empty((len(rows), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        cells = [row[name] for row in rows]
        final = {}
        for text in set(cells):
            try:
                value = code_value(text, f"{source}, column {name!r}")
            except ValueError:
                first = cells.index(text)  # first row holding it
                row_number = row_numbers[first] if row_numbers is not None else first + 1
                raise ValueError(
                    f"{source}, row {row_number}, column {name!r}: label {text.strip()!r} is "
                    "not one of 1, 0, -1 or blank"
                ) from None
            final[text] = on_blank if math.isnan(value) else on_uncertain if value == -1 else value
        out[:, j] = np.fromiter(map(final.__getitem__, cells), dtype=np.float32, count=len(cells))
    return torch.from_numpy(out)


def chexpert_patient_id(path: str) -> str:
    """``patientNNNNN`` from a CheXpert ``Path`` (``.../train/patient00001/study1/...``)."""
    for part in Path(path).parts:
        if _PATIENT.match(part):
            return part
    raise ValueError(f"cannot find a 'patientNNNNN' folder in CheXpert path {path!r}")


def resolve_under(root: Path, relative: str) -> Path | None:
    """``root / relative``, else ``root / relative`` without its first folder, if either exists."""
    path = root / relative
    if path.is_file():
        return path
    parts = Path(relative).parts
    if len(parts) > 1:
        path = root.joinpath(*parts[1:])
        if path.is_file():
            return path
    return None


class CheXpert(MultiLabelDataset):
    """CheXpert from ``root/train.csv`` or ``root/valid.csv`` (also ``.csv.gz``/``.zip``).

    Each row's ``Path`` (``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``)
    is resolved under ``root`` with or without its first folder, so ``root`` may be the
    folder that holds ``CheXpert-v1.0-small/`` or that folder itself. Rows whose image
    is absent are left out and counted in ``.missing`` (one warning).

    Args:
        root: Dataset folder; defaults to ``data_root() / "chexpert"``.
        split: ``"train"`` or ``"valid"``: which table to read.
        uncertain: Policy for ``-1``: ``"ignore"`` (NaN, unknown), ``"positive"``
            ("U-Ones") or ``"negative"`` ("U-Zeros").
        frontal_only: Keep only rows whose ``Frontal/Lateral`` is ``Frontal``.
        transform: Callable applied to the image tensor.
        csv_file: The table, if not in ``root``.
        blank: A blank cell is ``"unknown"`` (NaN, default) or ``"negative"``.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        targets: ``float32`` ``(N, 14)``, columns in ``classes`` (the table's order).
        views: ``Frontal/Lateral`` per item; ``projections``: ``AP/PA`` per item.
        missing: Rows left out because their image is absent.
    """

    finding_map = CHEXPERT_FINDING_MAP

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        split: Literal["train", "valid"] = "train",
        uncertain: UncertainPolicy = "ignore",
        frontal_only: bool = False,
        transform: Transform | None = None,
        *,
        csv_file: str | os.PathLike[str] | None = None,
        blank: BlankPolicy = "unknown",
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        check_policies(uncertain, blank)
        self.root = Path(root) if root is not None else data_root() / "chexpert"
        self.split, self.uncertain, self.blank = split, uncertain, blank
        self.csv_file = table_or_error(self.root, f"{split}.csv", "CheXpert", csv_file)
        rows = read_table(self.csv_file, ("Path", "Frontal/Lateral", *CHEXPERT_OBSERVATIONS))
        number = {id(r): n for n, r in enumerate(rows, 1)}  # data rows of the table
        if frontal_only:
            rows = [r for r in rows if r["Frontal/Lateral"] == "Frontal"]
        kept, self.missing = keep_present(
            ((r, resolve_under(self.root, r["Path"])) for r in rows),
            dataset="CheXpert", what="rows", table=self.csv_file, folder=self.root,
            hint=" (tried each Path with and without its first folder)",
        )  # fmt: skip
        header = list(rows[0]) if rows else []
        classes = [c for c in header if c in CHEXPERT_OBSERVATIONS]
        targets = observation_targets(
            [r for r, _ in kept], classes, uncertain, blank, source=str(self.csv_file),
            row_numbers=[number[id(r)] for r, _ in kept],
        )  # fmt: skip
        files = [p for _, p in kept]
        patients = [chexpert_patient_id(r["Path"]) for r, _ in kept]
        keep = self._set_targets(files, targets, patients, classes)
        self.views: list[str] = [kept[i][0]["Frontal/Lateral"] for i in keep]
        self.projections: list[str] = [kept[i][0].get("AP/PA", "") for i in keep]
