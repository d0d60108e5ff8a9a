"""RSNA Pneumonia, SIIM-ACR Pneumothorax and VinDr-CXR: DICOM loaders on real tables.

SIIM-ACR is tested on a real film in the challenge's own layout with its real row
(``dicom-cxr/siim-acr-pneumothorax``). RSNA, VinDr-CXR and the rest of SIIM-ACR cannot
be redistributed: those tests use the real rows of the real tables
(``label-tables/``) with **real stand-in DICOM films** from ``dicom-cxr/`` (NIH films
converted to DICOM; the SIIM film) placed at the paths the rows name. Expected labels,
boxes and votes are recomputed independently with ``csv``/``zipfile``.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from _standins import place
from cxr_curriculum.data import (
    CANONICAL_FINDINGS,
    VINDR_FINDINGS,
    DecodedCache,
    ImageReadError,
    LabeledImage,
    MaskedImage,
    RSNAPneumonia,
    SIIMPneumothorax,
    VinDrCXR,
    decode_rle,
    harmonised_targets,
    read_table,
)
from cxr_curriculum.data.rsna import rsna_boxes

pytestmark = pytest.mark.realdata
pytest.importorskip("pydicom")

NIH_DCM = "dicom-cxr/nih-dicom/1.3.6.1.4.1.11129.5.5.110503645592756492463169821050252582267888.dcm"
SIIM = "dicom-cxr/siim-acr-pneumothorax"
COL = {c: k for k, c in enumerate(CANONICAL_FINDINGS)}


# -------------------------------------------------------------------------- RSNA


@pytest.fixture(scope="module")
def rsna_lines(data_root: Path) -> list[str]:
    with zipfile.ZipFile(data_root / "label-tables" / "kaggle_stage_2_train_labels.csv.zip") as z:
        return io.TextIOWrapper(z.open("stage_2_train_labels.csv"), newline="").readlines()


def test_rsna_full_real_table(data_root: Path, rsna_lines: list[str]) -> None:
    films = rsna_boxes(read_table(data_root / "label-tables/kaggle_stage_2_train_labels.csv.zip"))
    rows = list(csv.DictReader(rsna_lines))
    per_film = Counter(r["patientId"] for r in rows)
    assert len(rows) == 30227 and list(films) == list(per_film)
    assert sum(len(b) for _, b in films.values()) == sum(r["Target"] == "1" for r in rows)
    for r in rows[:3000]:
        target, boxes = films[r["patientId"]]
        assert target == int(r["Target"])
        assert len(boxes) == (per_film[r["patientId"]] if target else 0)
    with pytest.raises(ValueError, match="both Target 0 and Target 1"):
        rsna_boxes([rows[0], {**rows[0], "Target": "1", "x": "1", "y": "1", "width": "2",
                              "height": "2"}])  # fmt: skip


def test_rsna_loader_real_rows(data_root: Path, rsna_lines: list[str], tmp_path: Path) -> None:
    rows = list(csv.DictReader(rsna_lines))
    per_film = Counter(r["patientId"] for r in rows)
    chosen = list(dict.fromkeys(r["patientId"] for r in rows))[:100]
    chosen += [p for p, n in per_film.items() if n >= 3 and p not in chosen][:30]
    keep = set(chosen)
    lines = [rsna_lines[0]] + [ln for ln, r in zip(rsna_lines[1:], rows, strict=True)
                               if r["patientId"] in keep]  # fmt: skip
    (tmp_path / "stage_2_train_labels.csv").write_text("".join(lines), encoding="utf-8")
    for pid in chosen[2:]:  # the first two films are absent
        place(data_root / NIH_DCM, tmp_path / "stage_2_train_images" / f"{pid}.dcm")
    ds = RSNAPneumonia(tmp_path)
    assert ds.missing == 2 and ds.patient_ids == chosen[2:]
    assert ds.classes == ["No Lung Opacity", "Lung Opacity"]
    mine = defaultdict(list)
    for r in rows:
        if r["patientId"] in keep and r["Target"] == "1":
            x, y, w, h = (float(r[k]) for k in ("x", "y", "width", "height"))
            mine[r["patientId"]].append((x, y, x + w, y + h))
    for pid, label, boxes in zip(ds.patient_ids, ds.labels, ds.boxes, strict=True):
        assert label == int(pid in mine)
        assert [(b.x_min, b.y_min, b.x_max, b.y_max) for b in boxes] == mine.get(pid, [])
    assert sum(ds.labels) >= 30
    item = ds[-1]
    assert isinstance(item, LabeledImage) and item.image.shape == (1, 1024, 1024)
    assert item.label == 1 and 0.0 <= float(item.image.min()) < float(item.image.max()) <= 1.0
    h = harmonised_targets(ds)
    assert h[:, COL["Pneumonia"]].tolist() == [float(v) for v in ds.labels]
    opacity = h[:, COL["Lung Opacity"]]
    assert bool((opacity[torch.tensor(ds.labels) == 1] == 1).all())
    assert bool(opacity[torch.tensor(ds.labels) == 0].isnan().all())


# ---------------------------------------------------------------------- SIIM-ACR


def test_siim_real_film_in_its_layout(data_root: Path) -> None:
    ds = SIIMPneumothorax(data_root / SIIM, with_masks=True)
    assert len(ds) == 1 and ds.labels == [0] and ds.encodings == [[]] and ds.missing == 0
    assert ds.patient_ids == [
        ds.files[0].relative_to(data_root / SIIM / "dicom-images-train").parts[0]
    ]
    item = ds[0]
    assert isinstance(item, MaskedImage)
    assert item.image.shape == item.mask.shape == (1, 1024, 1024)
    assert item.mask.dtype == torch.uint8 and int(item.mask.sum()) == 0

    def flip(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return image.flip(-1), mask.flip(-1)

    flipped = SIIMPneumothorax(data_root / SIIM, with_masks=True, joint_transform=flip)[0]
    torch.testing.assert_close(flipped.image, item.image.flip(-1))
    assert isinstance(SIIMPneumothorax(data_root / SIIM)[0], LabeledImage)


def test_siim_real_rows_with_standin_films(data_root: Path, tmp_path: Path) -> None:
    table = data_root / "label-tables" / "siim-pneumothorax-train-rle.csv.gz"
    with gzip.open(table, "rt", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    codes: dict[str, list[str]] = defaultdict(list)
    for image_id, code in rows:
        codes[image_id].extend([] if code.strip() == "-1" else [code.strip()])
    positive = [i for i, c in codes.items() if len(c) > 1][:10] + [
        i for i, c in codes.items() if len(c) == 1][:10]  # fmt: skip
    negative = [i for i, c in codes.items() if not c][:20]
    film = next((data_root / SIIM).rglob("*.dcm"))
    for k, image_id in enumerate(positive + negative):
        place(
            film, tmp_path / "dicom-images-train" / f"study{k}" / f"series{k}" / f"{image_id}.dcm"
        )
    ds = SIIMPneumothorax(tmp_path, csv_file=table, with_masks=True)
    assert ds.missing == len(codes) - 40 and len(ds) == 40
    ids = [f.name[: -len(".dcm")] for f in ds.files]
    assert ds.labels == [int(bool(codes[i])) for i in ids] and sum(ds.labels) == 20
    assert ds.encodings == [codes[i] for i in ids]
    for k, image_id in enumerate(ids[:12]):
        expected = torch.zeros(1, 1024, 1024, dtype=torch.uint8)
        for code in codes[image_id]:
            expected |= decode_rle(code)
        mask = ds.mask(k)
        assert torch.equal(mask, expected) and (int(mask.sum()) > 0) == bool(codes[image_id])
    item = ds[ids.index(positive[0])]
    assert isinstance(item, MaskedImage) and int(item.mask.sum()) > 0
    # A film that is not 1024 x 1024 cannot carry a 1024 x 1024 code.
    place(data_root / "dicom-cxr/acr-nema/CR-MONO1-10-chest",
          tmp_path / "small" / "dicom-images-train" / "s" / "r" / f"{positive[0]}.dcm")  # fmt: skip
    small = SIIMPneumothorax(tmp_path / "small", csv_file=table, with_masks=True)
    with pytest.raises(ImageReadError, match="does not match the mask size 1024x1024"):
        small[0]


def test_siim_masks_follow_a_film_the_cache_serves_smaller(data_root: Path, tmp_path: Path) -> None:
    """A real positive row on the real SIIM film, served at 256 and 300 px by the cache."""
    table = data_root / "label-tables" / "siim-pneumothorax-train-rle.csv.gz"
    with gzip.open(table, "rt", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    image_id = next(i for i, code in rows if code.strip() != "-1")
    codes = [code.strip() for i, code in rows if i == image_id]
    film = next((data_root / SIIM).rglob("*.dcm"))
    place(film, tmp_path / "dicom-images-train" / "study" / "series" / f"{image_id}.dcm")
    ds = SIIMPneumothorax(tmp_path, csv_file=table, with_masks=True)
    assert len(ds) == 1 and ds.labels == [1]
    native = torch.zeros(1024, 1024, dtype=torch.uint8)
    for code in codes:
        native |= decode_rle(code)[0]
    rows_at, cols_at = (v.double() for v in torch.nonzero(native, as_tuple=True))
    for side in (256, 300):
        cached = DecodedCache(ds, tmp_path / "cache", long_side=side, progress=False)
        assert cached.source_size(0) == (1024, 1024)
        item = cached[0]
        assert isinstance(item, MaskedImage) and item.mask.dtype == torch.uint8
        assert item.image.shape == item.mask.shape == (1, side, side)
        mask = item.mask[0]
        # Reference: sample the native mask at each served pixel's centre.
        at = np.floor((np.arange(side) + 0.5) * 1024 / side).astype(int)
        np.testing.assert_array_equal(mask.numpy(), native.numpy()[np.ix_(at, at)])
        frac, native_frac = float(mask.double().mean()), float(native.double().mean())
        assert abs(frac - native_frac) < 0.02 * native_frac, (side, frac, native_frac)
        scale = side / 1024  # pixel centres: native c -> (c + 0.5) * scale - 0.5
        r, c = (v.double() for v in torch.nonzero(mask, as_tuple=True))
        shift_r = float(r.mean()) - ((float(rows_at.mean()) + 0.5) * scale - 0.5)
        shift_c = float(c.mean()) - ((float(cols_at.mean()) + 0.5) * scale - 0.5)
        assert (shift_r**2 + shift_c**2) ** 0.5 < 1.0, (side, shift_r, shift_c)
    with pytest.raises(ImageReadError, match="neither the mask size 1024x1024"):
        ds.item_from(0, torch.zeros(1, 256, 200))  # not a reduction of the code's grid
    # A 440 x 440 film cannot carry a 1024 x 1024 code: the cache refuses it when opened
    # (its served 256 px image alone could pass for a reduced 1024 px film).
    small = tmp_path / "small"
    place(data_root / "dicom-cxr/acr-nema/CR-MONO1-10-chest",
          small / "dicom-images-train" / "s" / "r" / f"{image_id}.dcm")  # fmt: skip
    with pytest.raises(ImageReadError, match="film size 440x440 does not match"):
        DecodedCache(SIIMPneumothorax(small, csv_file=table, with_masks=True), tmp_path / "c2",
                     long_side=256, progress=False)  # fmt: skip
    unmasked = DecodedCache(SIIMPneumothorax(small, csv_file=table), tmp_path / "c2", 256)
    assert unmasked.built == 0 and isinstance(unmasked[0], LabeledImage)


# --------------------------------------------------------------------- VinDr-CXR


@pytest.fixture(scope="module")
def vindr_lines(data_root: Path) -> list[str]:
    with gzip.open(data_root / "label-tables" / "vinbigdata-train.csv.gz", "rt", newline="") as fh:
        return fh.readlines()


@pytest.fixture(scope="module")
def vindr_root(
    vindr_lines: list[str], data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The real rows of 150 films (every 100th film of the table), stand-in DICOM films."""
    root = tmp_path_factory.mktemp("vindr")
    rows = list(csv.DictReader(vindr_lines))
    chosen = set(list(dict.fromkeys(r["image_id"] for r in rows))[::100])
    lines = [vindr_lines[0]] + [ln for ln, r in zip(vindr_lines[1:], rows, strict=True)
                                if r["image_id"] in chosen]  # fmt: skip
    (root / "train.csv").write_text("".join(lines), encoding="utf-8")
    for image_id in chosen:
        place(data_root / NIH_DCM, root / "train" / f"{image_id}.dicom")
    return root


