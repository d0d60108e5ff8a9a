"""The paper's task as a study task: Covid-19 vs the other findings of the ieee8023
collection, with lung attention against the V7 masks (drawn by people) and against the
bundled segmenter's masks, both stored per cell and both reported.

Real rows, images and V7 masks of ``covid-chestxray/``. Class and patient counts are
recomputed with the ``csv`` module; masks are read independently with PIL.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _studies import one_task_study
from cxr_curriculum.data import dataset_patient_ids
from cxr_curriculum.study import Arm, Protocols, Study, build_task
from cxr_curriculum.study.runner import TASK_MASK_PREFIX, AttentionInputs

pytestmark = [pytest.mark.realdata, pytest.mark.usefixtures("one_thread")]

FRONTAL = {"PA", "AP", "AP Supine", "AP semi erect", "AP Erect"}


def test_covid_task_from_a_study_file(data_root: Path, tmp_path: Path) -> None:
    covid = f'kind = "covid"\nroot = "{data_root / "covid-chestxray"}"'
    task = one_task_study(tmp_path, f"{covid}\ntest_share = 0.4\nsplit_seed = 3").tasks[0]
    with (data_root / "covid-chestxray" / "metadata.csv").open(newline="") as fh:
        labelled = [r for r in csv.DictReader(fh) if r["finding"] not in ("todo", "Unknown")]
    rows = [r for r in labelled if r["view"] in FRONTAL]
    covid = [r for r in rows if r["finding"].startswith("COVID-19")]
    assert (len(rows), len({r["patientid"] for r in rows})) == (411, 240)
    assert (len(covid), len({r["patientid"] for r in covid})) == (351, 215)
    info = task.check()
    assert info["n_train"] + info["n_test"] == len(rows)
    train, test = task.datasets
    train_ids = set(dataset_patient_ids(train))
    assert not train_ids & set(task.test_groups)  # a patient-level split
    names = [Path(f).name for f in test.dataset.files]  # type: ignore[attr-defined]
    test_names = {names[i] for i in test.indices}  # type: ignore[attr-defined]
    expected = Counter(
        "COVID-19" if r["finding"].startswith("COVID-19") else "other"
        for r in rows if r["filename"] in test_names
    )  # fmt: skip
    assert info["test_classes"] == dict(expected) and min(expected.values()) >= 10
    masks = {p.name for p in (data_root / "covid-chestxray" / "v7-lung-masks").iterdir()}
    assert info["test_masks"] == len(test_names & masks)
    config = task.config()
    assert config["source"]["split"] == {"test_share": 0.4, "seed": 3}
    assert config["mask_source"].startswith("V7")
    other = build_task("covid", root=data_root / "covid-chestxray", test_share=0.4)
    assert other.config() != config  # another split seed: a study refuses to resume
    with pytest.raises(ValueError, match=r"views must be a list of view names, e.g. \['PA'\]"):
        build_task("covid", root=data_root / "covid-chestxray", views="PA")  # not ('P', 'A')


def test_v7_masks_are_the_task_masks(data_root: Path) -> None:
    task = build_task("covid", root=data_root / "covid-chestxray", test_share=0.4, stride=4)
    files = task.test_mask_files()
    assert files is not None
    have = [i for i, f in enumerate(files) if f is not None]
    masks = task.test_lung_masks(have[:3], 32)
    for k, i in enumerate(have[:3]):
        raw = np.asarray(Image.open(files[i]).convert("L"))  # type: ignore[arg-type]
        lung = torch.from_numpy((raw >= 128).astype(np.float32))[None, None]
        small = torch.nn.functional.interpolate(lung, size=(32, 32), mode="nearest")[0, 0] > 0
        assert torch.equal(masks[k], small) and 0.1 < float(small.float().mean()) < 0.9


@pytest.mark.slow
def test_attention_against_v7_and_predicted_masks(data_root: Path, tmp_path: Path) -> None:
    task = build_task("covid", root=data_root / "covid-chestxray", test_share=0.4, stride=3)
    settings = Protocols(finetune_steps=1, finetune_batch_size=8, attention_images=4)
    study = Study([Arm("scratch")], [0, 1], [task], tmp_path / "s", image_size=64,
                  fractions=[1.0], protocols=["fine_tune"], protocol_settings=settings,
                  progress=False)  # fmt: skip
    results = study.run()
    cell = json.loads((study.output / study.cells()[0].relpath).read_text())
    att = cell["attention"]
    files = task.test_mask_files()
    assert files is not None and all(files[i] is not None for i in att["image_index"])
    for metric in ("energy_in_mask", "lift", "pointing_game"):
        assert len(att[metric]) == len(att[TASK_MASK_PREFIX + metric]) == 4
    assert att["energy_in_mask"] != att[TASK_MASK_PREFIX + "energy_in_mask"]  # other masks
    rows = results.attention()
    assert {r["masks"] for r in rows} == {"predicted", task.mask_source}
    data = json.loads((study.output / "results.json").read_text())
    assert {r["masks"] for r in data["attention"]} == {"predicted", task.mask_source}
    report = (study.output / "report.md").read_text()
    assert "| covid | 1 | scratch | V7 Labs lung masks (drawn by people) |" in report
    assert "| covid | 1 | scratch | predicted |" in report
    inputs = AttentionInputs.build(task, 4, 64, _Segmenter())
    assert inputs.task_masks is not None and inputs.index == att["image_index"]


class _Segmenter:
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.ones(images.shape[0], 2, *images.shape[-2:], dtype=torch.bool)
