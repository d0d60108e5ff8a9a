"""Label tables (csv / gz / zip) and the harmonised finding vocabulary.

The pooling test uses the real NIH subset with its real rows, and real CheXpert rows
with real stand-in JPEGs (Kermany) placed at their paths (CheXpert's images cannot be
redistributed). Unknown labels must stay unknown (NaN) after pooling, never negative.
"""

from __future__ import annotations

import gzip
import math
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _standins import place
from cxr_curriculum.data import (
    CANONICAL_FINDINGS,
    CHEXPERT_FINDING_MAP,
    NIH_FINDING_MAP,
    NIH_FINDINGS,
    PADCHEST_FINDING_MAP,
    RSNA_FINDING_MAP,
    SIIM_FINDING_MAP,
    VINDR_FINDING_MAP,
    CheXpert,
    FindingsPool,
    KermanyPneumonia,
    NIHChestXray14,
    bundled_sample_root,
    find_table,
    harmonised_targets,
    map_findings,
    patient_split,
    read_table,
)

NAN = math.nan
TEXT = "ImageId, EncodedPixels\n1.2.3,-1\n1.2.4, 5 2 10 3\n"


# ------------------------------------------------------------------------ tables


def test_read_table_plain_gzip_zip(tmp_path: Path) -> None:
    plain = tmp_path / "train-rle.csv"
    plain.write_text(TEXT, encoding="utf-8")
    with gzip.open(tmp_path / "t.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write(TEXT)
    with zipfile.ZipFile(tmp_path / "t.csv.zip", "w") as zf:
        zf.writestr("stage_2/t.csv", TEXT)
    (tmp_path / "no_suffix").write_bytes((tmp_path / "t.csv.gz").read_bytes())
    expected = [{"ImageId": "1.2.3", "EncodedPixels": "-1"},
                {"ImageId": "1.2.4", "EncodedPixels": " 5 2 10 3"}]  # fmt: skip
    for name in ("train-rle.csv", "t.csv.gz", "t.csv.zip", "no_suffix"):
        assert read_table(str(tmp_path / name), columns=("ImageId", "EncodedPixels")) == expected
    assert find_table(tmp_path, ["x.csv", "t.csv"]) == tmp_path / "t.csv.gz"
    assert find_table(tmp_path, "absent.csv") is None


def test_read_table_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"labels.csv lacks columns \['Target'\]"):
        read_table(path, ("a", "Target"))
    path.write_text("a,b\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: more fields than columns"):
        read_table(path)
    (tmp_path / "two.zip").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as zf:
        zf.writestr("a.csv", "x\n")
        zf.writestr("b.csv", "x\n")
    with pytest.raises(ValueError, match=r"expected one \.csv inside the zip"):
        read_table(tmp_path / "two.zip")
    (tmp_path / "bad.csv").write_bytes(b"\xff\xfe\x00\x81 binary")
    with pytest.raises(ValueError, match="not a readable CSV table"):
        read_table(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_table(tmp_path / "absent.csv")


# ---------------------------------------------------------------------- mapping


def test_relations_same_narrower_broader() -> None:
    mapping = {
        "Effusion": (("Pleural Effusion", "same"),),
        "laminar atelectasis": (("Atelectasis", "narrower"),),
        "Nodule/Mass": (("Nodule", "broader"), ("Mass", "broader")),
    }
    t = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [NAN, NAN, NAN]])
    out = map_findings(t, list(mapping), mapping, ["Pleural Effusion", "Atelectasis", "Nodule",
                                                    "Mass", "Fracture"])  # fmt: skip
    expected = torch.tensor([[1.0, 1.0, NAN, NAN, NAN], [0.0, NAN, 0.0, 0.0, NAN], [NAN] * 5])
    torch.testing.assert_close(out, expected, equal_nan=True)


def test_several_sources_positive_wins_then_negative() -> None:
    mapping = {"a": (("Atelectasis", "same"),), "b": (("Atelectasis", "narrower"),)}
    t = torch.tensor([[0.0, 1.0], [0.0, 0.0], [NAN, 0.0], [NAN, 1.0]])
    out = map_findings(t, ["a", "b"], mapping, ["Atelectasis"])
    torch.testing.assert_close(out[:, 0], torch.tensor([1.0, 0.0, NAN, 1.0]), equal_nan=True)


def test_mapping_errors() -> None:
    with pytest.raises(ValueError, match="only 0, 1 or NaN"):
        map_findings(torch.tensor([[-1.0]]), ["Edema"], CHEXPERT_FINDING_MAP)
    with pytest.raises(ValueError, match="vocabulary must be distinct names"):
        map_findings(torch.zeros(1, 1), ["Edema"], CHEXPERT_FINDING_MAP, ["Oedema"])
    with pytest.raises(ValueError, match=r"targets must be \(N, 2\)"):
        map_findings(torch.zeros(1, 3), ["Edema", "Mass"], CHEXPERT_FINDING_MAP)
    with pytest.raises(ValueError, match="declares no finding_map"):
        harmonised_targets(KermanyPneumonia(bundled_sample_root()))


