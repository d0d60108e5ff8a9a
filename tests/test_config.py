"""Config files: every example validates, errors name the key, a run matches the Python API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cxr_curriculum import Backbone, Curriculum, Stage
from cxr_curriculum.__main__ import main
from cxr_curriculum.config import ConfigError, load_run, load_study, read_toml
from cxr_curriculum.config.keys import Table
from cxr_curriculum.config.study_file import study_from_table
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.methods import Rotation, SimCLR

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
CONFIGS = sorted([*(BENCH / "configs").glob("*.toml"), *(BENCH / "gpu").glob("*.toml")])


def _needs_real_data(path: Path) -> bool:
    return 'source = "pool"' in path.read_text() or 'kind = "kermany"\n' in path.read_text()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, id=p.name, marks=[pytest.mark.realdata] if _needs_real_data(p) else [])
        for p in CONFIGS
    ],
)
def test_every_example_config_validates(
    path: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if _needs_real_data(path):
        request.getfixturevalue("data_root")  # skips with a reason without the shared data
    assert len(CONFIGS) >= 4, "benchmarks/configs/ and benchmarks/gpu/ hold the examples"
    data = read_toml(path)
    if "stages" in data and "arms" not in data:
        run = load_run(path)
        assert len(run.curriculum) >= 1
        return
    if "cache" in path.read_text():
        # every key is checked as written, but the decoded caches (minutes to build on
        # the whole pool) are built in a temporary folder from every 500th image
        for table in [data["data"], *data["tasks"]]:
            if "cache" in table:
                table.update(cache=str(tmp_path / "cache"), stride=500)
        study = study_from_table(Table(data))
    else:
        study = load_study(path)
    assert study.cells() and study.budget[0] >= 0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


RUN = """
output = "{out}"
seed = 3
[data]
source = "sample"
[defaults]
batch_size = 8
image_size = 32
[[stages]]
method = "rotation"
steps = 1
[[stages]]
method = {{ name = "simclr", temperature = 0.2 }}
steps = 1
lr = 0.05
"""


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("temperature = 0.2", "temperature = 'x'"),
            r"stages\[1\]\.method\.temperature: expected a number, got 'x'",
        ),
        (
            ("steps = 1\nlr", "setps = 1\nlr"),
            r"stages\[1\]\.setps: unknown key; did you mean 'steps'\?",
        ),
        (('"rotation"', '"rotaton"'), r"stages\[0\]\.method\.name: expected one of .*'rotation'"),
        (("lr = 0.05", "lr = -1.0"), r"stages\[1\]: lr must be a finite number >= 0"),
        (("seed = 3", "seed = 3\nsed = 4"), r"sed: unknown key; did you mean 'seed'\?"),
        (('source = "sample"', 'source = "smaple"'), r"data\.source: expected one of"),
        (("batch_size = 8", "batch_size = 8.5"), r"defaults\.batch_size: expected an integer"),
        # every Stage setting and method hyper-parameter is offered, not only those set
        (
            ("batch_size = 8", "bach_size = 8"),
            r"defaults\.bach_size: unknown key; did you mean 'batch_size'\?",
        ),
        (("lr = 0.05", "lrr = 0.05"), r"stages\[1\]\.lrr: unknown key; did you mean 'lr'\?"),
        (("seed = 3", "seed = 3\nthreads = 0"), r"threads: expected an integer >= 1, got 0"),
        (("image_size = 32", "image_size = 32\nlr = -1.0"), r"defaults\.lr: lr must be a finite"),
        (("lr = 0.05", 'lr = 0.05\n[curriculum]\ndevice = "blah"'), r"curriculum\.device: .*blah"),
        (("seed = 3", 'seed = 3\narch = "resnet99"'), r"arch: unknown backbone 'resnet99'"),
        (
            ("temperature = 0.2", "temprature = 0.2"),
            r"stages\[1\]\.method\.temprature: unknown key; did you mean 'temperature'\?",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = RUN.format(out=tmp_path / "out").replace(*edit)
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_run(path)
    assert str(path) in str(info.value)


def test_invalid_toml_and_cli_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "seed = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_run(path)
    assert main(["pretrain", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    good = _write(tmp_path, RUN.format(out=tmp_path / "out"))
    assert main(["pretrain", str(good), "--check"]) == 0
    assert "valid (2 stages)" in capsys.readouterr().out


def test_curriculum_resume_choices(tmp_path: Path) -> None:
    text = RUN.format(out=tmp_path / "out")
    for resume in ("auto", "must", "never", "continue"):  # what Curriculum accepts
        path = _write(tmp_path, f'{text}[curriculum]\nresume = "{resume}"\n')
        assert load_run(path).curriculum.resume == resume
    with pytest.raises(ConfigError, match=r"curriculum\.resume: expected one of .*'continue'"):
        load_run(_write(tmp_path, f'{text}[curriculum]\nresume = "again"\n'))


def test_resume_errors_are_one_line_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = RUN.format(out=tmp_path / "out").split("[[stages]]\nmethod = {")[0]  # one stage
    must = _write(tmp_path, f'{text}[curriculum]\nresume = "must"\n')
    assert main(["pretrain", str(must)]) == 2  # nothing to resume: no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: resume='must' but") and err.count("\n") == 1
    assert main(["pretrain", str(_write(tmp_path, text))]) == 0
    capsys.readouterr()
    changed = _write(tmp_path, text.replace("steps = 1", "steps = 2"))
    assert main(["pretrain", str(changed)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stage 0 (rotation)") and "was run with other settings" in err
    assert err.count("\n") == 1


def test_pretrain_from_file_equals_python_api(tmp_path: Path) -> None:
    path = _write(tmp_path, RUN.format(out=tmp_path / "from_file"))
    assert main(["pretrain", str(path)]) == 0
    from_file = Backbone.from_file(
        tmp_path / "from_file" / "stage01-simclr" / "backbone.safetensors"
    )

    pool = KermanyPneumonia(bundled_sample_root(), split="train")
    stages = [
        Stage(Rotation(), pool, steps=1, batch_size=8, image_size=32),
        Stage(SimCLR(temperature=0.2), pool, steps=1, batch_size=8, image_size=32, lr=0.05),
    ]
    ours = Curriculum(stages, checkpoint_dir=tmp_path / "python", seed=3, progress=False)
    torch.manual_seed(3)
    backbone = ours.fit(Backbone("resnet18"))
    a, b = from_file.state_dict(), backbone.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    manifest_file = (tmp_path / "from_file" / "manifest.json").read_text()
    assert '"seed": 3' in manifest_file


def test_study_config_builds_the_study(
    tmp_path: Path, sample_study_toml: Callable[..., str]
) -> None:
    text = sample_study_toml(tmp_path / "s", steps=2, evaluation="finetune_steps = 2\n")
    study = load_study(_write(tmp_path, text))
    assert [a.name for a in study.arms] == ["scratch", "simclr"]
    assert len(study.cells()) == 4 and study.protocol_settings.finetune_steps == 2
    bad = text.replace("steps = 2 }", 'steps = 2, lr = "x" }')
    with pytest.raises(ConfigError, match=r"arms\[1\]\.stages\[0\]\.lr: expected a number"):
        load_study(_write(tmp_path, bad))
    typo = text.replace("steps = 2 }", "steps = 2, lrr = 0.1 }")
    with pytest.raises(ConfigError, match=r"arms\[1\]\.stages\[0\]\.lrr: .*did you mean 'lr'\?"):
        load_study(_write(tmp_path, typo))
    unknown = text.replace("steps = 2 }", "steps = 2, zzz = 1 }")
    with pytest.raises(ConfigError, match=r"allowed: \[.*'lr'.*'optimizer'.*'weight_decay'"):
        load_study(_write(tmp_path, unknown))
    unequal = text.replace(
        'name = "scratch"', 'name = "rot"\nstages = [{ method = "rotation", steps = 1 }]'
    )
    with pytest.raises(ConfigError, match=r"budgets differ.*rot: 1 steps.*simclr: 2 steps"):
        load_study(_write(tmp_path, unequal))
    assert main(["study", str(_write(tmp_path, text)), "--check"]) == 0


@pytest.mark.realdata
def test_nih_task_from_a_study_file(tmp_path: Path, data_root: Path) -> None:
    from cxr_curriculum.study import NIHFindingsTask

    text = f"""
output = "{tmp_path / "s"}"
seeds = [0]
[[arms]]
name = "scratch"
[[tasks]]
kind = "nih"
test_share = 0.25
min_positives = 4
[evaluation]
fractions = [1.0]
protocols = ["knn"]
"""
    study = load_study(_write(tmp_path, text))
    task = study.tasks[0]
    assert isinstance(task, NIHFindingsTask) and task.metric == "macro_auroc"
    assert (task.test_share, task.min_positives) == (0.25, 4)
    with pytest.raises(ConfigError, match=r"tasks\[0\]\.min_positive: unknown key; did you"):
        load_study(_write(tmp_path, text.replace("min_positives = 4", "min_positive = 2")))
    with pytest.raises(ConfigError, match=r"tasks\[0\]: stride and cache need a binary NIH"):
        load_study(_write(tmp_path, text.replace("min_positives = 4", "stride = 2")))
