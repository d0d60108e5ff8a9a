"""Units, claims, repairs and the command line's errors, in one process.

(The study API is imported inside the tests that use it, so that the command-line
regression tests also run against an older checkout of the package.)

A finished tiny study (scratch vs SimCLR for 1 step, 2 seeds, k-NN at 32 px) is computed
once per module; each test works on a copy of its output folder (the pretraining
checkpoints stay in one shared folder, outside it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _studies import tiny_study_toml
from cxr_curriculum import _artefacts
from cxr_curriculum.__main__ import main
from cxr_curriculum.config import load_study

pytestmark = pytest.mark.usefixtures("one_thread")
SRC = Path(__file__).resolve().parents[1] / "src"
CELL = "cells/kermany/simclr/seed0/knn-f1.json"


def _config(folder: Path, pretrain: Path, *, steps: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    top = f'threads = 1\npretrain_dir = "{pretrain}"'
    path.write_text(tiny_study_toml(folder / "out", steps=steps, top=top))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(study folder, shared pretraining folder) of the finished tiny study."""
    root = tmp_path_factory.mktemp("finished")
    pretrain = root / "pretrain"
    assert main(["study", str(_config(root / "study", pretrain))]) == 0
    return root / "study", pretrain


def _copy(finished: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished study: (its file, its output folder)."""
    source, pretrain = finished
    config = _config(tmp_path, pretrain)
    shutil.copytree(source / "out", tmp_path / "out")
    return config, tmp_path / "out"


def _report(out: Path) -> Any:
    from cxr_curriculum.study import without_provenance

    return without_provenance(json.loads((out / "results.json").read_text()))


def test_units_are_seed_major_with_stable_indices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = load_study(_config(tmp_path, tmp_path / "pretrain"))
    units = study.units()
    assert [(u.index, u.seed, u.arm.name) for u in units] == [
        (0, 0, "scratch"), (1, 0, "simclr"), (2, 1, "scratch"), (3, 1, "simclr"),
    ]  # fmt: skip
    arms = len(study.arms)
    for u in units:  # the documented formula
        assert u.seed == study.seeds[u.index // arms] and u.arm == study.arms[u.index % arms]
    assert [k for u in units for k in u.cells] == study.cells()
    assert units[1].name == "seed0/simclr"
    assert main(["study", str(tmp_path / "study.toml"), "--list-units"]) == 0
    out = capsys.readouterr().out
    assert "4 units (arm x seed), 0 done, 0 claimed, 0 stale, 4 to do; 0 of 4 cells" in out
    assert "   1     0  simclr" in out and "[ ] kermany/knn-f1" in out
    assert "time left: unknown until a unit finishes" in out
    assert not (tmp_path / "out").exists()  # listing writes nothing
    assert main(["study", str(tmp_path / "study.toml"), "--unit", "4"]) == 2
    assert "--unit must lie in 0..3" in capsys.readouterr().err


def test_listing_shows_claims_status_and_time_left(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxr_curriculum.study import ClaimBoard, StudyFolder

    config, out = _copy(finished, tmp_path)
    index = json.loads((out / "index.json").read_text())
    del index["files"][CELL]  # seed 0 SimCLR: not done (the index keeps its own sha256)
    index["content_sha256"] = _artefacts.content_sha256(
        {"files": index["files"], "units": index["units"]}
    )
    (out / "index.json").write_text(json.dumps(index))
    (out / CELL).unlink()
    board = ClaimBoard(StudyFolder(out), timeout=60)
    claim = board.acquire("seed0/simclr", {"phase": "pretraining", "stage": "1/1 simclr"})
    assert claim is not None
    claim.status = {"phase": "pretraining", "stage": "1/1 simclr", "step": 40, "steps": 100}
    claim.renew()
    assert main(["study", str(config), "--list-units"]) == 0
    text = capsys.readouterr().out
    assert "3 done, 1 claimed" in text
    assert f"claimed by {board.worker} since" in text
    assert "pretraining stage 1/1 simclr, step 40/100" in text
    assert "1 unit left: about " in text and "with 1 worker" in text
    claim.release()
    assert not claim.path.exists()


def test_listing_shows_not_measured_units_apart_and_leaves_them_out_of_the_time_left(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    """Units of an arm whose ImageNet weights are missing offline were listed as "to do",
    counted as left (with their time) and "every unit is done" was never printed."""
    from cxr_curriculum.study.units import estimate_left, format_units

    config, out = _copy(finished, tmp_path)
    study = load_study(config)
    why = "not measured: WeightsNotAvailableError: no ImageNet weights offline"
    study.unavailable["simclr"] = why  # as Study._check_imagenet records it
    statuses = study.unit_status()
    assert [s.state for s in statuses] == ["done", "not measured"] * 2
    assert statuses[1].describe() == "not measured"
    text = format_units(study, statuses)
    assert "4 units (arm x seed), 2 done, 0 claimed, 0 stale, 0 to do, 2 not measured" in text
    assert f"   1     0  simclr               1/1    {why}" in text
    assert text.endswith("every unit is done (2 not measured)")
    assert estimate_left(statuses, study)["units_left"] == 0
    (out / "cells/kermany/scratch/seed1/knn-f1.json").unlink()  # unit 2 (scratch): to do
    statuses = study.unit_status()
    eta = estimate_left(statuses, study)
    assert eta["units_left"] == 1 and eta["seconds"] == statuses[0].seconds  # scratch's only
    text = format_units(study, statuses)
    assert "1 done, 0 claimed, 0 stale, 1 to do, 2 not measured" in text
    assert "1 unit left: about " in text


def test_a_claim_reports_the_pretraining_stage_and_step(finished: tuple[Path, Path]) -> None:
    from cxr_curriculum.study.units import pretraining_progress

    _, pretrain = finished
    study = load_study(_config(finished[0], pretrain))
    simclr = study.units()[1].arm
    progress = pretraining_progress(pretrain / "simclr" / "seed0", simclr)
    assert progress == {"stage": "1/1 simclr", "steps": 1, "step": 1}  # its metrics.csv
    assert pretraining_progress(pretrain / "nothing-yet", simclr) == {}


def _race(board: Any, unit: str, n: int = 8) -> list[Any]:
    """What ``n`` threads that try to claim ``unit`` at once get (None: refused)."""
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(board.acquire(unit))) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_one_worker_wins_a_claim_and_one_takes_over_a_stale_claim(tmp_path: Path) -> None:
    from cxr_curriculum.study import ClaimBoard, StudyFolder

    folder = StudyFolder(tmp_path)
    board = ClaimBoard(folder, timeout=5)
    got = _race(board, "seed0/a")
    assert sum(c is not None for c in got) == 1  # O_EXCL under the lock: one winner
    path = board.path("seed0/a")
    data = json.loads(path.read_text())
    data.update(worker="elsewhere:1", host="elsewhere", pid=1)  # another machine's claim
    path.write_text(json.dumps(data))
    assert not board.read("seed0/a").stale(5)  # type: ignore[union-attr]
    assert board.acquire("seed0/a") is None  # fresh: left to its worker
    old = time.time() - 30
    os.utime(path, (old, old))  # no heartbeat for 30 s
    got = _race(board, "seed0/a")
    winners = [c for c in got if c is not None]
    assert len(winners) == 1  # takeover under the lock: one winner
    assert winners[0].taken_over.worker == "elsewhere:1"
    assert "heartbeat 30 s ago" in winners[0].taken_over.describe()


def test_a_waiting_worker_looks_every_two_seconds_and_stops_when_the_study_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the default 300 s timeout a worker left with only live workers' units used to
    sleep a tenth of it (30 s) between looks, so it outlived the study by up to 30 s (2
    workers took 39 s on the sample study that 1 worker finished in 17 s)."""
    from types import SimpleNamespace

    from cxr_curriculum.study import loop

    held = SimpleNamespace(unit=SimpleNamespace(index=1, name="seed0/simclr"), state="claimed")
    done = SimpleNamespace(unit=held.unit, state="done", claim=None)
    looks = iter([[held], [held], [done]])
    study = SimpleNamespace(unit_status=lambda board: next(looks))
    board = SimpleNamespace(interval=30.0, timeout=300.0, acquire=lambda *a: None)
    sleeps: list[float] = []
    monkeypatch.setattr(loop.time, "sleep", sleeps.append)
    work = loop.WorkLoop(study, SimpleNamespace(computed=0), board, None)  # type: ignore[arg-type]
    work.run_all()
    assert sleeps == [loop.WAIT_POLL_SECONDS] * 2 and loop.WAIT_POLL_SECONDS <= 2.0
    assert not work.report_due  # the worker that completed the study writes the report


def test_a_waiting_worker_reports_when_the_last_units_worker_dies_after_its_last_cell(
    finished: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A holds the last unit, writes its last cell and dies before recording the
    unit; worker B, waiting on that unit, then found nothing open and, as it was not its
    first look, only removed the stale claim: no results.json, no report.md."""
    from cxr_curriculum.study import ClaimBoard, loop
    from cxr_curriculum.study.claim_info import process_start

    config, out = _copy(finished, tmp_path)
    for name in ("results.json", "report.md"):
        (out / name).unlink()
    study = load_study(config)
    store = study.store
    with store.folder.lock():  # seed 0 SimCLR: its last cell not indexed yet
        files, units = store.index.load(locked=True)
        sha = files.pop(CELL)
        units.pop("seed0/simclr")
        store.index.write(files, units)
    worker_a = subprocess.Popen(["sleep", "600"])  # a live process of this machine
    board = ClaimBoard(store.folder, 300)
    assert board.acquire("seed0/simclr") is not None
    claim = json.loads(board.path("seed0/simclr").read_text())
    claim.update(worker=f"{claim['host']}:{worker_a.pid}", pid=worker_a.pid)
    claim["pid_start"] = process_start(worker_a.pid)
    board.path("seed0/simclr").write_text(json.dumps(claim))

    def last_cell_then_die(seconds: float) -> None:  # while B waits
        with store.folder.lock():
            files, units = store.index.load(locked=True)
            files[CELL] = sha
            store.index.write(files, units)
        worker_a.kill()
        worker_a.wait()

    monkeypatch.setattr(loop.time, "sleep", last_cell_then_die)
    try:
        load_study(config).run_worker()
    finally:
        worker_a.kill()
        worker_a.wait()
    assert not board.path("seed0/simclr").exists()  # the stale claim was removed
    assert (out / "report.md").exists() and _report(out) == _report(finished[0] / "out")


def test_a_dead_local_worker_is_stale_at_once_and_heartbeats_renew(tmp_path: Path) -> None:
    from cxr_curriculum.study import ClaimBoard, StudyFolder

    board = ClaimBoard(StudyFolder(tmp_path), timeout=0.5)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = board.path("seed1/b")
    path.parent.mkdir(parents=True)
    payload = {"worker": f"{board.host}:{dead.pid}", "host": board.host, "pid": dead.pid,
               "since": "then", "token": "t"}  # fmt: skip
    path.write_text(json.dumps(payload))
    assert board.read("seed1/b").stale(3600)  # type: ignore[union-attr]  # this machine, gone
    claim = board.acquire("seed1/b")
    assert claim is not None and claim.taken_over is not None
    with claim:
        claim.status = {"phase": "cells", "cell": "x", "cells_done": 0}
        deadline = time.monotonic() + 30
        while json.loads(path.read_text())["status"].get("phase") != "cells":
            assert time.monotonic() < deadline, "the heartbeat never wrote the status"
            time.sleep(0.05)
        other = ClaimBoard(StudyFolder(tmp_path), timeout=0.5)
        data = json.loads(path.read_text())
        data["token"] = "someone else"
        path.write_text(json.dumps(data))  # another worker took the unit over
        while not claim.lost.is_set():
            assert time.monotonic() < deadline, "the heartbeat never noticed"
            time.sleep(0.05)
    assert path.exists() and other.read("seed1/b").token == "someone else"  # type: ignore[union-attr]


@pytest.mark.parametrize("content", [b"", b'{"worker": "a:1", "ho', b"\x00garbage\xff"])
def test_a_damaged_claim_is_taken_over_after_the_timeout_and_set_aside(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    from cxr_curriculum.study import ClaimBoard, StudyFolder

    folder = StudyFolder(tmp_path)
    board = ClaimBoard(folder, timeout=5)
    path = board.path("seed0/a")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    info = board.read("seed0/a")
    assert info is not None and info.damaged and "damaged claim file" in info.describe()
    assert board.acquire("seed0/a") is None  # fresh: maybe a worker is writing it
    old = time.time() - 10
    os.utime(path, (old, old))
    with caplog.at_level("WARNING", logger="cxr_curriculum.study"):
        claim = board.acquire("seed0/a")
    assert claim is not None and json.loads(path.read_text())["worker"] == board.worker
    moved = list((tmp_path / "set_aside" / "claims").iterdir())
    assert len(moved) == 1 and moved[0].read_bytes() == content
    assert f"{path} is a damaged claim" in caplog.text and f"set aside to {moved[0]}" in caplog.text


@pytest.mark.parametrize("damage", ["cut short", "flipped digit"])
def test_a_damaged_index_is_named_set_aside_and_rebuilt(
    finished: tuple[Path, Path], tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    config, out = _copy(finished, tmp_path)
    index = out / "index.json"
    raw = index.read_bytes()
    if damage == "cut short":
        index.write_bytes(raw[: len(raw) // 2])
    else:  # one hex digit of a cell's sha256: the index blames itself, not the cell
        at = raw.index(b'": "', raw.index(CELL.encode())) + 4
        index.write_bytes(raw[:at] + (b"0" if raw[at : at + 1] != b"0" else b"1") + raw[at + 1 :])
    with caplog.at_level("INFO"):
        assert main(["study", str(config)]) == 0
    assert f"{index} is damaged (" in caplog.text and "set aside to" in caplog.text
    assert "rebuilt from the 4 cell files that verify against their own sha256" in caplog.text
    assert "computed cell" not in caplog.text  # nothing recomputed, no cell blamed
    assert len(list((out / "set_aside").iterdir())) == 1
    assert len(json.loads(index.read_text())["files"]) == 4
    assert _report(out) == _report(finished[0] / "out")


def test_a_healthy_cell_with_a_damaged_index_entry_keeps_its_file(
    finished: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, out = _copy(finished, tmp_path)
    index = json.loads((out / "index.json").read_text())
    recorded = index["files"][CELL]
    index["files"][CELL] = "0" * 64
    (out / "index.json").write_text(json.dumps({"format": 1, "files": index["files"]}))
    with caplog.at_level("INFO"):
        assert main(["study", str(config)]) == 0
    assert f"recorded sha256 {'0' * 64} for {CELL}, but the cell verifies" in caplog.text
    assert "computed cell" not in caplog.text and not (out / "set_aside").exists()
    assert json.loads((out / "index.json").read_text())["files"][CELL] == recorded


def test_a_flipped_byte_in_a_cell_is_named_set_aside_and_recomputed(
    finished: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, out = _copy(finished, tmp_path)
    raw = bytearray((out / CELL).read_bytes())
    at = raw.index(b'"value": ') + len(b'"value": 0.')
    raw[at] = ord("1") if raw[at] != ord("1") else ord("2")
    (out / CELL).write_bytes(bytes(raw))
    with caplog.at_level("INFO"):
        assert main(["study", str(config)]) == 0
    moved = list((out / "set_aside").rglob("knn-f1.json.*"))
    assert len(moved) == 1 and moved[0].read_bytes() == bytes(raw)
    assert f"{out / CELL} is damaged" in caplog.text and f"set aside to {moved[0]}" in caplog.text
    assert caplog.text.count("computed cell") == 1 and f"computed cell {CELL}" in caplog.text
    assert _report(out) == _report(finished[0] / "out")


def test_two_different_study_files_on_one_folder_are_refused_before_any_work(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, out = _copy(finished, tmp_path / "a")
    other = tmp_path / "b.toml"
    top = f'threads = 1\npretrain_dir = "{tmp_path / "b_pretrain"}"'
    other.write_text(tiny_study_toml(out, steps=2, top=top))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    for extra in ([], ["--worker"], ["--unit", "1"], ["--report-only"], ["--list-units"]):
        assert main(["study", str(other), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert str(other) in err and "first used by another study" in err
        assert "arms.simclr.stages[0].steps: 1 -> 2" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written
    assert not (tmp_path / "b_pretrain").exists()
    grown = tmp_path / "c.toml"  # one more seed: shares every cell it has in common
    grown.write_text(first.read_text().replace("seeds = [0, 1]", "seeds = [0, 1, 2]"))
    from cxr_curriculum.study.design import check_design

    check_design(load_study(grown))
    record = json.loads((out / "design.json").read_text())
    assert record["design"]["seeds"] == [0, 1, 2] and record["sources"][-1] == str(grown)


def test_local_launcher_with_a_jobs_folder_prints_the_studys_report_path(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed the jobs folder's parent / report.md, not the study's output folder."""
    pytest.importorskip("submitit", reason="the launchers need the 'cluster' extra")
    config, out = _copy(finished, tmp_path / "study")
    (out / "report.md").unlink()
    jobs = tmp_path / "elsewhere" / "jobs"
    argv = ["study", str(config), "--launcher", "local", "--jobs-folder", str(jobs)]
    assert main(argv) == 0  # every unit is done: no job, the report is written
    printed = capsys.readouterr().out
    assert f"study: {out / 'report.md'}\n" in printed and (out / "report.md").exists()


@pytest.mark.parametrize("content", ["[]", "3", '"design"', "null"])
def test_a_design_record_that_is_not_a_json_object_is_a_one_line_error(
    finished: tuple[Path, Path], tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Valid JSON but not an object raised AttributeError (a traceback, exit status 1)."""
    config, out = _copy(finished, tmp_path)
    (out / "design.json").write_text(content)
    for extra in ([], ["--list-units"]):
        assert main(["study", str(config), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out / 'design.json'} (the design record") and (
            err.count("\n") == 1 and "not a JSON object" in err
        )
    assert (out / "design.json").read_text() == content  # left for the user to restore


@pytest.mark.parametrize(
    "option",
    [
        ["--claim-timeout", "0"], ["--claim-timeout", "-5"], ["--claim-timeout", "nan"],
        ["--claim-timeout", "inf"], ["--launcher", "local", "--max-parallel", "0"],
        ["--launcher", "slurm", "--time", "0"], ["--launcher", "slurm", "--cpus-per-unit", "0"],
        ["--launcher", "slurm", "--gpus-per-unit", "-1"], ["--worker", "--claim-timeout", "x"],
    ],
)  # fmt: skip
def test_bad_numeric_options_are_named_errors_before_anything_is_written(
    tmp_path: Path, option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """They raised ValueError deep in the library (a traceback, exit status 1), and
    ``design.json`` had been written before the claim timeout was checked."""
    config = _config(tmp_path, tmp_path / "pretrain")
    with pytest.raises(SystemExit) as stop:
        main(["study", str(config), *option])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    name = next(a for a in option if a.startswith("--") and a not in ("--launcher", "--worker"))
    assert f"error: argument {name}: " in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="claim timeout must be a finite number > 0"):
        load_study(config).run(claim_timeout=0)
    assert not (tmp_path / "out" / "design.json").exists()


@pytest.mark.parametrize("mode", [["--worker"], ["--launcher", "local"], ["--launcher", "slurm"]])
def test_max_cells_with_worker_or_launcher_is_refused(
    finished: tuple[Path, Path], tmp_path: Path, mode: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-cells was silently ignored with --worker and --launcher."""
    config, out = _copy(finished, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert main(["study", str(config), *mode, "--max-cells", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --max-cells cannot be combined with {mode[0]}")
    assert err.count("\n") == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written


def test_cli_shows_integrity_and_image_errors_as_one_line(
    finished: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, pretrain = finished
    own = tmp_path / "pretrain"
    shutil.copytree(pretrain, own)
    config = _config(tmp_path, own)
    shutil.copytree(source / "out", tmp_path / "out")
    (tmp_path / "out" / CELL).unlink()  # seed 0 SimCLR must be read from its checkpoint
    # a study keeps only each arm's final backbone (keep="final"): damage that file
    final = next(own.rglob("seed0/backbone.safetensors"))
    raw = bytearray(final.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the tensor data
    final.write_bytes(bytes(raw))
    assert main(["study", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {final}") and "corrupted" in err and "Traceback" not in err
    assert not list((tmp_path / "out" / "claims").iterdir())  # the claim was released

    bad = tmp_path / "bad_images"
    bad.mkdir()
    for i in range(8):
        (bad / f"x{i}.png").write_text("not an image")
    text = tiny_study_toml(tmp_path / "out2", top="threads = 1").replace(
        'source = "sample"', f'source = "folder"\nroot = "{bad}"'
    )
    (tmp_path / "bad.toml").write_text(text)
    assert main(["study", str(tmp_path / "bad.toml")]) == 2
    err = capsys.readouterr().err
    # caught by the check before any training, naming the study file and the bad image
    assert err.startswith(f"error: {tmp_path / 'bad.toml'}: cannot read ") and str(bad) in err
    assert "Traceback" not in err


DEV_FULL = Path("/dev/full")


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_stops_with_a_clear_error_and_tears_nothing(
    finished: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, out = _copy(finished, tmp_path)
    (out / CELL).unlink()
    index = (out / "index.json").read_bytes()
    real = _artefacts.tempfile.mkstemp

    def full(prefix: str = "", dir: str | None = None, **kw: Any) -> tuple[int, str]:
        if "knn-f1.json" not in prefix:
            return real(prefix=prefix, dir=dir, **kw)
        return os.open(DEV_FULL, os.O_WRONLY), str(Path(dir or ".") / f"{prefix}never-created")

    monkeypatch.setattr(_artefacts.tempfile, "mkstemp", full)  # cells land on a full disk
    assert main(["study", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write the study cell {out / CELL}: no space left")
    assert "free some space" in err and err.count("\n") == 1
    assert (out / "index.json").read_bytes() == index  # unchanged, not torn
    assert not list((out / "claims").iterdir())
    monkeypatch.undo()
    assert main(["study", str(config)]) == 0  # space freed: the rerun finishes
    assert _report(out) == _report(finished[0] / "out")


def _read_only_mount_works() -> bool:
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         "mount --bind -o ro /tmp /tmp && ! touch /tmp/.cxr-ro-probe 2>/dev/null"],
        capture_output=True, check=False,
    )  # fmt: skip
    return probe.returncode == 0


def test_a_read_only_output_folder_gives_a_clear_error(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    if shutil.which("unshare") is None or not _read_only_mount_works():
        pytest.skip("needs unshare and a read-only bind mount (root, Linux)")
    config, out = _copy(finished, tmp_path)
    (out / CELL).unlink()  # one cell to do
    python = f"{sys.executable} -m cxr_curriculum study {config}"
    script = (
        f"mount --bind -o ro {out} {out} && "
        f"{python} --list-units > {tmp_path}/list.txt 2>&1; echo list=$?; "
        f"{python} --worker; echo worker=$?"
    )
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env={**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert "list=0" in done.stdout, done.stderr  # reading a read-only folder works
    assert "3 of 4 cells done" in (tmp_path / "list.txt").read_text()
    assert "worker=2" in done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert errors[0].startswith(f"error: cannot write in the study folder {out}: read-only")
    assert f"make {out} writable" in errors[0]
