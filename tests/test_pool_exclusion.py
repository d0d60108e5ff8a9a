"""Test patients kept out of the pretraining pool: by patient id within one archive, by file
otherwise; counted per task; a study pretrains on what is left.

Real rows and images of the covid collection and the Kermany folder. Expected counts are
recomputed with the ``csv`` module from ``metadata.csv``, never with the code under test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from _standins import place
from cxr_curriculum.data import (
    CovidChestXray,
    ImagePool,
    KermanyPneumonia,
    LabelTable,
    UnlabeledImages,
    exclude_test_images,
    image_records,
)
from cxr_curriculum.data.exclusion import file_key
from cxr_curriculum.methods import Rotation
from cxr_curriculum.study import Arm, ArmStage, Study, build_task

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def covid_test(data_root: Path) -> tuple[object, list[str]]:
    """The covid task's test set and its file names."""
    task = build_task("covid", root=data_root / "covid-chestxray", test_share=0.4)
    test = task.datasets[1]
    return test, [Path(r.file).name for r in image_records(test)]


def _metadata(data_root: Path) -> list[dict[str, str]]:
    with (data_root / "covid-chestxray" / "metadata.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_archive_by_patient_other_archives_by_file(
    data_root: Path, covid_test: tuple[object, list[str]]
) -> None:
    test, names = covid_test
    rows = _metadata(data_root)
    patient_of = {r["filename"]: r["patientid"] for r in rows}
    test_patients = {patient_of[n] for n in names}
    # every X-ray of a test patient, whatever its view or finding (todo rows too)
    expected_patient = sum(
        r["patientid"] in test_patients and r["filename"] not in names for r in rows
    )
    covid_all = CovidChestXray(data_root / "covid-chestxray")
    kermany = KermanyPneumonia(data_root / "kermany-pneumonia", split="test")
    pool = ImagePool(covid_all, kermany)
    kept, counts = exclude_test_images(pool, {"covid": test})
    e = counts["covid"]
    assert (e.by_file, e.by_patient) == (len(names), expected_patient)
    assert e.removed == e.by_file + e.by_patient and e.by_patient >= 1
    assert len(kept) == len(pool) - e.removed  # type: ignore[arg-type]
    left = {Path(r.file).name for r in image_records(kept)}
    assert not left & set(names)
    assert not any(patient_of.get(n) in test_patients for n in left)
    # A folder of the same images has no patient ids: only the test files themselves go.
    folder = UnlabeledImages(data_root / "covid-chestxray" / "images")
    kept_folder, by_folder = exclude_test_images(folder, {"covid": test})
    assert (by_folder["covid"].by_file, by_folder["covid"].by_patient) == (len(names), 0)
    assert len(kept_folder) == len(folder) - len(names)  # type: ignore[arg-type]


def test_ids_of_another_archive_never_match(
    data_root: Path, covid_test: tuple[object, list[str]], tmp_path: Path
) -> None:
    """A table whose patient ids equal the covid test patients' ids is another archive."""
    test, names = covid_test
    rows = _metadata(data_root)
    patient_of = {r["filename"]: r["patientid"] for r in rows}
    films = sorted((data_root / "kermany-pneumonia" / "test" / "NORMAL").glob("*.jpeg"))[:5]
    table = tmp_path / "other.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "patient"])
        w.writerows([[f, patient_of[n]] for f, n in zip(films, names, strict=False)])
    other = LabelTable(table, path_column="path", patient_column="patient")
    kept, counts = exclude_test_images(other, {"covid": test})
    assert kept is other and counts["covid"].removed == 0  # nothing removed: same object
    assert all(r.patient is not None for r in image_records(other))
    assert {r.file for r in image_records(other)} == {file_key(f) for f in films}


def test_study_pretrains_on_the_pool_without_test_patients(data_root: Path, tmp_path: Path) -> None:
    task = build_task("covid", root=data_root / "covid-chestxray", test_share=0.4)
    pool = CovidChestXray(data_root / "covid-chestxray")
    arms = [Arm("scratch"), Arm("rot", [ArmStage(Rotation(), steps=1)])]
    study = Study(arms, [0], [task], tmp_path, pretrain_data=pool, progress=False)
    removed = study.pool_exclusion["covid"].removed
    assert removed > 0 and len(study.pretrain_data) == len(pool) - removed  # type: ignore[arg-type]
    off = Study(arms, [0], [task], tmp_path, pretrain_data=pool,
                exclude_test_patients=False)  # fmt: skip
    assert off.pretrain_data is pool and off.pool_exclusion["covid"].removed == removed
    by_file = off.pool_exclusion["covid"].by_file
    assert by_file > 0 and off.pretraining_overlap() == {"covid": by_file}
    assert study.pretraining_overlap() == {"covid": 0}
    key = study.cells()[-1]
    assert study.settings(key)["pretrain"]["data"] != off.settings(key)["pretrain"]["data"]
    lines = study.check()
    assert any(f"{removed} images of its test patients removed" in line for line in lines)


def test_files_of_one_name_in_other_folders_are_not_test_images(
    data_root: Path, tmp_path: Path
) -> None:
    """CheXpert-like layouts repeat names (``patientN/study1/view1_frontal``) across patients."""
    films = sorted((data_root / "kermany-pneumonia" / "test").rglob("*.jpeg"))[:12]
    rows = []
    for i, film in enumerate(films):
        rel = f"films/patient{i:02d}/study1/view1_frontal.jpeg"
        place(film, tmp_path / rel)
        rows.append([rel, f"patient{i:02d}", int("PNEUMONIA" in film.parts)])
        place(film, tmp_path / "pool" / f"patient{50 + i}" / "study1" / "view1_frontal.jpeg")
    with (tmp_path / "t.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["file", "p", "y"], *rows])
    task = build_task("table", table=tmp_path / "t.csv", path_column="file", patient_column="p",
                      label_columns=["y"], test_share=0.5)  # fmt: skip
    arms = [Arm("scratch"), Arm("rot", [ArmStage(Rotation(), steps=1)])]
    study = Study(arms, [0], [task], tmp_path / "out", progress=False,
                  pretrain_data=UnlabeledImages(tmp_path / "pool"))  # fmt: skip
    assert study.pool_exclusion["table"].removed == 0
    assert study.pretraining_overlap() == {"table": 0}  # by name it was every test image
