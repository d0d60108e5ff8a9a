"""Multi-label loaders on the real label tables: NIH, CheXpert, MIMIC-CXR, PadChest.

NIH ChestX-ray14 is tested on its 1,000 real images with their real rows of
``Data_Entry_2017_v2020.csv.gz``. CheXpert and PadChest images cannot be redistributed:
their tests use the real rows of the real tables (``label-tables/``) with **real
stand-in X-rays** from the shared data (Kermany JPEGs; an NIH PNG written as 16-bit
PNG for PadChest) placed at the paths the rows name. MIMIC-CXR's real tables are not
available here: its test writes a small table in the published format. Expected
values are recomputed independently with the ``csv`` module, never with the loaders.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from _standins import place
from cxr_curriculum.data import (
    CHEXPERT_OBSERVATIONS,
    MIMICCXR,
    PADCHEST_FINDINGS,
    CheXpert,
    LabeledImage,
    NIHChestXray14,
    PadChest,
    label_fraction_subset,
    observation_targets,
    parse_label_list,
    patient_split,
    read_image,
    read_table,
)
from cxr_curriculum.evaluation.fractions import train_subset

TABLES = "label-tables"
NIH_GZ = "Data_Entry_2017_v2020.csv.gz"
PADCHEST_GZ = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.head500.csv.gz"
CODE = {"1.0": 1.0, "0.0": 0.0, "": math.nan}


def table_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        return fh.read().splitlines(keepends=True)


# --------------------------------------------------------------------------- NIH


@pytest.mark.realdata
def test_nih_gzip_table_on_the_real_1000_images(data_root: Path) -> None:
    root = data_root / "nih-chestxray14-subset"
    ds = NIHChestXray14(root, csv_file=data_root / TABLES / NIH_GZ)
    # Independent count: the csv module on the same gzip table, restricted to the files.
    on_disk = {p.name: p.parent.name for p in root.rglob("*.png")}
    with gzip.open(data_root / TABLES / NIH_GZ, "rt", newline="") as fh:
        rows = {r["Image Index"]: r for r in csv.DictReader(fh) if r["Image Index"] in on_disk}
    found = {n: r["Finding Labels"].split("|") for n, r in rows.items()}
    counts = Counter(f for fs in found.values() for f in fs)
    assert len(ds) == len(rows) == 1000 and ds.missing == 112120 - 1000
    assert ds.class_counts() == {c: counts[c] for c in ds.classes}
    assert ds.targets.shape == (1000, 14) and ds.targets.dtype == torch.float32
    assert int((ds.targets.sum(dim=1) == 0).sum()) == counts["No Finding"]
    assert int((ds.targets.sum(dim=1) > 1).sum()) == sum(len(fs) > 1 for fs in found.values())
    # The figures stated in the data README.
    stated = {"Pneumonia": 500, "Infiltration": 187, "Atelectasis": 113, "Edema": 96,
              "Effusion": 90, "Consolidation": 33, "Pleural_Thickening": 27, "Nodule": 20,
              "Mass": 19, "Cardiomegaly": 16, "Pneumothorax": 12, "Emphysema": 10,
              "Fibrosis": 8, "Hernia": 3}  # fmt: skip
    assert ds.class_counts() == {c: stated[c] for c in ds.classes}
    assert counts["No Finding"] == 500 and int((ds.targets.sum(dim=1) > 1).sum()) == 384
    for i, path in enumerate(ds.files):
        row = rows[path.name]
        assert int(ds.patient_ids[i]) == int(row["Patient ID"])
        assert ds.targets[i].tolist() == [float(c in found[path.name]) for c in ds.classes]
        folder_says_pneumonia = on_disk[path.name] == "Pneumonia"
        assert bool(ds.targets[i, ds.classes.index("Pneumonia")]) == folder_says_pneumonia
    assert ds.labels == [int(fs != ["No Finding"]) for fs in (found[p.name] for p in ds.files)]


@pytest.mark.realdata
def test_nih_finds_the_gzip_table_in_root(data_root: Path, tmp_path: Path) -> None:
    pngs = sorted((data_root / "nih-chestxray14-subset" / "Pneumonia").glob("*.png"))[:12]
    for p in pngs:
        place(p, tmp_path / "images_001" / "images" / p.name)
    place(data_root / TABLES / NIH_GZ, tmp_path / NIH_GZ)
    ds = NIHChestXray14(tmp_path)
    assert ds.csv_file == tmp_path / NIH_GZ and len(ds) == 12
    item = ds[0]
    assert isinstance(item, LabeledImage) and item.label.shape == (14,)
    assert item.label[ds.classes.index("Pneumonia")] == 1.0


# ---------------------------------------------------------------------- CheXpert


@pytest.fixture(scope="module")
def chexpert_lines(data_root: Path) -> list[str]:
    """Header + 161 real rows spread over the real CheXpert table (every 1,390th)."""
    lines = table_lines(data_root / TABLES / "chexpert_train.csv.gz")
    return [lines[0], *lines[1::1390]]


@pytest.fixture()
def chexpert_root(chexpert_lines: list[str], data_root: Path, tmp_path: Path) -> Path:
    """``CheXpert-v1.0-small/`` with its real rows and Kermany JPEGs at their paths."""
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    with gzip.open(root / "train.csv.gz", "wt", encoding="utf-8", newline="") as fh:
        fh.write("".join(chexpert_lines))
    jpegs = sorted((data_root / "kermany-pneumonia" / "test" / "NORMAL").glob("*.jpeg"))
    for k, row in enumerate(csv.DictReader(chexpert_lines)):
        place(jpegs[k % len(jpegs)], root.joinpath(*Path(row["Path"]).parts[1:]))
    return root


def _expected(rows: list[dict[str, str]], uncertain: float) -> torch.Tensor:
    code = {**CODE, "-1.0": uncertain}
    return torch.tensor([[code[r[c]] for c in CHEXPERT_OBSERVATIONS] for r in rows])


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("uncertain", "value"), [("ignore", math.nan), ("positive", 1.0), ("negative", 0.0)]
)
def test_chexpert_real_rows_with_standin_images(
    chexpert_root: Path, chexpert_lines: list[str], uncertain: str, value: float
) -> None:
    ds = CheXpert(chexpert_root, split="train", uncertain=uncertain)  # type: ignore[arg-type]
    rows = list(csv.DictReader(chexpert_lines))
    header = chexpert_lines[0].strip().split(",")
    assert ds.classes == header[5:] == list(CHEXPERT_OBSERVATIONS)
    assert len(ds) == len(rows) == 161 and ds.missing == 0
    torch.testing.assert_close(ds.targets, _expected(rows, value), equal_nan=True)
    assert ds.patient_ids == [re.search(r"patient\d+", r["Path"]).group(0) for r in rows]  # type: ignore[union-attr]
    assert ds.views == [r["Frontal/Lateral"] for r in rows]
    item = ds[3]
    assert isinstance(item, LabeledImage) and item.image.shape == (1, 224, 224)
    torch.testing.assert_close(item.label, ds.targets[3], equal_nan=True)
    assert item.patient_id == ds.patient_ids[3]
    counts = ds.finding_counts()["Pleural Effusion"]
    assert sum(counts.values()) == len(rows)
    assert counts["positive"] == sum(r["Pleural Effusion"] == "1.0" for r in rows) + (
        sum(r["Pleural Effusion"] == "-1.0" for r in rows) if uncertain == "positive" else 0
    )


@pytest.mark.realdata
def test_chexpert_layouts_frontal_only_and_missing(chexpert_root: Path) -> None:
    # root above CheXpert-v1.0-small: each Path resolves with its first folder.
    table = chexpert_root / "train.csv.gz"
    full = CheXpert(chexpert_root.parent, csv_file=table)
    assert full.files == CheXpert(chexpert_root).files
    frontal = CheXpert(chexpert_root, frontal_only=True)
    assert len(frontal) == full.views.count("Frontal") < len(full)
    assert set(frontal.views) == {"Frontal"}
    # a bad label is named by its row in the table, not among the rows kept (frontal only)
    with gzip.open(table, "rt", newline="") as fh:
        header, *lines = list(csv.reader(fh))
    view, edema = header.index("Frontal/Lateral"), header.index("Edema")
    last = max(k for k, line in enumerate(lines) if line[view] == "Frontal")
    assert any(line[view] != "Frontal" for line in lines[:last])  # the two counts differ
    lines[last][edema] = "2"
    with (chexpert_root / "bad.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *lines])
    with pytest.raises(ValueError, match=rf"bad\.csv, row {last + 1}, column 'Edema': label '2'"):
        CheXpert(chexpert_root, frontal_only=True, csv_file=chexpert_root / "bad.csv")
    gone = full.files[:3]
    for p in gone:
        p.unlink()
    fewer = CheXpert(chexpert_root)
    assert fewer.missing == 3 and len(fewer) == len(full) - 3 and gone[0] not in fewer.files
    with pytest.raises(ValueError, match="uncertain must be"):
        CheXpert(chexpert_root, uncertain="zeros")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match=r"valid\.csv"):
        CheXpert(chexpert_root, split="valid")


@pytest.mark.slow
@pytest.mark.realdata
def test_chexpert_full_real_table_coding(data_root: Path) -> None:
    """All 223,414 rows: each policy's counts equal an independent csv count."""
    path = data_root / TABLES / "chexpert_train.csv.gz"
    rows = read_table(path)
    with gzip.open(path, "rt", newline="") as fh:
        header, *lines = list(csv.reader(fh))
    cells = {
        name: Counter(column) for name, column in zip(header, zip(*lines, strict=True), strict=True)
    }
    for uncertain in ("ignore", "negative"):
        t = observation_targets(rows, CHEXPERT_OBSERVATIONS, uncertain)
        assert t.shape == (223414, 14)
        for j, c in enumerate(CHEXPERT_OBSERVATIONS):
            n_unc = cells[c]["-1.0"]
            assert int((t[:, j] == 1).sum()) == cells[c]["1.0"]
            assert int((t[:, j] == 0).sum()) == cells[c]["0.0"] + n_unc * (uncertain != "ignore")
            assert int(t[:, j].isnan().sum()) == cells[c][""] + n_unc * (uncertain == "ignore")
    with pytest.raises(ValueError, match=r"column 'Edema': label '2' is not one of"):
        observation_targets([{"Edema": "2"}], ["Edema"])