def test_every_map_targets_canonical_names() -> None:
    maps = (NIH_FINDING_MAP, CHEXPERT_FINDING_MAP, VINDR_FINDING_MAP, PADCHEST_FINDING_MAP,
            RSNA_FINDING_MAP, SIIM_FINDING_MAP)  # fmt: skip
    for mapping in maps:
        for pairs in mapping.values():
            for name, relation in pairs:
                assert name in CANONICAL_FINDINGS and relation in ("same", "narrower", "broader")
    assert set(NIH_FINDING_MAP) == set(NIH_FINDINGS)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 1.0, NAN]), min_size=14, max_size=14),
                min_size=1, max_size=12))  # fmt: skip
def test_nih_mapping_never_invents_a_negative(rows: list[list[float]]) -> None:
    t = torch.tensor(rows)
    out = map_findings(t, list(NIH_FINDINGS), NIH_FINDING_MAP)
    col = {c: k for k, c in enumerate(CANONICAL_FINDINGS)}
    for j, name in enumerate(NIH_FINDINGS):
        (canonical, _), *_ = NIH_FINDING_MAP[name]
        torch.testing.assert_close(out[:, col[canonical]], t[:, j], equal_nan=True)
    for name in ("Fracture", "Support Devices", "Lung Opacity", "No Finding"):
        assert out[:, col[name]].isnan().all()
    # Lung Lesion is only ever made positive (narrower), never negative.
    lesion = out[:, col["Lung Lesion"]]
    assert not (lesion == 0).any()


# ---------------------------------------------------------------------- pooling


@pytest.mark.realdata
def test_pooling_nih_and_chexpert_keeps_unknowns(data_root: Path, tmp_path: Path) -> None:
    tables = data_root / "label-tables"
    nih = NIHChestXray14(csv_file=tables / "Data_Entry_2017_v2020.csv.gz")
    with gzip.open(tables / "chexpert_train.csv.gz", "rt", newline="") as fh:
        lines = [next(fh) for _ in range(121)]  # header + the first 120 real rows
    (tmp_path / "train.csv").write_text("".join(lines), encoding="utf-8")
    jpegs = sorted((data_root / "kermany-pneumonia" / "test" / "PNEUMONIA").glob("*.jpeg"))
    for k, line in enumerate(lines[1:]):
        place(jpegs[k], tmp_path / line.split(",")[0])
    chex = CheXpert(tmp_path)
    pool = FindingsPool(nih, chex)
    assert len(pool) == 1000 + 120 and pool.classes == list(CANONICAL_FINDINGS)
    col = {c: k for k, c in enumerate(CANONICAL_FINDINGS)}
    on_nih, on_chex = pool.targets[:1000], pool.targets[1000:]
    # What a dataset does not label is unknown, never negative.
    for name in ("Lung Opacity", "Fracture", "Support Devices", "Enlarged Cardiomediastinum",
                 "Pleural Other", "No Finding", "Aortic Enlargement"):  # fmt: skip
        assert on_nih[:, col[name]].isnan().all(), name
    for name in ("Infiltration", "Emphysema", "Fibrosis", "Hernia", "Pleural Thickening"):
        assert on_chex[:, col[name]].isnan().all(), name
    # Shared findings carry their source values, blanks (and ignored -1) included.
    nih_effusion = nih.targets[:, nih.classes.index("Effusion")]
    torch.testing.assert_close(on_nih[:, col["Pleural Effusion"]], nih_effusion)
    for name in ("Pleural Effusion", "Edema", "Pneumothorax", "Cardiomegaly"):
        src = chex.targets[:, chex.classes.index(name)]
        torch.testing.assert_close(on_chex[:, col[name]], src, equal_nan=True)
    assert on_chex[:, col["Edema"]].isnan().any()  # blanks among the real rows
    # A negative CheXpert "Lung Lesion" rules out a nodule; a positive one says nothing.
    lesion = chex.targets[:, chex.classes.index("Lung Lesion")]
    nodule = on_chex[:, col["Nodule"]]
    assert bool((nodule[lesion == 0] == 0).all()) and bool(nodule[lesion != 0].isnan().all())
    assert pool.patient_ids[0].startswith("NIHChestXray14:")
    assert pool.patient_ids[-1].startswith("CheXpert:patient")
    assert pool.sources == [0] * 1000 + [1] * 120
    item = pool[1000]
    torch.testing.assert_close(item.label, on_chex[0], equal_nan=True)
    train, test = patient_split(pool, (0.8, 0.2), seed=0)
    assert not {pool.patient_ids[i] for i in train.indices} & {
        pool.patient_ids[i] for i in test.indices
    }
    torch.testing.assert_close(harmonised_targets(test), pool.targets[test.indices], equal_nan=True)
    with pytest.raises(ValueError, match="more than one dataset"):
        FindingsPool(nih, nih)
