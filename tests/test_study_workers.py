"""Several worker processes on one study folder: exactly once, same report, takeover.

Every worker here is a separate ``python -m cxr_curriculum study`` process on a tiny
study (scratch vs SimCLR, 2 seeds, k-NN at 32 px, one torch thread: 4 units). What a
worker computed is counted from its log: ``computed cell <path>`` once per cell it
wrote, ``stage 0 (simclr) finished`` once per pretraining it ran. Reports are compared
with :func:`without_provenance` (dates, commands, timings and load averages differ
between any two runs; every statistic must not).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from _studies import docs_block, tiny_study_toml
from cxr_curriculum.study.provenance import without_provenance

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

SRC = Path(__file__).resolve().parents[1] / "src"
STEPS = 6  # SimCLR steps: long enough to kill a worker while it pretrains


def write_study(folder: Path) -> Path:
    """A tiny study file whose output is ``folder / "out"``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(tiny_study_toml(folder / "out", steps=STEPS, top="threads = 1"))
    return path


def env(host: str = "host-a") -> dict[str, str]:
    """The environment of a worker process: this checkout's sources, one thread."""
    out = dict(os.environ)
    out.update(PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", CXR_STUDY_HOST=host)
    return out


def start(config: Path, *args: str, host: str = "host-a") -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "cxr_curriculum", "study", str(config), *args]
    return subprocess.Popen(
        cmd, env=env(host), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def computed(logs: list[str]) -> tuple[Counter[str], int]:
    """Cells written (by path) and pretrainings run, over every log."""
    text = "\n".join(logs)
    cells = Counter(re.findall(r"computed cell (\S+):", text))
    return cells, len(re.findall(r"stage 0 \(simclr\) finished", text))


def report(folder: Path) -> Any:
    return without_provenance(json.loads((folder / "out" / "results.json").read_text()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The report of one worker computing the whole study (in this process, one thread)."""
    from cxr_curriculum.__main__ import main

    folder = tmp_path_factory.mktemp("one_worker")
    assert main(["study", str(write_study(folder))]) == 0
    return report(folder)


def _wait_for_pretraining(claim: Path, proc: subprocess.Popen[str], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            status = json.loads(claim.read_text()).get("status", {})
        except (OSError, ValueError):
            status = {}
        if status.get("phase") == "pretraining":
            return
        time.sleep(0.05)
    raise AssertionError(f"{claim} never reported pretraining")


def test_a_killed_workers_unit_is_taken_over_after_the_timeout(
    tmp_path: Path, reference: Any
) -> None:
    config = write_study(tmp_path)
    claim = tmp_path / "out" / "claims" / "seed0-simclr.json"
    victim = start(config, "--worker", "--claim-timeout", "3", host="machine-a")
    _wait_for_pretraining(claim, victim)
    victim.send_signal(signal.SIGKILL)  # mid-unit: SimCLR of seed 0 is pretraining
    victim.wait()
    killed_log = victim.communicate()[0]
    assert json.loads(claim.read_text())["worker"] == f"machine-a:{victim.pid}"

    log = finish(start(config, "--worker", "--claim-timeout", "3", host="machine-b"))
    took = re.search(
        rf"unit 1 \(seed0/simclr\): took over from a stale claim: claimed by machine-a:"
        rf"{victim.pid} since \S+ \(heartbeat (\d+) s ago\)",
        log,
    )
    assert took and int(took.group(1)) >= 3, log  # only once the timeout had passed
    cells, _ = computed([killed_log, log])
    assert len(cells) == 4 and set(cells.values()) == {1}, cells
    assert "cells/kermany/simclr/seed0/knn-f1.json" in computed([log])[0]
    assert report(tmp_path) == reference
    assert not claim.exists()


def test_three_workers_compute_every_unit_once_and_report_as_one(
    tmp_path: Path,
    reference: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/study.md, "Run it on a cluster", as written: three ``--worker`` processes on
    one folder, then ``--unit 0`` (done: exits at once), the listings and
    ``--report-only`` (these in this process, through the CLI's ``main``)."""
    from cxr_curriculum.__main__ import main

    config = write_study(tmp_path)
    lines = [x.split("#")[0].strip() for x in docs_block("cluster-commands").splitlines()]
    assert sum(x.endswith("--worker &") for x in lines) == 3
    logs, workers = [], []
    with caplog.at_level("INFO"):
        for line in filter(None, lines):
            if line == "wait":
                logs += [finish(p) for p in workers]
                continue
            argv = line.rstrip("&").split()[3:]  # after "python -m cxr_curriculum"
            argv[argv.index("benchmarks/configs/study_sample.toml")] = str(config)
            if line.endswith("&"):  # a worker in the background: its own process
                workers.append(start(config, *argv[2:]))
            else:  # the other commands in this process (as main() of the CLI)
                assert main(argv) == 0, line
    listings = capsys.readouterr().out
    out = "\n".join([*logs, caplog.text])
    cells, pretrainings = computed([out])
    assert len(cells) == 4 and set(cells.values()) == {1}, cells  # every cell exactly once
    assert pretrainings == 2  # each SimCLR (arm, seed) pretrained once
    assert "unit 0 (seed0/scratch) is done" in out
    assert "4 units (arm x seed), 0 done" in listings
    assert "4 units (arm x seed), 4 done" in listings
    data = report(tmp_path)
    assert data == reference and data["design"]["cells_done"] == 4
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert len(index["files"]) == 4 and len(index["units"]) == 4  # no entry lost
    assert not list((tmp_path / "out" / "claims").iterdir())  # every claim released


def test_local_launcher_runs_workers_through_submitit(
    tmp_path: Path, reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("submitit", reason="the launchers need the 'cluster' extra")
    from cxr_curriculum.__main__ import main

    config = write_study(tmp_path)
    line = next(x for x in docs_block("launcher-commands").splitlines() if "local" in x)
    argv = line.split("#")[0].split()[3:]  # after "python -m cxr_curriculum"
    argv[argv.index("benchmarks/configs/study_sample.toml")] = str(config)
    for key, value in env().items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 0
    logs = [p.read_text() for p in (tmp_path / "out" / "jobs").rglob("*.err")]
    assert len(logs) == 2  # two worker jobs
    cells, pretrainings = computed(logs)
    assert len(cells) == 4 and set(cells.values()) == {1} and pretrainings == 2
    assert report(tmp_path) == reference


def test_bench_workers_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bench_dir = SRC.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench_dir))
    import _common
    import bench_workers

    monkeypatch.setattr(_common, "REPO", tmp_path)
    # 2x1 only: the 1x1 comparison is what the tests above check (it costs one more run)
    bench_workers.main(["--smoke", "--variants", "2x1", "--run-dir", str(tmp_path / "runs")])
    record = json.loads((tmp_path / "benchmarks" / "results" / "workers_smoke.json").read_text())
    (row,) = record["results"]["workers"]
    assert row["variant"] == "2x1" and row["time_vs_2x1"] == 1 and row["seconds"] > 0
    assert row["cells_computed"] == 4 and row["cells_computed_twice"] == 0
    overhead = record["results"]["claim_overhead"]
    assert overhead["claim_ms"] > 0 and overhead["record_cell_with_index_ms"] > 0
    (taken,) = record["results"]["takeover"]
    assert taken["claim_timeout_s"] == 1 and 0 < taken["takeover_s"] < 60
    assert (tmp_path / "docs" / "benchmarks" / "workers_smoke.md").exists()