# -------------------------------------------------------------------- MIMIC-CXR

MIMIC_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity",
                "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax",
                "Support Devices")  # fmt: skip
# (dicom_id, subject, study, ViewPosition, split); the first is the example of the docs.
MIMIC_IMAGES = [
    ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "10000032", "50414267", "PA", "train"),
    ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "10000032", "50414267", "LATERAL", "train"),
    ("2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab", "10000032", "53189527", "AP", "train"),
    ("68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714", "10000764", "57375967", "PA", "validate"),
    ("e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c", "10000898", "50771383", "PA", "train"),
    ("b5f8f5ac-3d26f6fa-1a8fd4a4-0bdb2c5a-f2c7d1e0", "10000935", "51178377", "AP", "train"),
]
# Study rows of the chexpert table; 50771383 has none (an unlabelled study).
MIMIC_STUDIES = {
    ("10000032", "50414267"): {"No Finding": "1.0", "Support Devices": "0.0"},
    ("10000032", "53189527"): {"Edema": "-1.0", "Pleural Effusion": "1.0", "Atelectasis": "0.0"},
    ("10000764", "57375967"): {"Pneumonia": "-1.0", "Consolidation": "1.0"},
    ("10000935", "51178377"): {"Lung Opacity": "1.0", "Pneumothorax": "0.0"},
}


