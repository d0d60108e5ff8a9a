"""ieee8023 COVID-19 image data collection, with optional V7 Labs lung masks.

Cohen, Morrison, Dao et al. "COVID-19 Image Data Collection: Prospective
Predictions Are the Future", arXiv:2006.11988 (github.com/ieee8023/covid-chestxray-dataset).
Per-image licences are in the ``license`` column of ``metadata.csv``. The lung masks
are V7 Labs' (CC BY 4.0): 255 lung, 127 ignore, 0 background, stored as PNG even when
the file name ends in ``.jpg``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import CXRDataset, JointTransform, OnError, Transform
from cxr_curriculum.data.windowing import Window

__all__ = ["COVID_FRONTAL_VIEWS", "COVID_VS_OTHER", "V7_IGNORE_VALUE", "CovidChestXray"]

#: Raw value that V7 Labs masks use for "ignore".
V7_IGNORE_VALUE = 127

#: A ``label_map`` for Covid-19 (1) vs other findings (0); rows marked ``todo``
#: (not yet labelled) or ``Unknown`` are dropped.
COVID_VS_OTHER: Callable[[str], str | None] = lambda finding: (  # noqa: E731
    None
    if finding.strip().lower() in ("todo", "unknown", "")
    else "COVID-19"
    if finding.strip().upper().startswith("COVID-19")
    else "other"
)

#: The frontal projections named in the collection's ``view`` column (posteroanterior,
#: anteroposterior, supine and erect AP); lateral (``L``) and unknown views are not frontal.
COVID_FRONTAL_VIEWS: tuple[str, ...] = ("PA", "AP", "AP Supine", "AP semi erect", "AP Erect")

LabelMap = Mapping[str, str] | Callable[[str], "str | None"]


class CovidChestXray(CXRDataset):
    """Cohen et al.'s ``metadata.csv`` + ``images/`` collection, filtered by row.

    Labels come from the ``finding`` column. By default each distinct finding is its
    own class (sorted names); ``label_map`` maps findings to class names (a mapping,
    or a callable returning None to drop a row), e.g. :data:`COVID_VS_OTHER`. Class
    indices follow the order in which names first appear in a mapping's values, or
    sorted names for a callable (so ``COVID_VS_OTHER`` gives ``["COVID-19", "other"]``).

    Args:
        root: Dataset folder; defaults to ``data_root() / "covid-chestxray"``.
        views: Keep rows whose ``view`` is one of these (e.g. ``("PA", "AP")``); None keeps all.
        modalities: Keep rows whose ``modality`` is one of these; None keeps all.
        findings: Keep rows whose ``finding`` is one of these; None keeps all.
        label_map: Finding -> class name (see above); None: one class per finding.
        with_masks: Keep only images with a lung mask and return
            :class:`~cxr_curriculum.data.MaskedImage` items.
        transform: Callable applied to the image tensor.
        joint_transform: Callable ``(image, mask) -> (image, mask)`` for masked items,
            applied before ``transform``.
        mask_dir: Mask folder; defaults to ``root / "v7-lung-masks"``.
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file (and mask) at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        findings: Raw ``finding`` string per item.
        views: Raw ``view`` string per item.
        rows: The kept ``metadata.csv`` rows as dicts.
        lung_mask_files: The V7 lung mask of each item, or None where it has none
            (also without ``with_masks``, whose items then stay labelled).
    """

    mask_ignore_value = V7_IGNORE_VALUE

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        views: Collection[str] | None = None,
        modalities: Collection[str] | None = ("X-ray",),
        findings: Collection[str] | None = None,
        label_map: LabelMap | None = None,
        with_masks: bool = False,
        transform: Transform | None = None,
        joint_transform: JointTransform | None = None,
        *,
        mask_dir: str | os.PathLike[str] | None = None,
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform,
            joint_transform=joint_transform,
            on_error=on_error,
            check_files=check_files,
            window=window,
        )
        for name, value in (("views", views), ("modalities", modalities), ("findings", findings)):
            if isinstance(value, str):
                raise ValueError(
                    f"{name} must be a collection of strings, not the string {value!r}"
                )
        if label_map is not None and not (isinstance(label_map, Mapping) or callable(label_map)):
            raise ValueError(
                "label_map must be a mapping finding -> class name, a callable, or None"
            )
        self.root = Path(root) if root is not None else data_root() / "covid-chestxray"
        self.mask_dir = Path(mask_dir) if mask_dir is not None else self.root / "v7-lung-masks"
        csv_path = self.root / "metadata.csv"
        if not csv_path.is_file():
            raise FileNotFoundError(f"{csv_path} not found (expected Cohen et al.'s metadata.csv)")
        with csv_path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        need = {"patientid", "finding", "view", "modality", "filename"}
        if rows and not need <= set(rows[0]):
            raise ValueError(f"{csv_path} lacks columns {sorted(need - set(rows[0]))}")

        def keep(row: dict[str, str]) -> bool:
            return (
                (views is None or row["view"] in views)
                and (modalities is None or row["modality"] in modalities)
                and (findings is None or row["finding"] in findings)
            )

        rows = [r for r in rows if keep(r)]
        names: list[str | None]
        if label_map is None:
            names = [r["finding"] for r in rows]
        elif isinstance(label_map, Mapping):
            names = [label_map.get(r["finding"]) for r in rows]
        else:
            names = [label_map(r["finding"]) for r in rows]
        kept = [(r, n) for r, n in zip(rows, names, strict=True) if n is not None]
        if with_masks:
            if not self.mask_dir.is_dir():
                raise FileNotFoundError(f"mask folder {self.mask_dir} not found")
            have = {p.name for p in self.mask_dir.iterdir()}
            kept = [(r, n) for r, n in kept if r["filename"] in have]
        if isinstance(label_map, Mapping):
            classes = list(dict.fromkeys(label_map.values()))
        else:
            classes = sorted({n for _, n in kept if n is not None})
        index = {c: i for i, c in enumerate(classes)}
        self.with_masks = bool(with_masks)
        files = [self._image_path(r) for r, _ in kept]
        masks = [self.mask_dir / r["filename"] for r, _ in kept] if with_masks else None
        self._set_records(
            files,
            [index[str(n)] for _, n in kept],
            [str(r["patientid"]) for r, _ in kept],
            classes,
            masks,
        )
        by_file = {self._image_path(r): r for r, _ in kept}
        self.rows: list[dict[str, str]] = [by_file[p] for p in self.files]
        self.findings: list[str] = [r["finding"] for r in self.rows]
        self.views: list[str] = [r["view"] for r in self.rows]
        have_mask = {p.name for p in self.mask_dir.iterdir()} if self.mask_dir.is_dir() else set()
        self.lung_mask_files: list[Path | None] = [
            self.mask_dir / r["filename"] if r["filename"] in have_mask else None for r in self.rows
        ]

    def _image_path(self, row: Mapping[str, str]) -> Path:
        folder = row.get("folder") or "images"
        return self.root / folder / row["filename"]
