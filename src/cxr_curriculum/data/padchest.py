"""PadChest (16-bit PNG), with its labels given as Python-style lists.

Bustos, Pertusa, Salinas, de la Iglesia-Vayá, "PadChest: A large chest x-ray image
dataset with multi-label annotated reports", Medical Image Analysis 66, 2020. The
table ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` has one row per image:
``ImageID`` (a 16-bit PNG), ``ImageDir`` (the number of the zip it ships in, hence the
folder it unpacks to), ``PatientID``, ``Projection`` (``PA``, ``L``, ``AP``,
``AP_horizontal``, ...), ``MethodLabel`` (``Physician`` for the 27 % labelled by hand,
``RNN_model`` for the rest) and ``Labels``, e.g. ``"['pleural effusion', 'cardiomegaly']"``.
Labels were extracted from reports: a label that is present is positive, one that is
absent negative (as for NIH ChestX-ray14).
"""

from __future__ import annotations

import ast
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import torch

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import OnError, Transform
from cxr_curriculum.data.findings import PADCHEST_FINDING_MAP
from cxr_curriculum.data.multilabel import MultiLabelDataset
from cxr_curriculum.data.tables import keep_present, read_table, table_or_error
from cxr_curriculum.data.windowing import Window

__all__ = ["PADCHEST_CSV_NAME", "PADCHEST_FINDINGS", "PadChest", "parse_label_list"]


#: File name of the published label table.
PADCHEST_CSV_NAME = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
#: Default ``findings``: the PadChest labels that map onto the canonical vocabulary.
PADCHEST_FINDINGS: tuple[str, ...] = tuple(PADCHEST_FINDING_MAP)
_EXCLUDE = "exclude"
_MAX_CELL = 20_000


def parse_label_list(text: str, where: str = "Labels") -> list[str] | None:
    """Parse a ``Labels`` cell such as ``"['normal']"`` into a list of stripped names.

    Only literals are evaluated (:func:`ast.literal_eval`, never ``eval``), and only a
    list or tuple of strings is accepted; empty names are dropped.

    Returns:
        The names, or None for a blank or ``nan`` cell (no labels).

    Raises:
        ValueError: The cell is not such a list (the error names ``where``).
    """
    text = text.strip()
    if not text or text.lower() in ("nan", "none"):
        return None
    if len(text) > _MAX_CELL:
        raise ValueError(f"{where}: label cell of {len(text)} characters is too long")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{where}: cannot parse labels {text[:60]!r}") from None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: labels must be a list of strings, got {text[:60]!r}")
    return [v.strip() for v in value if v.strip()]


class PadChest(MultiLabelDataset):
    """PadChest images with multi-hot targets over a chosen list of labels.

    Images are found at ``root/<ImageDir>/<ImageID>`` (the unpacked zips) or
    ``root/<ImageID>`` (one flat folder); absent ones are counted in ``.missing``.
    Rows labelled ``exclude`` are left out (``.excluded``), as are rows with no labels
    (``.unlabelled``). 16-bit PNGs are read at full depth by
    :func:`~cxr_curriculum.data.read_image` (values / 65535).

    Args:
        root: Dataset folder; defaults to ``data_root() / "padchest"``.
        findings: Labels that become the target columns (``classes``), spelled as in
            the table; default :data:`PADCHEST_FINDINGS`.
        projections: Keep rows whose ``Projection`` is one of these (e.g. ``("PA",
            "AP")``); None keeps all.
        transform: Callable applied to the image tensor.
        csv_file: The table, if not ``root/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv``.
        physician_only: Keep only rows whose ``MethodLabel`` is ``Physician``.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        targets: ``float32`` ``(N, C)`` with 1 present, 0 absent.
        finding_labels: Every label of each item, as parsed.
        projections: ``Projection`` per item.
    """

    finding_map = PADCHEST_FINDING_MAP

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        findings: Sequence[str] | None = None,
        projections: Collection[str] | None = None,
        transform: Transform | None = None,
        *,
        csv_file: str | os.PathLike[str] | None = None,
        physician_only: bool = False,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        for name, value in (("findings", findings), ("projections", projections)):
            if isinstance(value, str):
                raise ValueError(f"{name} must be a collection of strings, not {value!r}")
        classes = list(PADCHEST_FINDINGS if findings is None else findings)
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"findings must be distinct label names, got {classes}")
        self.root = Path(root) if root is not None else data_root() / "padchest"
        self.csv_file = table_or_error(self.root, PADCHEST_CSV_NAME, "PadChest", csv_file)
        need = ("ImageID", "ImageDir", "PatientID", "Projection", "MethodLabel", "Labels")
        rows = read_table(self.csv_file, need)
        if projections is not None:
            rows = [r for r in rows if r["Projection"] in projections]
        if physician_only:
            rows = [r for r in rows if r["MethodLabel"] == "Physician"]
        parsed = [(r, parse_label_list(r["Labels"], f"{self.csv_file}, {r['ImageID']}"))
                  for r in rows]  # fmt: skip
        labelled = [(r, labels) for r, labels in parsed if labels is not None]
        self.unlabelled = len(parsed) - len(labelled)
        usable = [(r, labels) for r, labels in labelled if _EXCLUDE not in labels]
        self.excluded = len(labelled) - len(usable)
        kept, self.missing = keep_present(
            (((r, labels), self._path(r)) for r, labels in usable),
            dataset="PadChest", what="rows", table=self.csv_file, folder=self.root,
        )  # fmt: skip
        column = {c: j for j, c in enumerate(classes)}
        targets = torch.zeros(len(kept), len(classes))
        for i, ((_, labels), _) in enumerate(kept):
            for label in labels:
                if label in column:
                    targets[i, column[label]] = 1.0
        files = [p for _, p in kept]
        patients = [r["PatientID"] for (r, _), _ in kept]
        keep = self._set_targets(files, targets, patients, classes)
        self.finding_labels: list[list[str]] = [kept[i][0][1] for i in keep]
        self.projections: list[str] = [kept[i][0][0]["Projection"] for i in keep]

    def _path(self, row: dict[str, str]) -> Path | None:
        name, folder = row["ImageID"].strip(), row["ImageDir"].strip()
        for path in (self.root / folder / name, self.root / name):
            if path.is_file():
                return path
        return None