def _write_gz(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture()
def mimic_root(tmp_path: Path, data_root: Path) -> Path:
    """A MIMIC-CXR-JPG folder in the published layout (tables written here; real JPEGs)."""
    keys = ["dicom_id", "subject_id", "study_id"]
    _write_gz(tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz", [*keys, "ViewPosition", "Rows"],
              [[d, s, t, v, "3056"] for d, s, t, v, _ in MIMIC_IMAGES])  # fmt: skip
    _write_gz(tmp_path / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id",
              "split"], [[d, t, s, sp] for d, s, t, _, sp in MIMIC_IMAGES])  # fmt: skip
    for labeler in ("chexpert", "negbio"):
        _write_gz(tmp_path / f"mimic-cxr-2.0.0-{labeler}.csv.gz",
                  ["subject_id", "study_id", *MIMIC_LABELS],
                  [[s, t, *(v.get(c, "") for c in MIMIC_LABELS)]
                   for (s, t), v in MIMIC_STUDIES.items()])  # fmt: skip
    jpegs = sorted((data_root / "kermany-pneumonia" / "test" / "NORMAL").glob("*.jpeg"))
    for k, (d, s, t, _, _) in enumerate(MIMIC_IMAGES[:-1]):  # the last image is absent
        place(jpegs[k], tmp_path / "files" / f"p{s[:2]}" / f"p{s}" / f"s{t}" / f"{d}.jpg")
    return tmp_path


@pytest.mark.realdata
def test_mimic_layout_labels_per_study(mimic_root: Path) -> None:
    ds = MIMICCXR(mimic_root, split="train", uncertain="ignore")
    assert ds.classes == list(MIMIC_LABELS)
    # train: 5 images; 50771383 unlabelled, b5f8... absent on disk.
    assert len(ds) == 3 and ds.unlabelled == 1 and ds.missing == 1
    assert ds.patient_ids == ["10000032", "10000032", "10000032"]
    assert ds.study_ids == ["50414267", "50414267", "53189527"]
    assert ds.files[0] == (mimic_root / "files/p10/p10000032/s50414267/"
                           "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg")  # fmt: skip
    col = {c: j for j, c in enumerate(ds.classes)}
    assert ds.targets[0, col["No Finding"]] == 1 and ds.targets[1, col["Support Devices"]] == 0
    torch.testing.assert_close(ds.targets[0], ds.targets[1], equal_nan=True)  # same study
    assert ds.targets[2, col["Edema"]].isnan() and ds.targets[2, col["Pleural Effusion"]] == 1
    assert int(ds.targets[2].isnan().sum()) == 14 - 2 and ds.labels == [0, 0, 1]
    assert MIMICCXR(mimic_root, uncertain="positive").targets[2, col["Edema"]] == 1
    frontal = MIMICCXR(mimic_root, frontal_only=True)
    assert frontal.views == ["PA", "AP"]
    val = MIMICCXR(mimic_root, split="validate", labeler="negbio", uncertain="negative")
    assert len(val) == 1 and val.targets[0, col["Pneumonia"]] == 0
    assert len(MIMICCXR(mimic_root, split=None)) == 4
    with pytest.raises(ValueError, match="split must be one of"):
        MIMICCXR(mimic_root, split="val")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- PadChest


