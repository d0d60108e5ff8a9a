"""Bad input is refused before any training, naming the key, task, row or file; arms that
start from a file; the per-finding table of a multi-label task.

A study on a handful of real labelled films whose test split has one class (it used to
pretrain every arm and then die in DeLong's test naming no task), pretraining folders of
text files named ``.png``, weights files that do not fit the architecture, config typos.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from cxr_curriculum import Backbone
from cxr_curriculum.__main__ import main
from cxr_curriculum.config import ConfigError, load_study
from cxr_curriculum.config.data_sources import DATA_SOURCES
from cxr_curriculum.data import ImageReadError, bundled_sample_root
from cxr_curriculum.methods import METHODS
from cxr_curriculum.study import TASK_KINDS, Arm, CellKey, KermanyTask, Study, StudyResults
from cxr_curriculum.study.findings_table import finding_table
from cxr_curriculum.study.runner import pretrain

SAMPLE = bundled_sample_root()


def _toml(tmp_path: Path, body: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'output = "{tmp_path / "out"}"\nseeds = [0]\nbatch_size = 8\n'
                    f'image_size = 32\n{body}\n[evaluation]\nfractions = [1.0]\n'
                    'protocols = ["knn"]\n')  # fmt: skip
    return path


SIMCLR_ARM = '[[arms]]\nname = "simclr"\nstages = [{ method = "simclr", steps = 1 }]\n'
SAMPLE_TASK = '[[tasks]]\nkind = "kermany"\nroot = "sample"\n'


def test_a_one_class_test_split_stops_before_pretraining(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    films = sorted((SAMPLE / "train" / "PNEUMONIA").glob("*.jpeg"))[:4]
    normal = sorted((SAMPLE / "train" / "NORMAL").glob("*.jpeg"))[:2]
    with (tmp_path / "films.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "patient", "Pneumonia", "split"])
        w.writerows([[f, f"p{k}", 1, "test" if k < 2 else "train"] for k, f in enumerate(films)])
        w.writerows([[f, f"n{k}", 0, "train"] for k, f in enumerate(normal)])
    task = (f'[[tasks]]\nkind = "table"\nname = "films"\ntable = "{tmp_path / "films.csv"}"\n'
            'path_column = "path"\npatient_column = "patient"\nlabel_columns = ["Pneumonia"]\n'
            'split_column = "split"\n')  # fmt: skip
    path = _toml(tmp_path, f'[data]\nsource = "sample"\n{SIMCLR_ARM}{task}')
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "task 'films': its test set has only class 'Pneumonia'" in err
    assert not (tmp_path / "out" / "pretrain").exists()  # nothing trained
    with pytest.raises(ValueError, match="task 'films': its test set has only class"):
        load_study(path).run()
    assert not (tmp_path / "out" / "pretrain").exists()


def test_a_table_split_with_patients_on_both_sides_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    films = sorted((SAMPLE / "train").rglob("*.jpeg"))[:8]
    with (tmp_path / "films.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "patient", "Pneumonia", "split"])
        w.writerows([[f, f"p{k % 3}", int("PNEUMONIA" in f.parts), "test" if k % 2 else "train"]
                     for k, f in enumerate(films)])  # fmt: skip
    task = (f'[[tasks]]\nkind = "table"\nname = "films"\ntable = "{tmp_path / "films.csv"}"\n'
            'path_column = "path"\npatient_column = "patient"\nlabel_columns = ["Pneumonia"]\n'
            'split_column = "split"\n')  # fmt: skip
    path = _toml(tmp_path, f'[data]\nsource = "sample"\n{SIMCLR_ARM}{task}')
    assert main(["study", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "column 'split' puts 3 patients in both 'train' and 'test'" in err
    assert "['p0', 'p1', 'p2']" in err
    same = _toml(tmp_path, f'[data]\nsource = "sample"\n{SIMCLR_ARM}{task}test_split = "train"\n')
    assert main(["study", str(same), "--check"]) == 2
    assert "train_split and test_split are both 'train'" in capsys.readouterr().err


def test_every_lung_mask_of_a_task_is_checked(data_root: Path, tmp_path: Path) -> None:
    """Masks after the first that are text files named ``.png`` fail the check, not scoring."""
    covid = data_root / "covid-chestxray"
    v7 = sorted((covid / "v7-lung-masks").glob("*.png"))[:1]
    films = [
        f for c in ("NORMAL", "PNEUMONIA") for f in sorted((SAMPLE / "train" / c).glob("*"))[:4]
    ]
    (tmp_path / "masks").mkdir()
    rows = []
    for k, film in enumerate(films):
        mask = tmp_path / "masks" / f"m{k}.png"
        if k == 0:
            mask.write_bytes(v7[0].read_bytes())
        else:
            mask.write_text("not an image")
        rows.append([film, f"p{k}", int("PNEUMONIA" in film.parts), f"masks/m{k}.png"])
    with (tmp_path / "t.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["path", "patient", "y", "mask"], *rows])
    task = TASK_KINDS["table"](tmp_path / "t.csv", path_column="path", patient_column="patient",
                               label_columns=["y"], mask_column="mask", test_share=0.5)  # fmt: skip
    with pytest.raises(ImageReadError, match=r"lung mask is not a PNG or JPEG image"):
        task.check()


def test_pretraining_folders_that_hold_no_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    for k in range(3):
        (texts / f"film{k}.png").write_text("not an image\n")
    path = _toml(
        tmp_path, f'[data]\nsource = "folder"\nroot = "{texts}"\n{SIMCLR_ARM}{SAMPLE_TASK}'
    )
    assert main(["study", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "film0.png" in err and "not a PNG, JPEG or DICOM image" in err
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("no films here\n")
    path = _toml(
        tmp_path, f'[data]\nsource = "folder"\nroot = "{notes}"\n{SIMCLR_ARM}{SAMPLE_TASK}'
    )
    assert main(["study", str(path), "--check"]) == 2
    assert "the pretraining pool holds no images" in capsys.readouterr().err


def test_arms_that_start_from_a_file(tmp_path: Path) -> None:
    torch.manual_seed(5)
    saved = Backbone("resnet18")
    weights = tmp_path / "backbone.safetensors"
    saved.save(weights)
    arm = Arm("from-file", start=f"file:{weights}")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert arm.config(8, 32)["start_sha256"] == digest
    assert Arm("scratch").config(8, 32) == {"name": "scratch", "start": "random", "stages": []}
    study = Study([Arm("scratch"), arm], [0], [KermanyTask(SAMPLE)], tmp_path / "s",
                  image_size=32, protocols=["knn"], fractions=[1.0])  # fmt: skip
    key = next(k for k in study.cells() if k.arm == "from-file")
    assert study.settings(key)["arm"]["start_sha256"] == digest
    assert any("starts from" in line for line in study.check())
    backbone, _ = pretrain(arm, 0, arch="resnet18", data=None, batch_size=8, image_size=32,
                           checkpoint_dir=tmp_path / "ckpt")  # fmt: skip
    for name, value in saved.state_dict().items():
        assert torch.equal(backbone.state_dict()[name], value)
    # tensors that do not fit: another architecture's file, a foreign state dict
    other = tmp_path / "resnet34.safetensors"
    Backbone("resnet34").save(other)
    bad = tmp_path / "bad.pt"
    torch.save({"conv1.weight": torch.zeros(8, 1, 3, 3)}, bad)
    for file, message in ((other, "sidecar says it is a 'resnet34' backbone"), (bad, "bad.pt")):
        study = Study([Arm("f", start=f"file:{file}")], [0], [KermanyTask(SAMPLE)], tmp_path / "b")
        with pytest.raises(ValueError, match=rf"arm 'f': .*{message}"):
            study.check()
    path = _toml(
        tmp_path, f'[[arms]]\nname = "f"\nstart = "file:{tmp_path / "no.pt"}"\n{SAMPLE_TASK}'
    )
    with pytest.raises(ConfigError, match=r"arms\[0\]\.start: file '.*no\.pt' not found"):
        load_study(path)
    with pytest.raises(ConfigError, match=r"arms\[0\]\.start: expected one of \['random', "
                       r"'imagenet', 'file:PATH'\]"):  # fmt: skip
        load_study(_toml(tmp_path, f'[[arms]]\nname = "f"\nstart = "imagenet21k"\n{SAMPLE_TASK}'))


def test_a_file_start_keeps_the_input_norm_its_sidecar_records(tmp_path: Path) -> None:
    # e.g. a curriculum fitted on an ImageNet ViT (timm's (0.5, 0.5)) used as a start
    from cxr_curriculum.study.starts import start_backbone

    for norm in ((0.5, 0.5), None):
        weights = tmp_path / f"{norm is None}.safetensors"
        Backbone("resnet18", input_norm=norm).save(weights)
        assert start_backbone(Arm("f", start=f"file:{weights}"), "resnet18").input_norm == norm


def test_config_errors_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arm = '[[arms]]\nname = "scratch"\n'
    cases = [
        ('kindd = "kermany"', r"tasks\[0\]\.kindd: unknown key; did you mean 'kind'\?"),
        ('kind = "covid"\nroot = "/nowhere/covid"', r"tasks\[0\]\.root: /nowhere/covid not found"),
        ('kind = "table"\ntable = "t.csv"', r"tasks\[0\]\.path_column: required key is missing"),
        ('kind = "table"\ntable = "t.csv"\npath_column = "p"\npatient_column = "q"\n'
         'label_columns = ["y"]', r"tasks\[0\]\.table: t\.csv not found"),
    ]  # fmt: skip
    for body, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_study(_toml(tmp_path, f"{arm}[[tasks]]\n{body}\n"))
    monkeypatch.setenv("CXR_DATA_ROOT", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.root: not set, and the default folder"):
        load_study(_toml(tmp_path, arm + '[[tasks]]\nkind = "rsna"\n'))
    # every allowed list is complete
    with pytest.raises(ConfigError) as kind_error:
        load_study(_toml(tmp_path, arm + '[[tasks]]\nkind = "kermanny"\n'))
    assert all(
        repr(k) in str(kind_error.value) for k in [*TASK_KINDS, "python:package.module:Class"]
    )
    with pytest.raises(ConfigError) as source_error:
        load_study(_toml(tmp_path, f'[data]\nsource = "pol"\n{arm}{SAMPLE_TASK}'))
    assert all(repr(s) in str(source_error.value) for s in DATA_SOURCES)
    with pytest.raises(ConfigError) as method_error:
        stages = '[[arms]]\nname = "x"\nstages = [{ method = "simclrr", steps = 1 }]\n'
        load_study(_toml(tmp_path, f'[data]\nsource = "sample"\n{stages}{SAMPLE_TASK}'))
    assert all(repr(m) in str(method_error.value) for m in METHODS)


def test_study_settings_that_would_fail_at_run_time_fail_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arms = f'[data]\nsource = "sample"\n[[arms]]\nname = "scratch"\n{SIMCLR_ARM}{SAMPLE_TASK}'
    for top, message in [
        ("threads = 0", "threads: expected an integer >= 1, got 0"),
        ("threads = -2", "threads: expected an integer >= 1, got -2"),
        ("workers = -1", "workers: expected an integer >= 0, got -1"),
        ('device = "blah"', "device: Expected one of cpu, cuda"),
    ]:
        path = _toml(tmp_path, f"{top}\n{arms}")  # top-level keys come first
        assert main(["study", str(path), "--check"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: {message}") and err.count("\n") == 1
    # a Stage is built only when its arm trains: its settings are checked when read
    for setting, message in [
        ("lr = -0.1", "lr must be a finite number >= 0 or None; got -0.1"),
        ('name = "a/b"', "name must be a non-empty string without"),
        ("num_workers = -1", "num_workers must be >= 0; got -1"),
        ('divergence = "x"', "divergence: unknown key"),  # a file cannot give a rule
    ]:
        arm = SIMCLR_ARM.replace("steps = 1 }", f"steps = 1, {setting} }}")
        path = _toml(tmp_path, f'[data]\nsource = "sample"\n{arm}{SAMPLE_TASK}')
        assert main(["study", str(path), "--check"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}: arms[0].stages[0]") and message in err


@pytest.mark.realdata
def test_per_finding_table_of_a_multilabel_task(data_root: Path, tmp_path: Path) -> None:
    from cxr_curriculum.study import NIHFindingsTask

    task = NIHFindingsTask(test_share=0.3, min_positives=10)
    study = Study([Arm("scratch")], [0, 1], [task], tmp_path / "s", fractions=[1.0],
                  protocols=["knn"])  # fmt: skip
    targets = task.test_targets
    g = torch.Generator().manual_seed(0)
    cells = {}
    for seed in (0, 1):
        scores = targets.nan_to_num(0) + torch.randn(targets.shape, generator=g)
        value = float(task.metric_value(scores.double().flatten()))
        cells[CellKey(seed, "scratch", "nih", 1.0, "knn")] = {
            "scores": scores.flatten().tolist(),
            "value": value,
            "metric": task.metric,
        }
    results = StudyResults(study, cells, n_resamples=200)
    rows = finding_table(results)
    assert [r["finding"] for r in rows] == task.finding_names and len(rows) >= 5
    for r, column in zip(rows, task.findings, strict=True):
        known = ~targets[:, column].isnan()
        per_seed = []
        for seed in (0, 1):
            s = torch.tensor(cells[CellKey(seed, "scratch", "nih", 1.0, "knn")]["scores"])
            s = s.reshape(targets.shape)[known, column]
            per_seed.append(roc_auc_score(targets[known, column].numpy(), s.numpy()))
        assert math.isclose(r["estimate"], sum(per_seed) / 2, abs_tol=1e-6)
        assert r["low"] <= r["estimate"] <= r["high"]
        assert r["positives"] == int((targets[:, column] == 1).sum())
    data = results.write(tmp_path / "report", figures=False)
    assert data["findings"] == rows
    report = (tmp_path / "report" / "report.md").read_text()
    assert (
        "## Per-finding AUROC" in report
        and f"| nih | 1 | knn | scratch | {rows[0]['finding']} |" in report
    )
