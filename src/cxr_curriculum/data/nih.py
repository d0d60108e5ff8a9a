"""NIH ChestX-ray14, in its class-folder form and its official CSV form.

Wang, Peng, Lu et al. "ChestX-ray8: Hospital-scale Chest X-ray Database and
Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax
Diseases", CVPR 2017. Labels were mined from reports by NLP and are noisy.
File names are ``<patient>_<study>.png`` (``00000061_012.png``: patient ``00000061``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import CXRDataset, OnError, Transform
from cxr_curriculum.data.findings import NIH_FINDING_MAP
from cxr_curriculum.data.io import is_image_file
from cxr_curriculum.data.label_table import image_stem
from cxr_curriculum.data.tables import find_table, keep_present, read_table
from cxr_curriculum.data.windowing import Window

__all__ = ["NIH_CSV_NAME", "NIH_CSV_NAMES", "NIH_FINDINGS", "NIHChestXray14", "nih_patient_id"]


#: File name of the official label table.
NIH_CSV_NAME = "Data_Entry_2017.csv"
#: Table names looked for in ``root`` (each also as ``.gz`` / ``.zip``), in this order.
NIH_CSV_NAMES: tuple[str, ...] = (NIH_CSV_NAME, "Data_Entry_2017_v2020.csv")

#: The 14 findings of ChestX-ray14, in the order of the paper's tables.
NIH_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)  # fmt: skip
_NO_FINDING = "No Finding"


def nih_patient_id(name: str) -> str:
    """Patient id from ``<patient>_<study>.png`` (``00000061_012.png`` -> ``00000061``)."""
    stem = Path(name).stem
    if "_" not in stem:
        raise ValueError(
            f"cannot parse an NIH patient id from {name!r}; expected '<patient>_<study>.png'"
        )
    return stem.split("_", 1)[0]


def _by_name_or_stem(files: list[Path]) -> Callable[[str], Path | None]:
    """Look a table's image name up by file name, else by stem whatever the suffix.

    NIH's table names ``00000001_000.png``; a DICOM conversion of the archive holds
    ``00000001_000.dcm``. Two files with the row's stem (and neither its exact name)
    are an error naming both.
    """
    by_name = {p.name: p for p in files}
    by_stem: dict[str, list[Path]] = {}
    for p in files:
        by_stem.setdefault(image_stem(p.name), []).append(p)

    def find(name: str) -> Path | None:
        name = name.strip()
        if name in by_name:
            return by_name[name]
        found = by_stem.get(image_stem(name), [])
        if len(found) > 1:
            raise ValueError(
                f"NIH table row {name!r} matches {len(found)} files by name: {found[0]} and "
                f"{found[1]}; keep one of them under root"
            )
        return found[0] if found else None

    return find


class NIHChestXray14(CXRDataset):
    """NIH ChestX-ray14 from class folders or from ``Data_Entry_2017.csv``.

    *Folder form* (no CSV): every sub-folder of ``root`` that holds images is a class
    (sorted names; ``["No_findings", "Pneumonia"]`` for the shared subset).

    *CSV form* (``csv_file`` given, or a table of :data:`NIH_CSV_NAMES` is in ``root``,
    plain, ``.gz`` or ``.zip``, e.g. the 2020 release ``Data_Entry_2017_v2020.csv.gz``): rows name
    images found anywhere under ``root`` (the official ``images_0NN/images/`` folders or
    one flat folder), by file name or else by name whatever the suffix (the row
    ``00000001_000.png`` finds ``00000001_000.dcm``); rows whose image is absent are
    dropped and counted in ``.missing``, and logged once per process at INFO (a folder
    with part of the 112,120 images is the usual case; logger
    ``cxr_curriculum.data.tables``). ``Finding Labels`` holds ``|``-separated findings:

    * ``positive=None``: multi-label. ``classes`` are :data:`NIH_FINDINGS`, an item's
      label is a multi-hot ``float32`` tensor ``(14,)`` and ``.targets`` is ``(N, 14)``.
      ``.labels`` is 0 for "No Finding" and 1 for any finding (used to stratify splits).
    * ``positive="Pneumonia"``: binary, classes ``["other", "Pneumonia"]``; with
      ``negative="No Finding"`` only rows labelled exactly "No Finding" are negatives
      (classes ``["No Finding", "Pneumonia"]``) and other rows are dropped.

    Args:
        root: Dataset folder; defaults to ``data_root() / "nih-chestxray14-subset"``.
        transform: Callable applied to the image tensor.
        csv_file: Path of ``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv``, plain,
            gzip or zip (CSV form).
        positive: Finding for a binary task (CSV form), or None for multi-label.
        negative: Finding that defines the negatives of a binary task, or None for
            "everything else".
        views: Keep rows whose ``View Position`` is one of these (CSV form).
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        finding_labels: Findings per item (CSV form: parsed; folder form: the folder).
        missing: CSV rows dropped because their image is not under ``root``.
        finding_map: How the findings map onto
            :data:`~cxr_curriculum.data.CANONICAL_FINDINGS`.
    """

    finding_map = NIH_FINDING_MAP

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
        *,
        csv_file: str | os.PathLike[str] | None = None,
        positive: str | None = None,
        negative: str | None = None,
        views: Collection[str] | None = None,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        self.root = Path(root) if root is not None else data_root() / "nih-chestxray14-subset"
        if not self.root.is_dir():
            raise FileNotFoundError(f"NIH ChestX-ray14 folder {self.root} not found")
        if csv_file is None:
            csv_file = find_table(self.root, NIH_CSV_NAMES)
        self.csv_file = Path(csv_file) if csv_file is not None else None
        self.targets: torch.Tensor | None = None
        self.missing = 0
        if self.csv_file is None:
            if positive is not None or negative is not None or views is not None:
                raise ValueError("positive, negative and views need the CSV form (csv_file=...)")
            self._from_folders()
        else:
            self._from_csv(self.csv_file, positive, negative, views)

    def _from_folders(self) -> None:
        class_dirs = sorted(
            d for d in self.root.iterdir() if d.is_dir() and any(map(is_image_file, d.iterdir()))
        )
        if not class_dirs:
            raise FileNotFoundError(
                f"no class folders with images in {self.root} and no {NIH_CSV_NAME}"
            )
        files, labels = [], []
        for label, d in enumerate(class_dirs):
            for path in sorted(p for p in d.iterdir() if is_image_file(p)):
                files.append(path)
                labels.append(label)
        classes = [d.name for d in class_dirs]
        self._set_records(files, labels, [nih_patient_id(p.name) for p in files], classes)
        self.finding_labels: list[list[str]] = [[classes[i]] for i in self.labels]

    def _from_csv(
        self,
        csv_file: Path,
        positive: str | None,
        negative: str | None,
        views: Collection[str] | None,
    ) -> None:
        if isinstance(views, str):
            raise ValueError(f"views must be a collection of strings, not the string {views!r}")
        if negative is not None and positive is None:
            raise ValueError("negative needs positive (a binary task)")
        need = ("Image Index", "Finding Labels", *(("View Position",) if views else ()))
        rows = read_table(csv_file, need)
        if views is not None:
            rows = [r for r in rows if r["View Position"] in views]
        find = _by_name_or_stem([p for p in self.root.rglob("*") if is_image_file(p)])
        located, self.missing = keep_present(
            ((row, find(row["Image Index"])) for row in rows),
            dataset="NIHChestXray14", what="rows", table=csv_file, folder=self.root,
            level=logging.INFO,  # a subset of the 112,120 images is the usual case
        )  # fmt: skip
        files: list[Path] = []
        findings: list[list[str]] = []
        for row, path in located:
            found = [f.strip() for f in row["Finding Labels"].split("|") if f.strip()]
            binary_drop = positive not in found and found != [negative]
            if positive is not None and negative is not None and binary_drop:
                continue
            files.append(path)
            findings.append(found)
        if positive is None:
            unknown = {f for fs in findings for f in fs} - set(NIH_FINDINGS) - {_NO_FINDING}
            if unknown:
                raise ValueError(f"{csv_file}: unknown findings {sorted(unknown)}")
            classes = list(NIH_FINDINGS)
            labels = [int(fs != [_NO_FINDING]) for fs in findings]
        else:
            classes = [negative or "other", positive]
            labels = [int(positive in fs) for fs in findings]
        by_file = dict(zip(files, findings, strict=True))
        self._set_records(files, labels, [nih_patient_id(p.name) for p in files], classes)
        self.finding_labels = [by_file[p] for p in self.files]
        if positive is None:
            targets = torch.zeros(len(self.files), len(NIH_FINDINGS), dtype=torch.float32)
            for i, fs in enumerate(self.finding_labels):
                for f in fs:
                    if f != _NO_FINDING:
                        targets[i, NIH_FINDINGS.index(f)] = 1.0
            self.targets = targets

    def class_counts(self) -> dict[str, int]:
        """Items per class; in multi-label form, items carrying each finding."""
        if self.targets is None:
            return super().class_counts()
        sums = self.targets.sum(dim=0).tolist()
        return {c: int(n) for c, n in zip(self.classes, sums, strict=True)}

    def _label(self, index: int) -> Any:
        if self.targets is not None:
            return self.targets[index].clone()
        return self.labels[index]
