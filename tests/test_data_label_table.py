"""``LabelTable``: any CSV of image paths, patients and labels, on real rows and films.

The NIH subset's 1,000 PNGs with their real ``Data_Entry_2017`` rows (Pneumonia yes/no,
and several findings); NIH's DICOM film found from its real row, which names the PNG;
the SIIM film from its real ``train-rle.csv`` row; V7 lung masks as a mask column.
Expected labels are recomputed with the ``csv`` module from the real tables.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
import torch

from _standins import place
from cxr_curriculum.data import LabeledImage, LabelTable, image_stem

pytestmark = pytest.mark.realdata

NIH_TABLE = "label-tables/Data_Entry_2017_v2020.csv.gz"
FINDINGS = ["Atelectasis", "Effusion", "Infiltration", "Pneumonia"]


@pytest.fixture(scope="module")
def nih_rows(data_root: Path) -> dict[str, dict[str, str]]:
    """The real Data_Entry rows of the 1,000 images of the NIH subset."""
    names = {p.name for p in (data_root / "nih-chestxray14-subset").rglob("*.png")}
    with gzip.open(data_root / NIH_TABLE, "rt", newline="") as fh:
        return {r["Image Index"]: r for r in csv.DictReader(fh) if r["Image Index"] in names}


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as fh:  # type: ignore[operator]
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _nih_table(path: Path, rows: dict[str, dict[str, str]], findings: list[str]) -> Path:
    body = [
        [name, r["Patient ID"], *(int(f in r["Finding Labels"].split("|")) for f in findings)]
        for name, r in sorted(rows.items())
    ]
    return _write(path, ["Image Index", "Patient ID", *findings], body)


def test_binary_table_of_the_nih_subset(
    data_root: Path, nih_rows: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    table = _nih_table(tmp_path / "labels.csv.gz", nih_rows, ["Pneumonia"])
    ds = LabelTable(table, data_root / "nih-chestxray14-subset", path_column="Image Index",
                    patient_column="Patient ID", label_columns=["Pneumonia"])  # fmt: skip
    assert len(ds) == 1000 and ds.classes == ["not Pneumonia", "Pneumonia"]
    assert ds.targets is None and ds.class_counts() == {"not Pneumonia": 500, "Pneumonia": 500}
    for i in range(0, 1000, 97):  # the folder agrees with the real row, file by file
        name = ds.files[i].name
        assert ds.labels[i] == int(ds.files[i].parent.name == "Pneumonia")
        assert ds.patient_ids[i] == nih_rows[name]["Patient ID"]
    item = ds[3]
    assert isinstance(item, LabeledImage) and item.image.shape[0] == 1 and item.label in (0, 1)


def test_multilabel_table_and_policies(
    data_root: Path, nih_rows: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    table = _nih_table(tmp_path / "multi.csv", nih_rows, FINDINGS)
    ds = LabelTable(table, data_root / "nih-chestxray14-subset", path_column="Image Index",
                    patient_column="Patient ID", label_columns=FINDINGS)  # fmt: skip
    assert ds.targets is not None and ds.targets.shape == (1000, 4) and ds.classes == FINDINGS
    counts = {f: sum(f in r["Finding Labels"].split("|") for r in nih_rows.values())
              for f in FINDINGS}  # fmt: skip
    assert ds.class_counts() == counts  # Atelectasis 113, Effusion 90, Infiltration 187, ...
    assert isinstance(ds[0].label, torch.Tensor) and ds[0].label.shape == (4,)
    # -1 and blank cells under each uncertainty policy (CheXpert's codes)
    lines = table.read_text().splitlines()
    lines[1] = ",".join([*lines[1].split(",")[:2], "-1", "", "1", "0"])
    lines[2] = ",".join([*lines[2].split(",")[:3], "-1.0", "0.0", "1.0"])
    table.write_text("\n".join(lines) + "\n")
    kw = {"path_column": "Image Index", "patient_column": "Patient ID", "label_columns": FINDINGS}
    root = data_root / "nih-chestxray14-subset"
    ignore = LabelTable(table, root, **kw)
    first = ignore.row_numbers.index(1)
    assert torch.isnan(ignore.targets[first, :2]).all()  # type: ignore[index]
    ones = LabelTable(table, root, uncertain="positive", blank="negative", **kw)
    assert ones.targets[first, :2].tolist() == [1.0, 0.0]  # type: ignore[index]
    binary = LabelTable(table, root, path_column="Image Index", patient_column="Patient ID",
                        label_columns="Atelectasis")  # fmt: skip
    assert binary.unknown == 1 and len(binary) == 999  # the -1 row is left out


def test_rows_find_dicom_films_by_stem(data_root: Path, tmp_path: Path) -> None:
    """NIH's real row names the PNG; the film on disk is DICOM. SIIM's row names a UID."""
    with gzip.open(data_root / NIH_TABLE, "rt", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Image Index"] == "00000001_000.png")
    nih = _write(tmp_path / "nih.csv", ["Image Index", "Patient ID", "Cardiomegaly"],
                 [[row["Image Index"], row["Patient ID"],
                   int("Cardiomegaly" in row["Finding Labels"])]])  # fmt: skip
    ds = LabelTable(nih, data_root / "dicom-cxr" / "nih-dicom", path_column="Image Index",
                    patient_column="Patient ID", label_columns=["Cardiomegaly"])  # fmt: skip
    assert ds.files[0].name == "00000001_000.dcm" and ds.labels == [1]
    image = ds[0].image
    assert image.shape == (1, 1024, 1024) and 0.0 <= float(image.min()) < float(image.max())
    siim_root = data_root / "dicom-cxr" / "siim-acr-pneumothorax"
    with (siim_root / "train-rle.csv").open(newline="") as fh:
        rle = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(fh)]
    siim = _write(tmp_path / "siim.csv", ["ImageId", "Pneumothorax"],
                  [[r["ImageId"], int(r["EncodedPixels"] != "-1")] for r in rle])  # fmt: skip
    # the table has no patient column: the film's own id stands in for the patient
    film = LabelTable(siim, siim_root, path_column="ImageId", patient_column="ImageId",
                      label_columns=["Pneumothorax"])  # fmt: skip
    assert film.labels == [0] and film.files[0].suffix == ".dcm"
    assert image_stem(film.files[0].name) == rle[0]["ImageId"]
    assert film[0].image.ndim == 3


def test_masks_splits_and_errors(data_root: Path, tmp_path: Path) -> None:
    covid = data_root / "covid-chestxray"
    with (covid / "metadata.csv").open(newline="") as fh:
        rows = [
            r for r in csv.DictReader(fh) if (covid / "v7-lung-masks" / r["filename"]).is_file()
        ]
    rows = rows[:6]
    body = [[f"images/{r['filename']}", r["patientid"], int(r["finding"] == "COVID-19"),
             "test" if k % 2 else "train", f"v7-lung-masks/{r['filename']}"]
            for k, r in enumerate(rows)]  # fmt: skip
    header = ["file", "patient", "covid", "split", "mask"]
    table = _write(tmp_path / "t.csv", header, body)
    kw = {"path_column": "file", "patient_column": "patient", "label_columns": ["covid"]}
    test = LabelTable(table, covid, split_column="split", split="test", mask_column="mask",
                      mask_ignore_value=127, **kw)  # fmt: skip
    assert len(test) == 3 and test.splits == ["test"] * 3 and test.row_numbers == [2, 4, 6]
    assert [m.name for m in test.lung_mask_files] == [rows[k]["filename"] for k in (1, 3, 5)]  # type: ignore[union-attr]

    def broken(edit: tuple[str, str]) -> Path:
        return _write(tmp_path / "bad.csv", header,
                      [[str(c).replace(*edit) if k == 3 else c for c in row]
                       for k, row in enumerate(body)])  # fmt: skip

    errors = [
        (("images/", "imagez/"), r"bad\.csv, row 4, column 'file': image 'imagez/.*' not found"),
        ((rows[3]["patientid"], " "), r"bad\.csv, row 4, column 'patient': blank patient id"),
    ]
    for edit, message in errors:
        with pytest.raises(ValueError, match=message):
            LabelTable(broken(edit), covid, **kw)
    bad_label = [[*row[:2], "2" if k == 2 else row[2], *row[3:]] for k, row in enumerate(body)]
    with pytest.raises(ValueError, match=r"row 3, column 'covid': label '2' is not one of 1, 0"):
        LabelTable(_write(tmp_path / "bad.csv", header, bad_label), covid, **kw)
    with pytest.raises(ValueError, match=r"t\.csv lacks columns \['Covid'\]"):
        LabelTable(table, covid, path_column="file", patient_column="patient",
                   label_columns=["Covid"])  # fmt: skip
    # one name, two files: the row's suffix matches neither, both stems match
    film = data_root / "kermany-pneumonia" / "test" / "NORMAL" / "IM-0001-0001.jpeg"
    place(film, tmp_path / "films" / "x.png")
    place(film, tmp_path / "films" / "x.jpeg")
    two = _write(tmp_path / "two.csv", ["file", "patient", "y"], [["films/x.dcm", "p", 1]])
    with pytest.raises(ValueError, match=r"row 1, column 'file': 'films/x.dcm' matches 2 files"):
        LabelTable(two, path_column="file", patient_column="patient", label_columns=["y"])
    exact = _write(tmp_path / "one.csv", ["file", "patient", "y"], [["films/x.png", "p", 1]])
    ds = LabelTable(exact, path_column="file", patient_column="patient", label_columns=["y"])
    assert ds.files == [tmp_path / "films" / "x.png"]  # the name as written wins


def test_a_row_naming_a_folder_matches_in_that_folder_only(data_root: Path, tmp_path: Path) -> None:
    """``a/b.png`` finds ``a/b.jpeg``, never ``x/a/b.jpeg`` (another folder that ends in a)."""
    film = data_root / "kermany-pneumonia" / "test" / "NORMAL" / "IM-0001-0001.jpeg"
    table = _write(tmp_path / "t.csv", ["file", "patient", "y"], [["a/b.png", "p", 1]])
    kw = {"path_column": "file", "patient_column": "patient", "label_columns": ["y"]}
    place(film, tmp_path / "x" / "a" / "b.jpeg")
    with pytest.raises(ValueError, match=r"row 1, column 'file': image 'a/b.png' not found"):
        LabelTable(table, **kw)
    place(film, tmp_path / "a" / "b.jpeg")  # now the row's own folder has it: one match
    assert LabelTable(table, **kw).files == [tmp_path / "a" / "b.jpeg"]
    bare = _write(tmp_path / "bare.csv", ["file", "patient", "y"], [["b.png", "p", 1]])
    with pytest.raises(ValueError, match=r"'b.png' matches 2 files"):  # a bare name: anywhere
        LabelTable(bare, **kw)
