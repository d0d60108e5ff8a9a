"""Handing units to a job engine: Slurm through submitit, an sbatch array, a Kubernetes job.

There is no Slurm here: the Slurm launcher runs up to ``sbatch``, which submitit's own
test double (``submitit.core.test_core.MockedSubprocess``, through
``submitit.slurm.test_slurm.mocked_slurm``) answers with job ids; the sbatch script that
submitit wrote is then read. The example job files are checked for syntax (``bash -n``,
a YAML parser) and their command lines are run with a stand-in ``python`` that prints
its arguments, which the CLI's own argparse parser must accept.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from _studies import docs_block, tiny_study_toml
from cxr_curriculum.__main__ import _parser, main

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "examples" / "slurm" / "study_array.sbatch"
KUBE = REPO / "examples" / "kubernetes" / "study-indexed-job.yaml"


def _echo_python(tmp_path: Path) -> Path:
    """A ``python`` that prints its arguments one per line."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "python"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _cli_args(printed: str) -> list[str]:
    args = printed.splitlines()
    assert args[:2] == ["-m", "cxr_curriculum"], args
    return args[2:]


def test_sbatch_array_example_runs_one_unit_per_task(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SBATCH)], check=False).returncode == 0
    text = SBATCH.read_text()
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --gpus-per-node=1" in directives and len(directives) >= 4
    fake = _echo_python(tmp_path)
    run_env = {**os.environ, "PYTHON": str(fake), "SLURM_ARRAY_TASK_ID": "3"}
    done = subprocess.run(
        ["bash", str(SBATCH), "studies/study.toml"],
        env=run_env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    args = _parser().parse_args(_cli_args(done.stdout))
    assert args.command == "study" and args.config == "studies/study.toml" and args.unit == 3
    missing = subprocess.run(["bash", str(SBATCH)], env=run_env, capture_output=True, text=True)
    assert missing.returncode != 0 and "usage: sbatch --array" in missing.stderr


def test_kubernetes_indexed_job_example_runs_its_completion_index(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML parses the Kubernetes example")
    job = yaml.safe_load(KUBE.read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] >= spec["parallelism"]
    container = spec["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["sh", "-c"] and "$JOB_COMPLETION_INDEX" in command[2]
    assert {"name": "work", "mountPath": "/work"} in container["volumeMounts"]
    fake = _echo_python(tmp_path)
    run_env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        [*command[:2], command[2]], env={**run_env, "JOB_COMPLETION_INDEX": "5"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    args = _parser().parse_args(_cli_args(done.stdout))
    assert args.command == "study" and args.unit == 5 and args.config == "studies/study.toml"


def test_slurm_launcher_submits_a_job_array_through_submitit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit", reason="the launchers need the 'cluster' extra")
    from submitit.slurm.test_slurm import mocked_slurm

    config = tmp_path / "study.toml"
    config.write_text(tiny_study_toml(tmp_path / "out", steps=1))
    line = next(x for x in docs_block("launcher-commands").splitlines() if "slurm" in x)
    argv = shlex.split(line)[3:]  # after "python -m cxr_curriculum"
    argv[argv.index("benchmarks/configs/study_sample.toml")] = str(config)
    argv += ["--cpus-per-unit", "4", "--mem", "16G", "--slurm-option", "qos=high"]
    with mocked_slurm():
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 4 units [0, 1, 2, 3] as Slurm jobs:\n12_0 12_1 12_2 12_3" in out
    scripts = list((tmp_path / "out" / "jobs").rglob("*_submission.sh"))
    assert len(scripts) == 1
    sbatch = scripts[0].read_text()
    for option in (
        "--partition=gpu", "--gpus-per-node=1", "--array=0-3%4", "--time=120",
        "--cpus-per-task=4", "--mem=16G", "--qos=high", "--job-name=cxr-study",
    ):  # fmt: skip
        assert f"#SBATCH {option}" in sbatch, (option, sbatch)
    assert len(list((tmp_path / "out" / "jobs").rglob("*_submitted.pkl"))) == 4
    assert (tmp_path / "out" / "design.json").exists()  # the folder was checked first
    assert not (tmp_path / "out" / "cells").exists()  # submitting computes nothing


def test_slurm_array_tasks_run_their_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit", reason="the launchers need the 'cluster' extra")
    from submitit.slurm.test_slurm import mocked_slurm

    from cxr_curriculum.config.launch import SlurmOptions, launch_study, run_unit_job

    config = tmp_path / "study.toml"
    config.write_text(tiny_study_toml(tmp_path / "out", steps=1))
    monkeypatch.chdir(tmp_path)
    with mocked_slurm():
        launch = launch_study(
            config, "slurm", max_parallel=2, slurm=SlurmOptions(partition="cpu", time=30)
        )
    assert launch.units == [0, 1, 2, 3] and launch.job_ids == [f"12_{k}" for k in range(4)]
    task = launch.jobs[2].submission()  # what array task 2 will run on a node
    assert task.function is run_unit_job
    assert task.args == (str(config.resolve()), 2, str(tmp_path), None)
    assert task.result() == {"unit": 2, "reported": False}  # unit 2 (seed 1, scratch)
    cells = sorted(p.relative_to(tmp_path / "out").as_posix() for p in tmp_path.rglob("*.json"))
    assert "cells/kermany/scratch/seed1/knn-f1.json" in cells
    assert not any(c.startswith("cells/") and "scratch/seed1/" not in c for c in cells)


def test_launcher_without_submitit_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    real = builtins.__import__

    def no_submitit(name: str, *args: object, **kwargs: object) -> object:
        if name == "submitit":
            raise ImportError("No module named 'submitit'")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    config = tmp_path / "study.toml"
    config.write_text(tiny_study_toml(tmp_path / "out"))
    assert main(["study", str(config), "--launcher", "slurm", "--partition", "p"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and 'pip install "cxr_curriculum[cluster]"' in err
