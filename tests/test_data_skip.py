"""The bad-file policy of the datasets: raise naming the file, or skip and count."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from cxr_curriculum.data import (
    CovidChestXray,
    ImagePool,
    ImageReadError,
    KermanyPneumonia,
    ShenzhenMontgomery,
    UnlabeledImages,
    bundled_sample_root,
)


def _kermany_with_bad_files(tmp_path: Path) -> Path:
    """A Kermany-layout folder: 4 good real images and 3 bad ones."""
    root = tmp_path / "kermany"
    sample = bundled_sample_root() / "train"
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / "train" / cls).mkdir(parents=True)
        for src in sorted((sample / cls).glob("*.jpeg"))[:2]:
            shutil.copy(src, root / "train" / cls / src.name)
    good = sorted((sample / "PNEUMONIA").glob("*.jpeg"))[0].read_bytes()
    (root / "train/NORMAL/IM-9001-0001.jpeg").write_bytes(b"")
    (root / "train/PNEUMONIA/person9002_virus_1.jpeg").write_bytes(good[: len(good) // 3])
    (root / "train/PNEUMONIA/person9003_bacteria_2.jpeg").write_text("<html>404</html>")
    return root


def test_lazy_raise_names_file_in_dataloader(tmp_path: Path) -> None:
    ds = KermanyPneumonia(_kermany_with_bad_files(tmp_path), "train")
    assert len(ds) == 7  # nothing read up front
    with pytest.raises(ImageReadError, match=r"IM-9001-0001\.jpeg: empty file"):
        for _ in DataLoader(ds, batch_size=2, num_workers=0):
            pass


def test_check_files_raises_before_training(tmp_path: Path) -> None:
    root = _kermany_with_bad_files(tmp_path)
    with pytest.raises(ImageReadError, match=r"IM-9001-0001\.jpeg.*2 more bad file"):
        KermanyPneumonia(root, "train", check_files=True)


def test_skip_records_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _kermany_with_bad_files(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cxr_curriculum.data"):
        ds = KermanyPneumonia(root, "train", on_error="skip")
    assert len(ds) == len(ds.labels) == len(ds.patient_ids) == len(ds.subtypes) == 4
    assert ds.class_counts() == {"NORMAL": 2, "PNEUMONIA": 2}
    reasons = {p.name: r for p, r in ds.skipped}
    assert set(reasons) == {
        "IM-9001-0001.jpeg",
        "person9002_virus_1.jpeg",
        "person9003_bacteria_2.jpeg",
    }
    assert reasons["IM-9001-0001.jpeg"].startswith("empty file")
    assert reasons["person9002_virus_1.jpeg"].startswith("truncated")
    assert reasons["person9003_bacteria_2.jpeg"].startswith("not a PNG/JPEG")
    assert "skipped 3 of 7 files" in caplog.text and "1 empty file" in caplog.text
    assert all(ds[i].image.shape == (1, 224, 224) for i in range(len(ds)))
    with pytest.raises(ValueError, match="on_error must be"):
        KermanyPneumonia(root, "train", on_error="ignore")  # type: ignore[arg-type]


def _shenzhen_with_bad_mask(tmp_path: Path, data_root: Path) -> Path:
    src = data_root / "shenzhen-montgomery-tb"
    root = tmp_path / "sz"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    names = sorted(p.name for p in (src / "images").glob("*.png"))[:3]
    for name in names:
        shutil.copy(src / "images" / name, root / "images" / name)
        shutil.copy(src / "masks" / name, root / "masks" / name)
    with Image.open(src / "masks" / names[1]) as m:  # wrong size: half width
        m.resize((m.width // 2, m.height), Image.Resampling.NEAREST).save(root / "masks" / names[1])
    return root


@pytest.mark.realdata
def test_mask_size_mismatch_raise_and_skip(tmp_path: Path, data_root: Path) -> None:
    root = _shenzhen_with_bad_mask(tmp_path, data_root)
    bad = sorted((root / "masks").glob("*.png"))[1]
    ds = ShenzhenMontgomery(root)
    with pytest.raises(ImageReadError, match="does not match its image size") as info:
        ds[1]
    assert info.value.path == bad
    skipped = ShenzhenMontgomery(root, on_error="skip")
    assert len(skipped) == 2 and skipped.skipped[0][0] == bad
    assert bad not in (skipped.mask_files or [])


@pytest.mark.realdata
def test_covid_skip_and_unlabeled_skip(tmp_path: Path, data_root: Path) -> None:
    src = data_root / "covid-chestxray"
    root = tmp_path / "covid"
    root.mkdir()
    (root / "images").mkdir()
    (root / "v7-lung-masks").mkdir()
    shutil.copy(src / "metadata.csv", root / "metadata.csv")
    with_mask = sorted(p.name for p in (src / "v7-lung-masks").iterdir())[:4]
    for name in with_mask:
        shutil.copy(src / "images" / name, root / "images" / name)
        shutil.copy(src / "v7-lung-masks" / name, root / "v7-lung-masks" / name)
    (root / "images" / with_mask[0]).write_bytes(b"")
    masked = CovidChestXray(root, with_masks=True, on_error="skip")
    assert len(masked) == 3 and [p.name for p, _ in masked.skipped] == [with_mask[0]]
    ds = CovidChestXray(root, on_error="skip")  # rows whose image is absent: skipped too
    assert len(ds) == 3 and len(ds.skipped) == 496 - 3
    reasons = dict(ds.skipped)
    assert reasons[root / "images" / with_mask[0]].startswith("empty file")
    assert sum(r == "file not found" for r in reasons.values()) == 496 - 4

    pool_root = tmp_path / "pool"
    pool_root.mkdir()
    for name in with_mask:
        shutil.copy(root / "images" / name, pool_root / name)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(pool_root / "ok.png")  # the minimum
    unlabeled = UnlabeledImages(pool_root, on_error="skip")
    assert len(unlabeled) == 4 and [p.name for p, _ in unlabeled.skipped] == [with_mask[0]]
    with pytest.raises(ImageReadError, match="empty file"):
        ImagePool(UnlabeledImages(pool_root), check_files=True)


def test_worker_errors_arrive_as_image_read_error_with_path(tmp_path: Path) -> None:
    root = _kermany_with_bad_files(tmp_path)
    ds = KermanyPneumonia(root, "train")
    bad = root / "train/NORMAL/IM-9001-0001.jpeg"
    with pytest.raises(ImageReadError) as info:
        for _ in DataLoader(ds, batch_size=2, num_workers=1):
            pass
    assert info.value.path == bad and info.value.reason == "empty file (0 bytes)"
    assert "DataLoader worker process 0" in str(info.value)  # the worker's traceback is kept


def test_tiny_images_follow_the_on_error_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _kermany_with_bad_files(tmp_path)
    for name in (
        "NORMAL/IM-9001-0001",
        "PNEUMONIA/person9002_virus_1",
        "PNEUMONIA/person9003_bacteria_2",
    ):
        (root / "train" / f"{name}.jpeg").unlink()  # only the 4 good files and the tiny ones
    tiny = root / "train/NORMAL/IM-9100-0001.jpeg"
    strip = root / "train/PNEUMONIA/person9101_virus_3.jpeg"
    Image.fromarray(np.full((1, 1), 90, np.uint8)).save(tiny)
    Image.fromarray(np.full((1, 8), 90, np.uint8)).save(strip)  # 8 wide, 1 high
    lazy = KermanyPneumonia(root, "train")
    assert len(lazy) == 6
    with pytest.raises(ImageReadError, match="image too small") as info:
        lazy[lazy.files.index(tiny)]
    assert info.value.path == tiny
    with caplog.at_level(logging.WARNING, logger="cxr_curriculum.data"):
        ds = KermanyPneumonia(root, "train", on_error="skip")
    assert len(ds) == 4 and {p for p, _ in ds.skipped} == {tiny, strip}
    assert "skipped 2 of 6 files (2 image too small)" in caplog.text
    with pytest.raises(ImageReadError, match=r"image too small \(1x1 px.*1 more bad file"):
        KermanyPneumonia(root, "train", check_files=True)
    pool = UnlabeledImages(root, on_error="skip")
    assert len(pool) == 4 and len(pool.skipped) == 2