def _votes(root: Path) -> dict[str, dict[str, set[str]]]:
    marks: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    with (root / "train.csv").open(newline="") as fh:
        for r in csv.DictReader(fh):
            marks[r["image_id"]][r["class_name"]].add(r["rad_id"])
    return marks


@pytest.mark.parametrize(
    ("min_votes", "uncertain"), [(1, "negative"), (2, "negative"), (2, "ignore"), (3, "negative")]
)
def test_vindr_consensus_on_real_rows(vindr_root: Path, min_votes: int, uncertain: str) -> None:
    ds = VinDrCXR(vindr_root, min_votes=min_votes, uncertain=uncertain)  # type: ignore[arg-type]
    marks = _votes(vindr_root)
    assert len(ds) == len(marks) == 150 and ds.classes == [*VINDR_FINDINGS, "No finding"]
    split = Counter()
    for i, image_id in enumerate(ds.patient_ids):
        votes = [len(marks[image_id].get(c, ())) for c in VINDR_FINDINGS]
        expected = [1.0 if v >= min_votes else 0.0 if v == 0 or uncertain == "negative"
                    else float("nan") for v in votes]  # fmt: skip
        positive, unknown = 1.0 in expected, any(np.isnan(expected))
        expected.append(0.0 if positive else float("nan") if unknown else 1.0)
        torch.testing.assert_close(ds.targets[i], torch.tensor(expected), equal_nan=True)
        assert ds.votes[i, :-1].tolist() == votes and ds.readers[i] == sorted(
            {r for rs in marks[image_id].values() for r in rs})  # fmt: skip
        split.update(v for v in votes if v)
    assert split[1] > 0 and split[2] + split[3] > 0  # the rows hold disagreements and majorities


