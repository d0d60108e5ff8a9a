"""Dataset loaders on the real shared data: counts from its README, ids, masks."""

from __future__ import annotations

import csv
import inspect
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_curriculum.data import (
    COVID_VS_OTHER,
    MASK_IGNORE,
    MIMICCXR,
    WINDOWS,
    CheXpert,
    CovidChestXray,
    FindingsPool,
    ImagePool,
    KermanyPneumonia,
    LabeledImage,
    MaskedImage,
    NIHChestXray14,
    PadChest,
    RSNAPneumonia,
    ShenzhenMontgomery,
    SIIMPneumothorax,
    UnlabeledImages,
    VinDrCXR,
    bundled_sample_root,
    kermany_patient_id,
    kermany_subtype,
    read_image,
)

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize(
    ("split", "normal", "pneumonia"), [("train", 1341, 3875), ("test", 234, 390)]
)
def test_kermany_counts(data_root: Path, split: str, normal: int, pneumonia: int) -> None:
    ds = KermanyPneumonia(data_root / "kermany-pneumonia", split=split)
    assert ds.class_counts() == {"NORMAL": normal, "PNEUMONIA": pneumonia}
    assert len(ds) == len(ds.files) == len(ds.labels) == len(ds.patient_ids) == normal + pneumonia
    # Independent count straight from the folders.
    folder = data_root / "kermany-pneumonia" / split / "PNEUMONIA"
    assert sum(ds.labels) == len(list(folder.glob("*.jpeg")))
    assert set(ds.subtypes) == {"normal", "bacteria", "virus"}
    for sub, label in zip(ds.subtypes, ds.labels, strict=True):
        assert (sub == "normal") == (label == 0)


def test_kermany_default_root_item_and_subtype_target(data_root: Path) -> None:
    ds = KermanyPneumonia(split="test", target="subtype")  # root from data_root()
    assert ds.classes == ["normal", "bacteria", "virus"]
    counts = Counter(ds.subtypes)
    assert ds.class_counts() == {k: counts[k] for k in ds.classes}
    item = ds[len(ds) - 1]
    assert isinstance(item, LabeledImage)
    assert item.image.shape == (1, 224, 224) and item.image.dtype == torch.float32
    assert float(item.image.min()) >= 0.0 and float(item.image.max()) <= 1.0
    assert item.label == ds.labels[-1] and item.patient_id == ds.patient_ids[-1]


@pytest.mark.realdata
def test_kermany_normal2_series_are_other_patients(data_root: Path) -> None:
    """Regression (issue 17): the real test split has 427 patients, not 404."""
    test = KermanyPneumonia(data_root / "kermany-pneumonia", split="test")
    assert len(set(test.patient_ids)) == 427
    normal2 = {p for p, f in zip(test.patient_ids, test.files, strict=True)
               if f.name.startswith("NORMAL2-")}  # fmt: skip
    series = {p for p, f in zip(test.patient_ids, test.files, strict=True)
              if f.name.startswith("IM-")}  # fmt: skip
    assert normal2 and series and not normal2 & series
    merged = {p.removeprefix("NORMAL2-") for p in normal2} & series
    assert len(merged) == 427 - 404  # the ids the old rule merged


def test_kermany_patient_ids() -> None:
    assert kermany_patient_id("person1000_virus_1681.jpeg") == "person1000"
    assert kermany_patient_id("person100_bacteria_475.jpeg") == "person100"
    assert kermany_patient_id("IM-0011-0001-0002.jpeg") == "IM-0011"
    # NORMAL2-IM-x and IM-x are different patients (issue 17; see kermany_patient_id).
    assert kermany_patient_id("NORMAL2-IM-0383-0001.jpeg") == "NORMAL2-IM-0383"
    assert kermany_patient_id("normal2-im-0383-0001.jpeg") == "NORMAL2-IM-0383"
    assert kermany_subtype("person1000_virus_1681.jpeg") == "virus"
    assert kermany_subtype("IM-0011-0001.jpeg") == "normal"
    with pytest.raises(ValueError, match="cannot parse"):
        kermany_patient_id("scan_001.jpeg")


def test_kermany_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        KermanyPneumonia(bundled_sample_root(), split="validation")
    with pytest.raises(ValueError, match="target must be"):
        KermanyPneumonia(bundled_sample_root(), target="binary")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="not found"):
        KermanyPneumonia(tmp_path, split="train")


def test_bundled_sample() -> None:
    root = bundled_sample_root()
    train, test = KermanyPneumonia(root, "train"), KermanyPneumonia(root, "test")
    assert train.class_counts() == {"NORMAL": 16, "PNEUMONIA": 16}
    assert test.class_counts() == {"NORMAL": 8, "PNEUMONIA": 8}
    assert not set(train.patient_ids) & set(test.patient_ids)
    assert len(set(train.patient_ids)) == 32 and len(set(test.patient_ids)) == 16
    assert (root / "ATTRIBUTION.md").read_text().count("CC BY 4.0") >= 1
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 1_500_000, size


