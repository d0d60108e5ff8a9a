"""Studies with several workers on one output folder: speed, identical reports, overheads.

Measures, on the machine it runs on (the numbers in docs come from a quiet 2-core CPU):

1. **1 vs 2 workers.** The bundled sample study (``benchmarks/configs/study_sample.toml``)
   and a 2-seed slice of the Kermany study (``study_kermany_cpu.toml`` with seeds
   ``[0, 1]`` and label fractions ``--kermany-fractions``, default ``0.1 1.0``: about
   45 minutes for one worker on one thread, from the committed cells' timings), each
   run from scratch as ``AxT`` = A worker processes with T torch threads each:
   ``1x1``, ``2x1`` (both use the 2 cores) and ``1x2`` (one worker on both cores; the
   Kermany slice runs it only with ``--kermany-variants 1x1 2x1 1x2``). Reported: wall
   time of the whole command (imports, pretraining, cells, report), the ratio to ``2x1``,
   and whether ``results.json`` equals the ``1x1`` one in every statistical field
   (:func:`cxr_curriculum.study.without_provenance`; with 2 threads, fine-tuning may
   legitimately differ).
2. **Claim overhead per unit**, measured directly in one process: claiming a unit,
   starting its heartbeat, one heartbeat that rewrites the status and one that only
   touches the file, releasing it; and recording one cell (lock, re-read, merge, atomic
   replace of ``index.json`` with 180 entries) against a plain atomic write of the cell.
3. **Takeover time** as a function of the claim timeout: a worker pretraining the only
   unit of a one-unit study is killed (SIGKILL) while a second worker waits; the time
   from the kill to the second worker's claim on the unit, for timeouts
   ``--timeouts`` (default 2 5 10 s) from another machine's point of view
   (``CXR_STUDY_HOST`` differs, so only the timeout can tell), and once on the same
   machine (the dead process is noticed at the next check).

Run ``python benchmarks/bench_workers.py`` on a quiet machine (about 90 minutes: the
Kermany slice 45 + 25 min, the sample study 3 x 1 min, takeover 1 min; add ``1x2`` to
``--kermany-variants`` for about 35 more) or ``--smoke`` (a tiny study, 1x1 and 2x1,
one takeover; about half a minute).
Results go to ``benchmarks/results/workers.json`` and ``docs/benchmarks/workers.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import REPO, markdown_table, tiny_study_toml, write_results
from cxr_curriculum._artefacts import atomic_write_bytes
from cxr_curriculum.data import data_root
from cxr_curriculum.study import ClaimBoard, StudyFolder, without_provenance
from cxr_curriculum.study.cells import CellKey, CellStore

CONFIGS = REPO / "benchmarks" / "configs"
SRC = REPO / "src"

TINY = tiny_study_toml("OUTPUT", steps=2)  # 2 arms x 2 seeds, one k-NN cell each


def _set(text: str, key: str, value: str) -> str:
    """Set a top-level ``key = value`` line of a TOML text (added at the top if absent)."""
    pattern = re.compile(rf"^{key}\s*=.*$", re.M)
    line = f"{key} = {value}"
    return pattern.sub(line, text, count=1) if pattern.search(text) else f"{line}\n{text}"


def _study_file(base: str, folder: Path, threads: int, fractions: Sequence[float] | None) -> Path:
    text = _set(base, "output", json.dumps(str(folder / "out")))
    text = _set(text, "pretrain_dir", json.dumps(str(folder / "pretrain")))
    text = _set(text, "threads", str(threads))
    if fractions is not None:
        text = re.sub(r"^fractions\s*=.*$", f"fractions = {list(fractions)}", text, flags=re.M)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.toml"
    path.write_text(text)
    return path


def _env(threads: int, host: str = "bench") -> dict[str, str]:
    env = dict(os.environ)
    path = [str(SRC), env.get("PYTHONPATH", "")]
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in path if p),
        OMP_NUM_THREADS=str(threads),
        CXR_STUDY_HOST=host,
        CXR_DATA_ROOT=str(data_root().resolve()),  # workers may start in another folder
    )
    return env


def _worker(config: Path, threads: int, *args: str, host: str = "bench") -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "cxr_curriculum", "study", str(config), "--worker", *args]
    return subprocess.Popen(
        cmd, env=_env(threads, host), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def run_variant(base: str, folder: Path, workers: int, threads: int, fractions: Any) -> dict:
    """Run a whole study from scratch with ``workers`` processes of ``threads`` threads."""
    if folder.exists():
        shutil.rmtree(folder)
    config = _study_file(base, folder, threads, fractions)
    start = time.perf_counter()
    procs = [_worker(config, threads) for _ in range(workers)]
    logs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - start
    for p, log in zip(procs, logs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"a worker of {config} failed:\n{log[-3000:]}")
    cells = re.findall(r"computed cell (\S+):", "\n".join(logs))
    results = json.loads((folder / "out" / "results.json").read_text())
    return {
        "variant": f"{workers}x{threads}",
        "workers": workers,
        "threads_per_worker": threads,
        "seconds": round(seconds, 1),
        "cells_computed": len(cells),
        "cells_computed_twice": len(cells) - len(set(cells)),
        "_results": without_provenance(results),
    }


def compare_workers(
    name: str, base: str, folder: Path, variants: Sequence[str], fractions: Any
) -> list[dict]:
    rows = []
    for variant in variants:
        workers, threads = (int(x) for x in variant.split("x"))
        print(f"[{name}] {variant}: {workers} worker(s) x {threads} thread(s) ...", flush=True)
        rows.append(run_variant(base, folder / variant, workers, threads, fractions))
        print(f"[{name}] {variant}: {rows[-1]['seconds']} s", flush=True)
    ref = next((r for r in rows if r["variant"] == "1x1"), rows[0])
    two = next((r for r in rows if r["variant"] == "2x1"), None)
    for row in rows:
        row["study"] = name
        row["results_equal_1x1"] = row["_results"] == ref["_results"]
        row["time_vs_2x1"] = round(row["seconds"] / two["seconds"], 3) if two else None
    for row in rows:
        del row["_results"]
    return rows


def claim_overhead(folder: Path, repeats: int, unit_seconds: float, cells: int = 180) -> dict:
    """Claim, heartbeat and release times, and the cost of recording a cell, in ms."""
    board = ClaimBoard(StudyFolder(folder / "claims_bench"), timeout=300)
    acquire, beat_write, beat_touch, release = [], [], [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        claim = board.acquire(f"seed{i}/arm", {"phase": "starting"})
        t1 = time.perf_counter()
        assert claim is not None
        claim.status = {"phase": "cells", "cell": f"c{i}", "cells_done": i}
        claim.renew()  # the status changed: rewrite
        t2 = time.perf_counter()
        claim.renew()  # unchanged: touch
        t3 = time.perf_counter()
        claim.release()
        t4 = time.perf_counter()
        acquire.append(t1 - t0)
        beat_write.append(t2 - t1)
        beat_touch.append(t3 - t2)
        release.append(t4 - t3)
    store = CellStore(folder / "index_bench")
    keys = [CellKey(s, f"arm{a}", "task", 1.0, "knn") for s in range(5) for a in range(36)]
    keys = keys[:cells]
    record = {"metric": "auroc", "value": 0.5, "scores": [0.5] * 624, "settings": {}}
    for key in keys:  # an index of 180 cells by default, as the Kermany study's
        store.write(key, record)
    indexed, plain = [], []
    data = json.dumps(record).encode()
    for key in [CellKey(9, f"arm{a}", "task", 1.0, "knn") for a in range(repeats)]:
        t0 = time.perf_counter()
        store.write(key, record)
        t1 = time.perf_counter()
        atomic_write_bytes(folder / "plain" / key.relpath, data)
        indexed.append(t1 - t0)
        plain.append(time.perf_counter() - t1)

    def ms(values: list[float]) -> float:
        return round(1000 * sorted(values)[len(values) // 2], 3)

    interval = board.interval
    beats = unit_seconds / interval  # counted as rewrites: an upper bound
    per_unit = ms(acquire) + ms(release) + beats * ms(beat_write)
    return {
        "repeats": repeats,
        "claim_ms": ms(acquire),
        "heartbeat_rewrite_ms": ms(beat_write),
        "heartbeat_touch_ms": ms(beat_touch),
        "release_ms": ms(release),
        "heartbeat_interval_s": interval,
        "unit_seconds_assumed": unit_seconds,
        "claim_overhead_per_unit_ms": round(per_unit, 2),
        "overhead_share_of_unit": per_unit / 1000 / unit_seconds,
        "record_cell_with_index_ms": ms(indexed),
        "plain_atomic_cell_write_ms": ms(plain),
        "index_entries": f"{len(keys)} to {len(keys) + repeats}",
    }


def _wait_for(predicate: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def _claim_worker(claim: Path) -> str | None:
    try:
        return json.loads(claim.read_text()).get("worker")
    except (OSError, ValueError):
        return None


def takeover(folder: Path, timeout: float, same_machine: bool) -> dict:
    """Seconds from killing a pretraining worker to another worker's claim on its unit."""
    one_unit = tiny_study_toml("OUTPUT", arms=("simclr",), seeds=(0,), steps=5000)
    sub = folder / f"takeover_{timeout:g}_{'local' if same_machine else 'remote'}"
    if sub.exists():
        shutil.rmtree(sub)
    config = _study_file(one_unit, sub, 1, None)
    claim = sub / "out" / "claims" / "seed0-simclr.json"
    args = ("--claim-timeout", f"{timeout:g}")
    victim = _worker(config, 1, *args, host="machine-a")
    survivor = None
    try:
        _wait_for(lambda: "pretraining" in (claim.read_text() if claim.exists() else ""), 300,
                  "the first worker never started pretraining")  # fmt: skip
        host = "machine-a" if same_machine else "machine-b"
        survivor = _worker(config, 1, *args, host=host)
        assert survivor.stdout is not None
        for line in survivor.stdout:  # wait until the second worker waits for the unit
            if "held by live workers; waiting" in line:
                break
        victim.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        victim.wait()
        _wait_for(lambda: _claim_worker(claim) == f"{host}:{survivor.pid}", 10 * timeout + 60,
                  "the unit was never taken over")  # fmt: skip
        seconds = time.perf_counter() - killed
    finally:
        for proc in (victim, survivor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    interval = timeout / 10
    return {
        "claim_timeout_s": timeout,
        "case": "same machine (dead pid)" if same_machine else "another machine (timeout)",
        "takeover_s": round(seconds, 2),
        "expected_s": f"{0 if same_machine else timeout - interval:g} to "
        f"{interval if same_machine else timeout + interval:g}",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny study, half a minute")
    parser.add_argument("--run-dir", default=None, help="study folders (default: a temp dir)")
    parser.add_argument("--studies", nargs="+", default=["sample", "kermany"])
    parser.add_argument(
        "--variants", nargs="+", default=None, help="AxT runs (default 1x1 2x1 1x2; smoke 1x1 2x1)"
    )
    parser.add_argument("--kermany-variants", nargs="+", default=["1x1", "2x1"])
    parser.add_argument("--kermany-fractions", nargs="+", type=float, default=[0.1, 1.0])
    parser.add_argument(
        "--kermany-config",
        type=Path,
        default=CONFIGS / "study_kermany_cpu.toml",
        help="the Kermany study file the slice is cut from (seeds 0-1, --kermany-fractions)",
    )
    parser.add_argument("--timeouts", nargs="+", type=float, default=[2.0, 5.0, 10.0])
    parser.add_argument("--repeats", type=int, default=200, help="claim-overhead repeats")
    parser.add_argument(
        "--name", default=None, help="results file stem (default workers; smoke workers_smoke)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.studies, args.variants = ["tiny"], args.variants or ["1x1", "2x1"]
        args.timeouts, args.repeats = [1.0], 20
    args.variants = args.variants or ["1x1", "2x1", "1x2"]
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="workers-"))
    load_start = round(os.getloadavg()[0], 2)
    rows: list[dict] = []
    for name in args.studies:
        if name == "tiny":
            rows += compare_workers(name, TINY, run_dir / name, args.variants, None)
        elif name == "sample":
            base = (CONFIGS / "study_sample.toml").read_text()
            rows += compare_workers(name, base, run_dir / name, args.variants, None)
        elif name == "kermany":
            if not (data_root() / "README.md").exists():
                print(f"[kermany] skipped: no shared data at {data_root()}", flush=True)
                continue
            base = _set(args.kermany_config.read_text(), "seeds", "[0, 1]")
            rows += compare_workers(
                "kermany (seeds 0-1)", base, run_dir / name, args.kermany_variants,
                args.kermany_fractions,
            )  # fmt: skip
        else:
            raise SystemExit(f"unknown study {name!r}; allowed: sample, kermany")
    unit_seconds = 10.0 if args.smoke else 400.0  # a Kermany unit takes about 400 s
    overhead = claim_overhead(run_dir, args.repeats, unit_seconds, 20 if args.smoke else 180)
    takeovers = [takeover(run_dir, t, same_machine=False) for t in args.timeouts]
    if not args.smoke:
        takeovers.append(takeover(run_dir, args.timeouts[0], same_machine=True))
    name = args.name or ("workers_smoke" if args.smoke else "workers")
    load_end = round(os.getloadavg()[0], 2)
    notes = (
        f"Load average (1 min) {load_start} at the start, {load_end} at the end (the workers' own "
        f"load counts; on {os.cpu_count()} cores a start value near the core count means other "
        "work shared the machine and times are noisy). `AxT`: A worker "
        "processes (`study FILE --worker`) with T torch threads each, on one output folder; "
        "wall time of the whole command from scratch. `results_equal_1x1`: `results.json` "
        "equals the one-worker one in every statistical field (`without_provenance`)."
    )
    body = "\n".join(
        [
            "## 1 vs 2 workers", "", markdown_table(rows),
            "## Claim overhead (median, ms)", "", markdown_table([overhead]),
            "## Takeover of a killed worker's unit", "", markdown_table(takeovers),
        ]
    )  # fmt: skip
    json_path, md_path = write_results(
        name,
        {"workers": rows, "claim_overhead": overhead, "takeover": takeovers},
        config={**vars(args), "run_dir": str(run_dir)},
        markdown=body,
        title="Studies with several workers on one folder",
        notes=notes,
    )
    print(f"wrote {json_path} and {md_path}")
    if not args.run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
