"""RSNA Pneumonia Detection Challenge (DICOM), from ``stage_2_train_labels.csv``.

Shih, Wu, Zhang et al. "Augmenting the National Institutes of Health Chest Radiograph
Dataset with Expert Annotations of Possible Pneumonia", Radiology: Artificial
Intelligence 1(1), 2019; Kaggle "RSNA Pneumonia Detection Challenge" (2018). 26,684
NIH ChestX-ray14 films re-read by radiologists, one film per ``patientId``, as DICOM
files ``stage_2_train_images/<patientId>.dcm``. The table has one row per box
(``patientId, x, y, width, height, Target``): ``Target`` 1 rows carry a box around a
"Lung Opacity" suggestive of pneumonia, ``Target`` 0 films have a single row with no
box (they may still show other abnormalities: "No Lung Opacity / Not Normal").
"""

from __future__ import annotations

import os
from pathlib import Path

from cxr_curriculum.data._root import data_root
from cxr_curriculum.data.base import CXRDataset, OnError, Transform
from cxr_curriculum.data.findings import RSNA_FINDING_MAP
from cxr_curriculum.data.multilabel import Box
from cxr_curriculum.data.tables import existing, keep_present, read_table, table_or_error
from cxr_curriculum.data.windowing import Window

__all__ = ["RSNA_CLASSES", "RSNAPneumonia", "rsna_boxes"]


#: Class names: ``Target`` 0 and 1.
RSNA_CLASSES: tuple[str, str] = ("No Lung Opacity", "Lung Opacity")
_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")


def _box(row: dict[str, str], where: str) -> Box:
    try:
        x, y, w, h = (float(row[k]) for k in ("x", "y", "width", "height"))
    except ValueError:
        raise ValueError(f"{where}: Target 1 row without a numeric box {row}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: box of non-positive size {row}")
    return Box(RSNA_CLASSES[1], x, y, x + w, y + h)


def rsna_boxes(
    rows: list[dict[str, str]], source: str = "table"
) -> dict[str, tuple[int, list[Box]]]:
    """Group the one-row-per-box table by film: ``patientId -> (Target, boxes)``.

    Args:
        rows: Rows of ``stage_2_train_labels.csv``.
        source: Name used in errors (the table file).

    Returns:
        Films in order of first appearance; ``Target`` 0 films have no boxes.

    Raises:
        ValueError: ``Target`` is not 0/1, one film has rows with both targets, a
            ``Target`` 1 row has no box, or a ``Target`` 0 row has one.
    """
    films: dict[str, tuple[int, list[Box]]] = {}
    for row in rows:
        pid, target = row["patientId"].strip(), row["Target"].strip()
        where = f"{source}, patientId {pid}"
        if target not in ("0", "1"):
            raise ValueError(f"{where}: Target must be 0 or 1, got {target!r}")
        label = int(target)
        if pid in films and films[pid][0] != label:
            raise ValueError(f"{where}: rows with both Target 0 and Target 1")
        boxes = films.setdefault(pid, (label, []))[1]
        if label == 1:
            boxes.append(_box(row, where))
        elif any(row[k].strip() for k in ("x", "y", "width", "height")):
            raise ValueError(f"{where}: a Target 0 row with a box")
    return films


class RSNAPneumonia(CXRDataset):
    """RSNA Pneumonia films: "Lung Opacity" (1) or not (0), with their boxes.

    Rows are grouped by ``patientId`` (one film each, so it is also the patient id);
    films whose image is absent are left out and counted in ``.missing``. Items are
    :class:`~cxr_curriculum.data.LabeledImage` with the ``Target`` as label; boxes are
    in ``.boxes`` (pixels of the 1024 x 1024 original, ``x_max = x + width``).
    Reading the DICOM files needs the ``dicom`` extra.

    Args:
        root: Dataset folder; defaults to ``data_root() / "rsna-pneumonia"``.
        transform: Callable applied to the image tensor.
        csv_file: The label table, if not ``root/stage_2_train_labels.csv[.gz|.zip]``.
        image_dir: Folder of the films under ``root``.
        suffix: File name suffix of the films (``".dcm"``; e.g. ``".png"`` for a
            converted copy).
        on_error: Bad-file policy, ``"raise"`` or ``"skip"``.
        check_files: Decode every file at construction.
        window: DICOM windowing policy (see :func:`~cxr_curriculum.data.read_image`).

    Attributes:
        boxes: Per item, a list of :class:`~cxr_curriculum.data.Box` (empty for 0).
        missing: Films of the table whose image is absent.
    """

    finding_map = RSNA_FINDING_MAP

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
        *,
        csv_file: str | os.PathLike[str] | None = None,
        image_dir: str = "stage_2_train_images",
        suffix: str = ".dcm",
        on_error: OnError = "raise",
        check_files: bool = False,
        window: Window = "auto",
    ) -> None:
        super().__init__(
            transform=transform, on_error=on_error, check_files=check_files, window=window
        )
        self.root = Path(root) if root is not None else data_root() / "rsna-pneumonia"
        self.csv_file = table_or_error(self.root, "stage_2_train_labels.csv", "RSNA", csv_file)
        films = rsna_boxes(read_table(self.csv_file, _COLUMNS), str(self.csv_file))
        folder = self.root / image_dir
        found, self.missing = keep_present(
            ((pid, existing(folder / f"{pid}{suffix}")) for pid in films),
            dataset="RSNAPneumonia", what="films", table=self.csv_file, folder=folder,
            hint=f" (looked for '<patientId>{suffix}')",
        )  # fmt: skip
        pids = [pid for pid, _ in found]
        self._set_records([p for _, p in found], [films[p][0] for p in pids], pids, RSNA_CLASSES)
        film_of = {path: pid for pid, path in found}
        self.boxes: list[list[Box]] = [list(films[film_of[f]][1]) for f in self.files]