def test_covid_counts_and_filters(data_root: Path) -> None:
    ds = CovidChestXray(data_root / "covid-chestxray")
    assert len(ds) == 496 and len(set(ds.patient_ids)) == 287
    with (data_root / "covid-chestxray" / "metadata.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert Counter(ds.findings) == Counter(r["finding"] for r in rows)
    assert Counter(ds.findings)["COVID-19"] == 347 and Counter(ds.findings)["todo"] == 84
    assert ds.classes == sorted(set(ds.findings))
    assert [ds.classes[i] for i in ds.labels] == ds.findings
    pa = CovidChestXray(views=("PA",))
    assert len(pa) == sum(r["view"] == "PA" for r in rows) and set(pa.views) == {"PA"}
    assert len(CovidChestXray(modalities=("CT",))) == 0
    nf = CovidChestXray(findings=("No Finding",))
    assert len(nf) == 12 and nf.classes == ["No Finding"]


def test_covid_label_maps(data_root: Path) -> None:
    binary = CovidChestXray(label_map=COVID_VS_OTHER)
    assert binary.classes == ["COVID-19", "other"]
    assert "todo" not in binary.findings and "Unknown" not in binary.findings
    for finding, label in zip(binary.findings, binary.labels, strict=True):
        assert (label == 0) == finding.startswith("COVID-19")
    mapped = CovidChestXray(label_map={"No Finding": "normal", "COVID-19": "covid"})
    assert mapped.classes == ["normal", "covid"] and mapped.class_counts() == {
        "normal": 12,
        "covid": 347,
    }
    with pytest.raises(ValueError, match="collection of strings"):
        CovidChestXray(views="PA")


def test_covid_masks(data_root: Path) -> None:
    ds = CovidChestXray(with_masks=True)
    assert len(ds) == 349 and ds.mask_files is not None
    assert all(m.name == f.name for m, f in zip(ds.mask_files, ds.files, strict=True))
    item = ds[0]
    assert isinstance(item, MaskedImage)
    assert item.mask.dtype == torch.uint8 and item.mask.shape == item.image.shape
    assert set(item.mask.unique().tolist()) <= {0, 1, MASK_IGNORE}
    # A V7 mask with the raw 127 "ignore" value: ignore pixels come out as MASK_IGNORE.
    name = "1-s2.0-S2531043720300921-gr1.png"
    raw = torch.from_numpy(np.array(Image.open(data_root / "covid-chestxray/v7-lung-masks" / name)))
    mask = ds[ds.files.index(data_root / "covid-chestxray/images" / name)].mask[0]
    assert int((raw == 127).sum()) > 0
    assert torch.equal(mask == MASK_IGNORE, raw == 127)
    assert torch.equal(mask == 1, raw == 255)


def _lungs_darker_fraction(ds: CovidChestXray | ShenzhenMontgomery, step: int) -> float:
    darker = total = 0
    for i in range(0, len(ds), step):
        image, mask, _ = ds[i]
        img, m = image.numpy(), mask.numpy()  # numpy: no thread pool on a busy machine
        lung, other = m == 1, m == 0
        if not lung.any() or not other.any():
            continue
        total += 1
        darker += int(img[lung].mean() < img[other].mean())
    assert total > 0
    return darker / total


def test_masks_line_up_with_images(data_root: Path) -> None:
    covid = CovidChestXray(with_masks=True)
    shenzhen = ShenzhenMontgomery()
    assert _lungs_darker_fraction(covid, step=16) >= 0.8
    assert _lungs_darker_fraction(shenzhen, step=6) >= 0.8


def test_masks_misaligned_control(data_root: Path) -> None:
    """Negative control: upside-down masks (lungs moved to abdomen/neck) do not pass."""
    ds = ShenzhenMontgomery(joint_transform=lambda im, m: (im, m.flip(-2)))
    assert _lungs_darker_fraction(ds, step=6) < 0.8


def test_shenzhen_montgomery(data_root: Path) -> None:
    ds = ShenzhenMontgomery(data_root / "shenzhen-montgomery-tb")
    assert len(ds) == 72 and ds.class_counts() == {"Shenzhen": 59, "Montgomery": 13}
    assert all(ds.tuberculosis)
    assert len(set(ds.patient_ids)) == 72 and ds.patient_ids[0].startswith(("CHNCXR_", "MCUCXR_"))
    image, mask, pid = ds[0]
    assert image.shape == mask.shape and mask.dtype == torch.uint8
    assert set(mask.unique().tolist()) <= {0, 1} and pid == ds.patient_ids[0]


def test_transforms_are_applied(data_root: Path) -> None:
    ds = ShenzhenMontgomery(
        joint_transform=lambda im, m: (im[:, :32, :32], m[:, :32, :32]),
        transform=lambda im: 1.0 - im,
    )
    raw = ShenzhenMontgomery()[0]
    item = ds[0]
    assert item.image.shape == item.mask.shape == (1, 32, 32)
    torch.testing.assert_close(item.image, 1.0 - raw.image[:, :32, :32])
    with pytest.raises(ValueError, match="joint_transform needs a dataset with masks"):
        CovidChestXray(joint_transform=lambda im, m: (im, m))


def test_labelled_loaders_take_dicom_films(data_root: Path, tmp_path: Path) -> None:
    """A Kermany-layout folder of DICOM films (one ACR-NEMA file without a suffix)."""
    src = data_root / "dicom-cxr"
    root = tmp_path / "kermany"
    (root / "train" / "NORMAL").mkdir(parents=True)
    (root / "train" / "PNEUMONIA").mkdir(parents=True)
    shutil.copy(src / "nih-dicom" / "00000001_000.dcm", root / "train/NORMAL/IM-0001-0001.dcm")
    shutil.copy(src / "acr-nema" / "CR-MONO1-10-chest", root / "train/PNEUMONIA/person1_virus_1")
    ds = KermanyPneumonia(root, "train", check_files=True)
    assert ds.class_counts() == {"NORMAL": 1, "PNEUMONIA": 1}
    assert ds.patient_ids == ["IM-0001", "person1"]
    normal, pneumonia = ds[0], ds[1]
    assert normal.image.shape == (1, 1024, 1024) and pneumonia.image.shape == (1, 440, 440)
    assert normal.label == 0 and pneumonia.label == 1
    meta = ds.dicom_meta(1)
    assert meta is not None and (meta.modality, meta.view_position) == ("CR", "PA")


# ---------------------------------------------------------------------- window=

LOADERS = (
    KermanyPneumonia, CovidChestXray, NIHChestXray14, ShenzhenMontgomery, CheXpert, MIMICCXR,
    PadChest, RSNAPneumonia, SIIMPneumothorax, VinDrCXR, FindingsPool, UnlabeledImages, ImagePool,
)  # fmt: skip


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
def test_every_loader_takes_window_keyword_only(loader: type) -> None:
    param = inspect.signature(loader).parameters["window"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default == "auto"
    assert "window: DICOM windowing policy" in (loader.__doc__ or "")


@pytest.mark.parametrize(
    ("loader", "folder"),
    [
        (KermanyPneumonia, "kermany-pneumonia"),
        (CovidChestXray, "covid-chestxray"),
        (NIHChestXray14, "nih-chestxray14-subset"),
        (ShenzhenMontgomery, "shenzhen-montgomery-tb"),
        (UnlabeledImages, "dicom-cxr"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_loaders_refuse_a_bad_window(data_root: Path, loader: type, folder: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"window must be one of {WINDOWS}, got 'lut'")):
        loader(data_root / folder, window="lut")
    assert loader(data_root / folder, window="percentile").window == "percentile"


def test_the_window_reaches_the_dicom_films(data_root: Path, tmp_path: Path) -> None:
    """Kermany, NIH (folder form) and Covid layouts of real DICOM films, two windows."""
    film = data_root / "dicom-cxr" / "acr-nema" / "CR-MONO1-10-chest"  # 10-bit, 440 x 440
    kermany = tmp_path / "kermany" / "train"
    for name in ("NORMAL/IM-0001-0001.dcm", "PNEUMONIA/person1_virus_1.dcm"):
        (kermany / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(film, kermany / name)
    nih = tmp_path / "nih" / "Pneumonia" / "00000001_000.dcm"
    nih.parent.mkdir(parents=True)
    shutil.copy(film, nih)
    covid = tmp_path / "covid"
    (covid / "images").mkdir(parents=True)
    shutil.copy(film, covid / "images" / "film.dcm")
    (covid / "metadata.csv").write_text(
        "patientid,finding,view,modality,filename\n1,COVID-19,PA,X-ray,film.dcm\n"
    )
    seen = []
    for window in ("minmax", "percentile"):
        expected = read_image(film, window=window)
        for ds in (
            KermanyPneumonia(tmp_path / "kermany", "train", window=window),
            NIHChestXray14(tmp_path / "nih", window=window, check_files=True),
            CovidChestXray(covid, window=window),
        ):
            assert ds.window == window
            torch.testing.assert_close(ds[0].image, expected, rtol=0, atol=0)
        seen.append(expected)
    assert not torch.equal(seen[0], seen[1])  # the two windows differ on this film


@pytest.mark.parametrize(
    "loader",
    (CheXpert, MIMICCXR, PadChest, RSNAPneumonia, SIIMPneumothorax, VinDrCXR),
    ids=lambda c: c.__name__,
)
def test_table_loaders_check_the_window_before_reading(tmp_path: Path, loader: type) -> None:
    with pytest.raises(ValueError, match=re.escape(f"window must be one of {WINDOWS}, got 'lut'")):
        loader(tmp_path / "absent", window="lut")  # no table is needed to refuse it