def test_vindr_boxes_item_and_errors(vindr_root: Path) -> None:
    ds = VinDrCXR(vindr_root)
    with (vindr_root / "train.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with_box = Counter(r["image_id"] for r in rows if r["x_min"])
    assert [len(b) for b in ds.boxes] == [with_box[i] for i in ds.patient_ids]
    assert all(len(r) == 3 for r in ds.readers)
    item = ds[0]
    assert isinstance(item, LabeledImage) and item.image.shape == (1, 1024, 1024)
    torch.testing.assert_close(item.label, ds.targets[0], equal_nan=True)
    h = harmonised_targets(ds)
    nodule_mass = ds.targets[:, ds.classes.index("Nodule/Mass")]
    assert bool((h[nodule_mass == 0, COL["Nodule"]] == 0).all())
    assert bool(h[nodule_mass == 1, COL["Nodule"]].isnan().all())
    assert torch.equal(h[:, COL["Cardiomegaly"]], ds.targets[:, ds.classes.index("Cardiomegaly")])
    with pytest.raises(ValueError, match="fewer readers"):
        VinDrCXR(vindr_root, min_votes=4)
    with pytest.raises(ValueError, match="min_votes must be an int >= 1"):
        VinDrCXR(vindr_root, min_votes=0)


def test_vindr_missing_film(vindr_root: Path, tmp_path: Path) -> None:
    place(vindr_root / "train.csv", tmp_path / "train.csv")
    for film in sorted((vindr_root / "train").iterdir())[1:]:
        place(film.resolve(), tmp_path / "train" / film.name)
    assert VinDrCXR(tmp_path).missing == 1
