"""Any labelled archive: a CSV table of image paths, patients and labels.

A hospital folder of DICOM films and a CSV of labels, or any public set in a layout
the library has no loader for, is read by :class:`LabelTable`: one row per image, with
a path column (PNG, JPEG or DICOM, relative to ``root``), a patient column, and one
binary label column or several finding columns coded as CheXpert codes them (``1``
positive, ``0`` negative, ``-1`` uncertain, blank unknown; the uncertainty policies of
:class:`~cxr_curriculum.data.CheXpert`), optionally a split column and a lung-mask column.

Rows are matched to files by name: the path as written, else a file with the same
name whatever its image suffix, in the same sub-folder (NIH's table says
``00000001_000.png``; the film on disk may be ``00000001_000.dcm``). Bad tables fail at
construction with a ``ValueError`` naming the file, the row (data rows counted from 1
after the header) and the column: a missing column, a path that matches no file or two
files, a blank patient id, a label outside the allowed codes.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from cxr_curriculum.data.base import CXRDataset, OnError, Transform
from cxr_curriculum.data.chexpert import (
    BlankPolicy,
    UncertainPolicy,
    check_policies,
    observation_targets,
)
from cxr_curriculum.data.exclusion import file_key
from cxr_curriculum.data.io import IMAGE_SUFFIXES
from cxr_curriculum.data.multilabel import any_finding, positive_counts
from cxr_curriculum.data.tables import keep_present, read_table
from cxr_curriculum.data.windowing import Window

__all__ = ["LabelTable", "image_stem"]


def image_stem(name: str) -> str:
    """A file name without its image suffix (``00000001_000.png`` -> ``00000001_000``;
    the suffixes of :data:`~cxr_curriculum.data.IMAGE_SUFFIXES`, any case).

    Names whose suffix is not an image suffix are kept whole (DICOM files named by UID,
    ``1.2.840.113619.2.55``, have no suffix).
    """
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else name


class _FileIndex:
    """Files under ``root`` by image stem, built on the first row that needs it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._by_stem: dict[str, list[Path]] | None = None

    def candidates(self, relative: Path) -> list[Path]:
        if self._by_stem is None:
            self._by_stem = defaultdict(list)
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                for name in sorted(filenames):
                    self._by_stem[image_stem(name)].append(Path(dirpath) / name)
        found = self._by_stem.get(image_stem(relative.name), [])
        if not relative.parent.parts:  # a bare name: anywhere under root
            return found
        folder = self.root / relative.parent  # a row naming a folder: that folder only
        return [p for p in found if p.parent == folder]