@pytest.fixture(scope="module")
def padchest_root(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real first 500 rows of PadChest's table; one real NIH film as a 16-bit PNG."""
    root = tmp_path_factory.mktemp("padchest")
    place(data_root / TABLES / PADCHEST_GZ, root / PADCHEST_GZ)
    png = data_root / "nih-chestxray14-subset" / "No_findings" / "00001280_004.png"
    eight = np.asarray(Image.open(png).convert("L"), dtype=np.uint16)
    sixteen = root / "standin16.png"
    Image.fromarray(eight * 257).save(sixteen)  # 16-bit PNG, same picture
    with gzip.open(root / PADCHEST_GZ, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            place(sixteen, root / row["ImageDir"] / row["ImageID"])
    return root


@pytest.mark.realdata
def test_padchest_real_rows(padchest_root: Path, data_root: Path) -> None:
    table = padchest_root / PADCHEST_GZ
    ds = PadChest(padchest_root, csv_file=table)
    with gzip.open(table, "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # Independent parse: the quoted names in each cell, by regular expression.
    names = {r["ImageID"]: [n.strip() for n in re.findall(r"'([^']*)'", r["Labels"])]
             for r in rows}  # fmt: skip
    kept = [r for r in rows if "exclude" not in names[r["ImageID"]]]
    assert len(rows) == 477 and ds.excluded == 1 and len(ds) == len(kept) == 476
    assert ds.classes == list(PADCHEST_FINDINGS) and ds.missing == ds.unlabelled == 0
    counts = Counter(n for r in kept for n in set(names[r["ImageID"]]))
    assert ds.class_counts() == {c: counts[c] for c in ds.classes}
    assert ds.class_counts()["pleural effusion"] == 32 and ds.class_counts()["normal"] == 144
    assert ds.patient_ids == [r["PatientID"] for r in kept]
    assert [sorted(f) for f in ds.finding_labels] == [sorted(names[r["ImageID"]]) for r in kept]
    assert not ds.targets.isnan().any()
    item = ds[0]  # 16-bit PNG read at full depth: the 8-bit picture exactly
    original = read_image(data_root / "nih-chestxray14-subset/No_findings/00001280_004.png")
    torch.testing.assert_close(item.image, original, atol=1e-6, rtol=0)
    pa = PadChest(padchest_root, csv_file=table, projections=("PA",), findings=["cardiomegaly"])
    assert len(pa) == sum(r["Projection"] == "PA" for r in kept) and pa.classes == ["cardiomegaly"]


def test_padchest_label_parser() -> None:
    assert parse_label_list("['normal']") == ["normal"]
    assert parse_label_list("[' loculated pleural effusion', '']") == ["loculated pleural effusion"]
    assert parse_label_list("") is None and parse_label_list("nan") is None
    for bad in ("['a', 1]", "__import__('os')", "{'a'}", "['unclosed"):
        with pytest.raises(ValueError, match="labels"):
            parse_label_list(bad, "row 7")


# ------------------------------------------------------------------------ splits


@pytest.mark.realdata
def test_patient_splits_and_fractions_on_multilabel(chexpert_root: Path) -> None:
    ds = CheXpert(chexpert_root)
    for stratify in (True, False):
        train, test = patient_split(ds, (0.7, 0.3), seed=0, stratify=stratify)
        a = {ds.patient_ids[i] for i in train.indices}
        b = {ds.patient_ids[i] for i in test.indices}
        assert not a & b and len(train) + len(test) == len(ds)
    small = label_fraction_subset(train, 0.1, seed=1, stratify=False)
    large = label_fraction_subset(train, 0.5, seed=1, stratify=False)
    assert set(small.indices) <= set(large.indices) and 0 < len(small) < len(large)
    tenth = train_subset(train, 0.1, seed=0)  # the evaluation protocols' label fraction
    assert isinstance(tenth, Subset) and 0 < len(tenth) < len(train)
    # Subset items carry their row of targets.
    item = train[0]
    torch.testing.assert_close(item.label, ds.targets[train.indices[0]], equal_nan=True)
