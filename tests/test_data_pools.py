"""NIH ChestX-ray14 (folder and CSV forms), unlabelled folders and image pools."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_curriculum.data import (
    NIH_FINDINGS,
    CovidChestXray,
    ImagePool,
    KermanyPneumonia,
    LabeledImage,
    NIHChestXray14,
    ShenzhenMontgomery,
    UnlabeledImages,
    bundled_sample_root,
    nih_patient_id,
    patient_split,
)

NIH = "nih-chestxray14-subset"


@pytest.mark.realdata
def test_nih_folder_form(data_root: Path) -> None:
    ds = NIHChestXray14(data_root / NIH)
    assert ds.classes == ["No_findings", "Pneumonia"]
    assert ds.class_counts() == {"No_findings": 500, "Pneumonia": 500}
    assert ds.patient_ids[0] == ds.files[0].name.split("_")[0]
    item = ds[0]
    assert isinstance(item, LabeledImage) and item.image.shape[0] == 1 and item.label == 0
    assert max(item.image.shape[1:]) == 384
    a, b = patient_split(ds, seed=0)
    assert not set(ds.patient_ids[i] for i in a.indices) & set(ds.patient_ids[i] for i in b.indices)
    assert nih_patient_id("00000061_012.png") == "00000061"


def _write_csv(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "View Position"])
        for name, labels, view in rows:
            w.writerow([name, labels, name[9:12], str(int(name[:8])), view])


@pytest.mark.realdata
def test_nih_csv_form(data_root: Path, tmp_path: Path) -> None:
    names = sorted(p.name for p in (data_root / NIH / "Pneumonia").glob("*.png"))[:3]
    normal = sorted(p.name for p in (data_root / NIH / "No_findings").glob("*.png"))[:2]
    rows = [
        (names[0], "Pneumonia", "PA"),
        (names[1], "Effusion|Pneumonia|Infiltration", "AP"),
        (names[2], "Effusion", "PA"),
        (normal[0], "No Finding", "PA"),
        (normal[1], "No Finding", "AP"),
        ("99999999_000.png", "Mass", "PA"),  # image not downloaded: dropped and counted
    ]
    csv_file = tmp_path / "Data_Entry_2017.csv"
    _write_csv(csv_file, rows)
    multi = NIHChestXray14(data_root / NIH, csv_file=csv_file)
    assert len(multi) == 5 and multi.missing == 1
    assert multi.classes == list(NIH_FINDINGS) and multi.targets is not None
    assert multi.targets.shape == (5, 14)
    i = [f.name for f in multi.files].index(names[1])
    label = multi[i].label
    assert isinstance(label, torch.Tensor) and label.dtype == torch.float32
    hot = {NIH_FINDINGS[j] for j in torch.nonzero(label).flatten().tolist()}
    assert hot == {"Effusion", "Pneumonia", "Infiltration"}
    assert multi.class_counts()["Effusion"] == 2 and multi.class_counts()["Pneumonia"] == 2
    assert sorted(multi.labels) == [0, 0, 1, 1, 1]  # 0 = "No Finding"
    assert multi.patient_ids[i] == names[1][:8]

    binary = NIHChestXray14(data_root / NIH, csv_file=csv_file, positive="Pneumonia")
    assert binary.classes == ["other", "Pneumonia"] and sorted(binary.labels) == [0, 0, 0, 1, 1]
    strict = NIHChestXray14(
        data_root / NIH, csv_file=csv_file, positive="Pneumonia", negative="No Finding"
    )
    assert strict.class_counts() == {"No Finding": 2, "Pneumonia": 2}
    pa = NIHChestXray14(data_root / NIH, csv_file=csv_file, views=("PA",))
    assert len(pa) == 3 and pa.missing == 1

    # The CSV found in root is used automatically (images in an official-style subfolder).
    root = tmp_path / "nih"
    (root / "images_001" / "images").mkdir(parents=True)
    for name in names + normal:
        folder = "Pneumonia" if name in names else "No_findings"
        shutil.copy(data_root / NIH / folder / name, root / "images_001" / "images" / name)
    shutil.copy(csv_file, root / "Data_Entry_2017.csv")
    assert len(NIHChestXray14(root)) == 5

    with pytest.raises(ValueError, match="need the CSV form"):
        NIHChestXray14(data_root / NIH, positive="Pneumonia")


def _tiny_tree(tmp_path: Path) -> Path:
    root = tmp_path / "pool"
    (root / "a" / "deep").mkdir(parents=True)
    (root / "masks").mkdir()
    ramp = np.tile(np.arange(32, dtype=np.uint16) * 2000, (16, 1))
    Image.fromarray(ramp).save(root / "a" / "deep" / "x16.png")  # 16-bit gray
    Image.fromarray(np.full((16, 16, 4), 200, np.uint8)).save(root / "a" / "rgba.PNG")
    Image.fromarray(np.full((16, 16, 3), 50, np.uint8)).save(root / "rgb.jpg")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "masks" / "m.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_unlabeled_images(tmp_path: Path) -> None:
    root = _tiny_tree(tmp_path)
    ds = UnlabeledImages(root)
    assert [p.name for p in ds.files] == ["x16.png", "rgba.PNG", "rgb.jpg"]
    images = [ds[i] for i in range(len(ds))]
    assert all(x.dtype == torch.float32 and x.shape[0] == 1 for x in images)
    assert abs(float(images[0].max()) - 62000 / 65535) < 1e-6
    assert abs(float(images[1].mean()) - 200 / 255) < 1e-6
    assert len(UnlabeledImages(root, skip_dirs=())) == 4  # the mask folder is kept
    assert len(UnlabeledImages(root, exclude=[root / "a"])) == 1
    assert len(UnlabeledImages(root, exclude=[root / "rgb.jpg"])) == 2
    flipped = UnlabeledImages(root, transform=lambda x: x.flip(-1))
    torch.testing.assert_close(flipped[0], images[0].flip(-1))
    with pytest.raises(FileNotFoundError):
        UnlabeledImages(tmp_path / "nowhere")


def test_image_pool_on_bundled_sample() -> None:
    train = KermanyPneumonia(bundled_sample_root(), "train")
    test = KermanyPneumonia(bundled_sample_root(), "test")
    pool = ImagePool(train, test)
    assert len(pool) == 48 and pool.sources.count(1) == 16
    pool = ImagePool(train, test, train, exclude_files=[test])  # duplicates kept once
    assert len(pool) == 32 and pool.excluded == 16
    assert set(pool.files) == set(train.files)
    x = pool[0]
    assert isinstance(x, torch.Tensor) and x.shape == (1, 224, 224)
    a, b = patient_split(train, (0.5, 0.5))
    part = ImagePool(a, exclude_files=b)
    assert len(part) == len(a) and part.excluded == 0
    assert len(ImagePool(train, exclude_files=a)) == len(b)
    with pytest.raises(ValueError, match=r"has no \.files"):
        ImagePool([torch.zeros(1, 8, 8)])


@pytest.mark.realdata
def test_pool_of_all_real_sets(data_root: Path) -> None:
    test = KermanyPneumonia(split="test")
    parts = [
        KermanyPneumonia(),
        test,
        CovidChestXray(),
        CovidChestXray(with_masks=True),  # its images are already in the line above
        NIHChestXray14(),
        ShenzhenMontgomery(),
    ]
    pool = ImagePool(*parts, exclude_files=test)
    assert len(pool) == 5216 + 496 + 1000 + 72 and pool.excluded == 624
    # + dicom-cxr/: 10 DICOM files (one ACR-NEMA file without a suffix) and one PNG
    assert len(UnlabeledImages(data_root)) == 5840 + 496 + 1000 + 72 + 11