class LabelTable(CXRDataset):
    """A labelled image archive described by a CSV table (also ``.csv.gz``, ``.csv.zip``).

    *Binary* (one label column): ``.labels`` is 0/1, ``classes`` is
    ``["not <column>", "<column>"]``; rows whose label is unknown (blank, or ``-1``
    under ``uncertain="ignore"``) are left out and counted in ``.unknown``.
    *Multi-label* (several columns): ``.targets`` is ``float32`` ``(N, C)`` with 1, 0 and
    NaN (unknown), ``classes`` are the columns, ``.labels`` is "any finding" (columns
    named "No Finding" excepted); items' ``label`` is the row ``(C,)``. *Unlabelled*
    (no label columns; e.g. a pretraining pool): ``.labels`` are 0 and ``classes`` empty.

    Args:
        table: The CSV file.
        root: Folder the paths are relative to; default the table's folder.
        path_column: Column of image paths (PNG, JPEG or DICOM; absolute or relative).
        patient_column: Column of patient ids (a blank is an error); None makes each
            image its own patient (say so in a paper: patient splits need real ids).
        label_columns: One column (binary), several (multi-label) or none.
        split_column: Column naming each row's split (e.g. ``train`` / ``test``).
        split: Keep rows whose ``split_column`` value is this (or one of these).
        mask_column: Column of lung-mask paths (blank: no mask); kept per item in
            ``.lung_mask_files`` (items stay labelled; a study scores lung attention
            against them).
        uncertain: ``-1`` becomes unknown (``"ignore"``), 1 (``"positive"``) or 0
            (``"negative"``), as CheXpert's "U-Ignore", "U-Ones", "U-Zeros".
        blank: A blank label is ``"unknown"`` (default) or ``"negative"``.
        missing: A path that matches no file is an error (``"raise"``), or the row is
            left out and counted in ``.missing`` (``"skip"``, one warning).
        mask_ignore_value: Raw mask value meaning "ignore" (e.g. 127 for V7 masks).
        transform: Callable applied to the image tensor.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"`` (see ``base``).
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        targets: Multi-label targets ``(N, C)``, or None (binary, unlabelled).
        rows: The table rows kept, one per item (dicts).
        row_numbers: Each item's data row number in the table (from 1).
        splits: Each item's ``split_column`` value ("" without one).
        lung_mask_files: Each item's mask file, or None.
        unknown: Rows left out for an unknown binary label; ``missing``: for an absent image.
        patient_namespace: Where the patient ids are valid (the table and column), for
            :func:`~cxr_curriculum.data.exclude_test_images`.

    Raises:
        FileNotFoundError: The table or ``root`` does not exist.
        ValueError: A bad table (see the module docstring), naming file, row and column.

    Example:
        >>> import csv, pathlib, tempfile
        >>> from cxr_curriculum.data import LabelTable, bundled_sample_root
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> films = sorted((bundled_sample_root() / "train" / "PNEUMONIA").glob("*.jpeg"))[:2]
        >>> with open(folder / "labels.csv", "w", newline="") as f:
        ...     w = csv.writer(f)
        ...     w.writerow(["file", "patient", "Pneumonia"])
        ...     w.writerows([[str(films[0]), "p1", 1], [str(films[1]), "p2", 0]])
        >>> ds = LabelTable(folder / "labels.csv", path_column="file",
        ...                 patient_column="patient", label_columns=["Pneumonia"])
        >>> ds.labels, ds.classes
        ([1, 0], ['not Pneumonia', 'Pneumonia'])
    """

    def __init__(
        self,
        table: str | os.PathLike[str],
        root: str | os.PathLike[str] | None = None,
        *,
        path_column: str,
        patient_column: str | None,
        label_columns: Sequence[str] | str = (),
        split_column: str | None = None,
        split: str | Collection[str] | None = None,
        mask_column: str | None = None,
        uncertain: UncertainPolicy = "ignore",
        blank: BlankPolicy = "unknown",
        missing: Literal["raise", "skip"] = "raise",
        mask_ignore_value: int | None = None,
        transform: Transform | None = None,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        check_policies(uncertain, blank)
        if missing not in ("raise", "skip"):
            raise ValueError(f"missing must be 'raise' or 'skip', got {missing!r}")
        if split is not None and split_column is None:
            raise ValueError("split needs split_column (the column that names each row's split)")
        columns = [label_columns] if isinstance(label_columns, str) else list(label_columns)
        if len(set(columns)) != len(columns):
            raise ValueError(f"label_columns must be distinct; got {columns}")
        self.table = Path(table)
        self.root = Path(root) if root is not None else self.table.parent
        if not self.root.is_dir():
            raise FileNotFoundError(f"LabelTable: image folder {self.root} not found")
        self.mask_ignore_value = mask_ignore_value
        self.path_column, self.patient_column = path_column, patient_column
        self.label_columns, self.split_column = columns, split_column
        self.patient_namespace = f"LabelTable:{file_key(self.table)}:{patient_column}"
        need = [path_column, *columns]
        need += [c for c in (patient_column, split_column, mask_column) if c is not None]
        rows = read_table(self.table, need)
        numbered = list(enumerate(rows, start=1))
        if split is not None:
            wanted = {split} if isinstance(split, str) else set(split)
            numbered = [(n, r) for n, r in numbered if r[str(split_column)].strip() in wanted]
        if not numbered:
            which = f" whose {split_column!r} is {split!r}" if split is not None else ""
            raise ValueError(f"{self.table}: no rows{which}")
        index = _FileIndex(self.root)
        located = [
            ((n, r), self._locate(index, n, r[path_column], path_column, missing))
            for n, r in numbered
        ]
        kept, self.missing = keep_present(
            located, dataset="LabelTable", what="rows", table=self.table, folder=self.root
        )
        for (n, r), _ in kept:
            if patient_column is not None and not r[patient_column].strip():
                raise ValueError(f"{self._where(n, patient_column)}: blank patient id")
        self._build(kept, columns, uncertain, blank, mask_column, index)

    def _where(self, row: int, column: str) -> str:
        return f"{self.table}, row {row}, column {column!r}"

    def _locate(
        self, index: _FileIndex, row: int, value: str, column: str, missing: str
    ) -> Path | None:
        text = value.strip()
        if not text:
            raise ValueError(f"{self._where(row, column)}: blank path")
        relative = Path(text)
        exact = relative if relative.is_absolute() else self.root / relative
        if exact.is_file():
            return exact
        found = [] if relative.is_absolute() else index.candidates(relative)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(
                f"{self._where(row, column)}: {text!r} matches {len(found)} files by name: "
                f"{found[0]} and {found[1]}; write the file's own name in the table"
            )
        if missing == "skip":
            return None
        raise ValueError(
            f"{self._where(row, column)}: image {text!r} not found under {self.root} "
            f"(looked for it and for '{image_stem(relative.name)}.*' in that folder)"
        )

    def _build(
        self,
        kept: list[tuple[tuple[int, dict[str, str]], Path]],
        columns: list[str],
        uncertain: UncertainPolicy,
        blank: BlankPolicy,
        mask_column: str | None,
        index: _FileIndex,
    ) -> None:
        rows = [r for (_, r), _ in kept]
        numbers = [n for (n, _), _ in kept]
        targets = observation_targets(
            rows, columns, uncertain, blank, source=str(self.table), row_numbers=numbers
        )
        self.unknown = 0
        if len(columns) == 1:
            known = [i for i in range(len(rows)) if not math.isnan(float(targets[i, 0]))]
            self.unknown = len(rows) - len(known)
            kept = [kept[i] for i in known]
            rows, numbers, targets = (
                [rows[i] for i in known],
                [numbers[i] for i in known],
                targets[known],
            )
        files = [p for _, p in kept]
        patients = [
            r[self.patient_column].strip() if self.patient_column is not None else str(p)
            for r, p in zip(rows, files, strict=True)
        ]
        masks: list[Path | None] = []
        for n, r in zip(numbers, rows, strict=True):
            cell = r[mask_column].strip() if mask_column is not None else ""
            masks.append(self._locate(index, n, cell, str(mask_column), "raise") if cell else None)
        if len(columns) == 1:
            labels, classes = (
                [int(v) for v in targets[:, 0].tolist()],
                [f"not {columns[0]}", columns[0]],
            )
        elif columns:
            labels, classes = any_finding(targets, columns), list(columns)
        else:
            labels, classes = [0] * len(rows), []
        if len(set(files)) != len(files):
            dupes = sorted({str(f) for f in files if files.count(f) > 1})
            raise ValueError(f"{self.table}: several rows name the same image: {dupes[:3]}")
        keep = self._set_records(files, labels, patients, classes)
        self.targets: Tensor | None = targets[keep].contiguous() if len(columns) > 1 else None
        self.rows: list[dict[str, str]] = [rows[i] for i in keep]
        self.row_numbers: list[int] = [numbers[i] for i in keep]
        by = self.split_column
        self.splits: list[str] = [rows[i][by].strip() if by else "" for i in keep]
        self.lung_mask_files: list[Path | None] = [masks[i] for i in keep]

    def _label(self, index: int) -> Any:
        if self.targets is not None:
            return self.targets[index].clone()
        return self.labels[index]

    def class_counts(self) -> dict[str, int]:
        """Items per class; multi-label: items positive for each finding."""
        if self.targets is None:
            return super().class_counts()
        return positive_counts(self.targets, self.classes)
