"""Every ``[[tasks]] kind`` builds its task from a TOML table and passes the study's check.

Real rows of the real label tables (``label-tables/``). Where a dataset's images are not
in the shared data (CheXpert, MIMIC-CXR, VinDr-CXR, RSNA, SIIM-ACR, PadChest), real
stand-in X-rays are placed at the paths the rows name (``_standins.place``): Kermany
JPEGs, NIH's DICOM film, the SIIM film, an NIH PNG written as 16-bit PNG. MIMIC-CXR's
tables are not in the shared data either: its test writes a small table in the
published format. Shenzhen's shared films are all TB-positive: a two-class Shenzhen task
gets real Shenzhen films as stand-ins for the normal class (the one-class task is refused).
The covid kind is tested in ``test_study_covid.py``, ``table`` in ``test_docs_byoa.py``.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from _standins import place
from _studies import one_task_study
from cxr_curriculum.config import ConfigError
from cxr_curriculum.data import CHEXPERT_OBSERVATIONS
from cxr_curriculum.study import BinaryTask, KermanyTask, MultiLabelTask, Task

pytestmark = pytest.mark.realdata

TABLES = "label-tables"
NIH_DCM = "dicom-cxr/nih-dicom/1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"


def _checked(tmp_path: Path, task_lines: str, cls: type[Task]) -> tuple[Task, str]:
    study = one_task_study(tmp_path, task_lines)
    task = study.tasks[0]
    assert isinstance(task, cls)
    lines = study.check()
    return task, "\n".join(lines)


def _gz_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        return fh.readlines()


def _kermany_jpegs(data_root: Path) -> list[Path]:
    return sorted((data_root / "kermany-pneumonia" / "test" / "NORMAL").glob("*.jpeg"))


def test_kermany_and_binary_nih(data_root: Path, tmp_path: Path) -> None:
    task, text = _checked(tmp_path, 'kind = "kermany"\nstride = 20', KermanyTask)
    assert "test classes NORMAL 12, PNEUMONIA 20" in text
    nih = 'kind = "nih"\npositive = "Pneumonia"\nnegative = "No Finding"\nsplit_seed = 1'
    task, text = _checked(tmp_path, nih, BinaryTask)
    assert task.config()["source"]["split"] == {"test_share": 0.3, "seed": 1}
    assert "test classes No Finding" in text and task.metric == "auroc"


def test_chexpert(data_root: Path, tmp_path: Path) -> None:
    lines = _gz_lines(data_root / TABLES / "chexpert_train.csv.gz")
    lines = [lines[0], *lines[1::2000]]  # 112 real rows spread over the table
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    (root / "train.csv").write_text("".join(lines))
    jpegs = _kermany_jpegs(data_root)
    for k, row in enumerate(csv.DictReader(lines)):
        place(jpegs[k % len(jpegs)], root.joinpath(*Path(row["Path"]).parts[1:]))
    base = f'kind = "chexpert"\nroot = "{root}"\nmin_positives = 3'
    with pytest.raises(ValueError, match=r"no label table .*valid\.csv"):  # no official split
        _checked(tmp_path, base, MultiLabelTask)
    task, text = _checked(
        tmp_path, base + '\nsplit = "patients"\nuncertain = "positive"', MultiLabelTask
    )
    assert task.config()["source"]["uncertain"] == "positive" and "findings scored" in text
    assert set(task.finding_names) <= set(next(csv.reader(lines[:1])))


def _cell(column: str, k: int) -> str:
    """No Finding / Pleural Effusion alternate; Edema uncertain; others not mentioned."""
    if column == "No Finding":
        return "1.0" if k % 2 else "0.0"
    if column == "Pleural Effusion":
        return "0.0" if k % 2 else "1.0"
    return "-1.0" if column == "Edema" else ""


def test_mimic_official_split(data_root: Path, tmp_path: Path) -> None:
    labels = list(CHEXPERT_OBSERVATIONS)  # the published label table's 14 columns
    keys = ["dicom_id", "subject_id", "study_id"]
    images = [(f"d{k:02d}", f"1{k:07d}", f"5{k:07d}", "PA", "test" if k % 3 == 0 else "train")
              for k in range(18)]  # fmt: skip

    def write(name: str, header: list[str], rows: list[list[Any]]) -> None:
        with gzip.open(tmp_path / f"mimic-cxr-2.0.0-{name}.csv.gz", "wt", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])

    write("metadata", [*keys, "ViewPosition"], [[d, s, t, v] for d, s, t, v, _ in images])
    write("split", ["dicom_id", "study_id", "subject_id", "split"],
          [[d, t, s, sp] for d, s, t, _, sp in images])  # fmt: skip
    write("chexpert", ["subject_id", "study_id", *labels],
          [[s, t, *(_cell(c, k) for c in labels)]
           for k, (_, s, t, _, _) in enumerate(images)])  # fmt: skip
    jpegs = _kermany_jpegs(data_root)
    for k, (d, s, t, _, _) in enumerate(images):
        place(jpegs[k], tmp_path / "files" / f"p{s[:2]}" / f"p{s}" / f"s{t}" / f"{d}.jpg")
    task, text = _checked(tmp_path, f'kind = "mimic"\nroot = "{tmp_path}"\nmin_positives = 2',
                          MultiLabelTask)  # fmt: skip
    assert "12 training and 6 test images" in text
    assert task.finding_names == ["No Finding", "Pleural Effusion"]  # Edema: all unknown


def test_vindr_rsna_siim_with_standin_films(data_root: Path, tmp_path: Path) -> None:
    lines = _gz_lines(data_root / TABLES / "vinbigdata-train.csv.gz")
    rows = list(csv.DictReader(lines))
    chosen = set(list(dict.fromkeys(r["image_id"] for r in rows))[::150])
    vindr = tmp_path / "vindr"
    vindr.mkdir()
    picked = [ln for ln, r in zip(lines[1:], rows, strict=True) if r["image_id"] in chosen]
    (vindr / "train.csv").write_text("".join([lines[0], *picked]))
    for image_id in chosen:
        place(data_root / NIH_DCM, vindr / "train" / f"{image_id}.dicom")
    vindr_lines = f'kind = "vindr"\nroot = "{vindr}"\nmin_votes = 1'
    task, text = _checked(tmp_path, vindr_lines, MultiLabelTask)
    assert task.config()["source"]["min_votes"] == 1 and "findings scored" in text
    assert sum(len(d) for d in task.datasets) == len(chosen)  # type: ignore[arg-type]

    with zipfile.ZipFile(data_root / TABLES / "kaggle_stage_2_train_labels.csv.zip") as z:
        rsna_lines = io.TextIOWrapper(z.open("stage_2_train_labels.csv"), newline="").readlines()
    films = list(dict.fromkeys(r["patientId"] for r in csv.DictReader(rsna_lines)))[:60]
    rsna = tmp_path / "rsna"
    rsna.mkdir()
    keep = [rsna_lines[0]] + [ln for ln in rsna_lines[1:] if ln.split(",")[0] in set(films)]
    (rsna / "stage_2_train_labels.csv").write_text("".join(keep))
    for pid in films:
        place(data_root / NIH_DCM, rsna / "stage_2_train_images" / f"{pid}.dcm")
    task, text = _checked(tmp_path, f'kind = "rsna"\nroot = "{rsna}"', BinaryTask)
    assert "test classes No Lung Opacity" in text and "Lung Opacity" in text

    table = data_root / TABLES / "siim-pneumothorax-train-rle.csv.gz"
    with gzip.open(table, "rt", newline="") as fh:
        ids = list(dict.fromkeys(r[0] for r in list(csv.reader(fh))[1:]))[:40]
    film = next((data_root / "dicom-cxr" / "siim-acr-pneumothorax").rglob("*.dcm"))
    siim = tmp_path / "siim"
    for k, image_id in enumerate(ids):
        place(film, siim / "dicom-images-train" / f"study{k}" / f"series{k}" / f"{image_id}.dcm")
    task, text = _checked(
        tmp_path, f'kind = "siim"\nroot = "{siim}"\ncsv_file = "{table}"', BinaryTask
    )
    assert "test classes No Pneumothorax" in text


def test_padchest(data_root: Path, tmp_path: Path) -> None:
    name = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.head500.csv.gz"
    png = data_root / "nih-chestxray14-subset" / "No_findings" / "00001280_004.png"
    sixteen = tmp_path / "standin16.png"
    Image.fromarray(np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 257).save(sixteen)
    with gzip.open(data_root / TABLES / name, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            place(sixteen, tmp_path / "padchest" / row["ImageDir"] / row["ImageID"])
    lines = f'kind = "padchest"\nroot = "{tmp_path / "padchest"}"\n'
    lines += f'csv_file = "{data_root / TABLES / name}"'
    task, text = _checked(tmp_path, lines + '\nprojections = ["PA", "AP"]', MultiLabelTask)
    assert task.config()["source"]["projections"] == ["PA", "AP"] and "findings scored" in text


def test_shenzhen_one_class_is_refused_and_standins_make_two(
    data_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        ValueError, match=r"task 'shenzhen': its training set has only class 'tuberculosis'"
    ):
        _checked(tmp_path, 'kind = "shenzhen"', BinaryTask)
    # Stand-ins for the normal class (not in the shared data): real Shenzhen films and
    # their masks, renamed CHNCXR_09xx_0 (published label 0 = normal).
    src = data_root / "shenzhen-montgomery-tb"
    root = tmp_path / "shenzhen"
    films = sorted((src / "images").glob("CHNCXR_*.png"))
    for k, film in enumerate(films):
        place(film, root / "images" / film.name)
        place(src / "masks" / film.name, root / "masks" / film.name)
        if k < 30:
            place(film, root / "images" / f"CHNCXR_{900 + k:04d}_0.png")
            place(src / "masks" / film.name, root / "masks" / f"CHNCXR_{900 + k:04d}_0.png")
    task, text = _checked(tmp_path, f'kind = "shenzhen"\nroot = "{root}"', BinaryTask)
    assert "test classes normal" in text and "test images with own lung masks" in text
    assert task.mask_source is not None and "Shenzhen" in task.mask_source


class ToyTask(Task):
    """A user's own task: the bundled sample with every ``stride``-th image."""

    def __init__(self, stride: int = 1, name: str = "toy") -> None:
        self.stride, self.name = stride, name

    def load(self) -> tuple[Any, Any]:
        from torch.utils.data import Subset

        from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root

        root = bundled_sample_root()
        train, test = KermanyPneumonia(root, "train"), KermanyPneumonia(root, "test")
        return Subset(train, range(0, 32, self.stride)), test

    def config(self) -> dict[str, Any]:
        return {**super().config(), "stride": self.stride}


def test_custom_python_task(tmp_path: Path) -> None:
    kind = f'kind = "python:{__name__}:ToyTask"'
    task, text = _checked(tmp_path, f"{kind}\nstride = 2", ToyTask)
    assert task.stride == 2 and "16 training and 16 test images" in text  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.strid: unknown key; did you mean 'stride'"):
        one_task_study(tmp_path, f"{kind}\nstrid = 2")
    with pytest.raises(ConfigError, match=r"is not a subclass of cxr_curriculum\.study\.Task"):
        one_task_study(tmp_path, f'kind = "python:{__name__}:test_custom_python_task"')
