"""Units of work: one per (arm, seed), with a stable index, their state and time left.

A unit pretrains one arm with one seed and computes every cell of that backbone (every
task, label fraction and protocol); it depends on nothing else, so units can run in
any order, in any number of processes or machines. Unit ``K`` is
``seeds[K // len(arms)]`` with ``arms[K % len(arms)]``: seed-major, in the order of the
study file (``K = seed position x number of arms + arm position``), which is also the
order a single process computes them in. ``--unit K`` and a job array index use it.

Claims are named by the unit's seed and arm, not by ``K``, so a study file that adds
seeds or arms (and thereby shifts indices) still agrees with running workers.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_curriculum.study.arms import Arm
from cxr_curriculum.study.cells import CellKey
from cxr_curriculum.study.claim_info import ClaimInfo
from cxr_curriculum.study.claims import ClaimBoard

if TYPE_CHECKING:
    from cxr_curriculum.study.study import Study

__all__ = [
    "Unit",
    "UnitStatus",
    "estimate_left",
    "format_units",
    "pretraining_progress",
    "unit_status",
]


@dataclass(frozen=True)
class Unit:
    """One (arm, seed): pretrain once, then compute every cell of that backbone.

    Attributes:
        index: Position in :meth:`Study.units` (seed-major).
        arm: The arm.
        seed: The training seed.
        cells: The unit's cells, in the order they are computed.
    """

    index: int
    arm: Arm
    seed: int
    cells: tuple[CellKey, ...]

    @property
    def name(self) -> str:
        """``seed<k>/<arm folder>``: names the unit's claim and its timing record."""
        return f"seed{self.seed}/{self.arm.folder}"


@dataclass(frozen=True)
class UnitStatus:
    """Where one unit stands.

    Attributes:
        unit: The unit.
        done: Its finished cells.
        state: ``"done"``, ``"claimed"`` (a live worker holds it), ``"stale"`` (its
            worker stopped renewing the claim; the next worker takes it over), ``"to
            do"`` or ``"not measured"`` (its arm's ImageNet weights are missing offline:
            finished as far as workers and reports go).
        claim: The claim on it, if any.
        seconds: Wall time recorded when it finished (``None`` if not recorded).
    """

    unit: Unit
    done: tuple[CellKey, ...]
    state: str
    claim: ClaimInfo | None = None
    seconds: float | None = None

    def describe(self) -> str:
        """``"claimed by host:pid ...: pretraining stage 1/2 simclr, step 40/100"``."""
        if self.state == "done":
            took = "" if self.seconds is None else f" in {self.seconds:.0f} s"
            return f"done{took}"
        if self.state == "not measured":
            return "not measured"
        if self.claim is None:
            return "to do"
        text = self.claim.describe()
        if self.state == "stale":
            text = f"stale: {text}; the next worker takes it over"
        doing = _doing(self.claim.status)
        return f"{text}: {doing}" if doing else text


def unit_status(study: Study, board: ClaimBoard | None) -> list[UnitStatus]:
    """Every unit's finished cells (read and verified), claim and state.

    An arm in ``study.unavailable`` (ImageNet weights missing offline) is ``"not
    measured"``; ``board=None`` ignores claims.
    """
    study.store.refresh()
    recorded = study.store.units()
    out = []
    for unit in study.units():
        done = tuple(k for k in unit.cells if study.store.read(k, study.settings(k)) is not None)
        claim = board.read(unit.name) if board is not None else None
        if unit.arm.name in study.unavailable:
            state = "not measured"
        elif len(done) == len(unit.cells):
            state = "done"
        elif claim is None or board is None:
            state = "to do"
        else:
            state = "stale" if claim.stale(board.timeout) else "claimed"
        seconds = recorded.get(unit.name, {}).get("seconds") if state == "done" else None
        out.append(UnitStatus(unit, done, state, claim, seconds))
    return out


def _doing(status: dict[str, Any]) -> str:
    phase = status.get("phase")
    if phase == "pretraining":
        step = status.get("step")
        where = f", step {step}/{status.get('steps', '?')}" if step is not None else ""
        return f"pretraining stage {status.get('stage', '?')}{where}"
    if phase == "cells":
        return f"cell {status.get('cell', '?')} ({status.get('cells_done', 0)} done)"
    return str(phase or "")


def pretraining_progress(checkpoint_dir: str | os.PathLike[str], arm: Arm) -> dict[str, Any]:
    """The stage and step a running pretraining reached, from its ``metrics.csv`` files.

    Stages log a row every ``log_every`` steps (10 by default), so the step lags by up
    to that many.
    """
    folders = sorted(Path(checkpoint_dir).glob("stage[0-9][0-9]-*"))
    if not folders:
        return {}
    folder = folders[-1]
    index = int(folder.name[5:7])
    out: dict[str, Any] = {
        "stage": f"{index + 1}/{len(arm.stages)} {folder.name[8:]}",
        "steps": arm.stages[index].steps if index < len(arm.stages) else None,
    }
    try:
        with (folder / "metrics.csv").open("rb") as f:
            head = f.readline().decode()
            f.seek(max(0, f.seek(0, 2) - 4096))
            last = f.read().decode(errors="replace").rstrip("\n").rsplit("\n", 1)[-1]
        row = next(csv.DictReader(io.StringIO(head + last + "\n")))
        out["step"] = int(row["step"])
    except (OSError, StopIteration, KeyError, ValueError):
        pass
    return out


def estimate_left(statuses: list[UnitStatus], study: Study) -> dict[str, Any]:
    """Work left in seconds, from the finished units' timings (per arm where possible).

    A finished unit's time is its recorded wall time, else the pretraining plus cell
    seconds its cells recorded. Units of an arm with no finished unit count at the mean
    over every finished unit. Units that are ``"not measured"`` are not left. Returns
    ``seconds`` (``None`` before any unit finished), ``units_left`` and ``live_workers``.
    """
    per_arm: dict[str, list[float]] = {}
    for s in statuses:
        if s.state == "done":
            seconds = s.seconds if s.seconds is not None else _from_cells(study, s.done)
            if seconds is not None:
                per_arm.setdefault(s.unit.arm.name, []).append(seconds)
    left = [s for s in statuses if s.state not in ("done", "not measured")]
    workers = {s.claim.worker for s in left if s.state == "claimed" and s.claim}
    every = [t for times in per_arm.values() for t in times]
    if not every:
        return {"seconds": None, "units_left": len(left), "live_workers": len(workers)}
    total = 0.0
    for s in left:
        times = per_arm.get(s.unit.arm.name) or every
        total += sum(times) / len(times)
    return {"seconds": total, "units_left": len(left), "live_workers": len(workers)}


def _from_cells(study: Study, cells: tuple[CellKey, ...]) -> float | None:
    seconds, pretrain = 0.0, None
    for key in cells:
        record = study.store.read(key)
        if record is None:
            return None
        seconds += float(record.get("seconds", 0.0))
        pretrain = record.get("pretrain", {}).get("seconds", pretrain)
    return seconds + float(pretrain or 0.0)


def format_units(study: Study, statuses: list[UnitStatus]) -> str:
    """The ``--list-units`` table: every unit, its cells and state, and the time left."""
    states = ("done", "claimed", "stale", "to do", "not measured")
    counts = {k: sum(s.state == k for s in statuses) for k in states}
    cells = sum(len(s.unit.cells) for s in statuses)
    done = sum(len(s.done) for s in statuses)
    unmeasured = counts["not measured"]
    also = f", {unmeasured} not measured" if unmeasured else ""
    lines = [
        f"study {study.output}: {len(statuses)} units (arm x seed), {counts['done']} done, "
        f"{counts['claimed']} claimed, {counts['stale']} stale, "
        f"{counts['to do']} to do{also}; {done} of {cells} cells done",
        f"{'unit':>4}  {'seed':>4}  {'arm':<20} {'cells':>5}  state",
    ]
    for s in statuses:
        u = s.unit
        lines.append(
            f"{u.index:>4}  {u.seed:>4}  {u.arm.name:<20} "
            f"{len(s.done)}/{len(u.cells):<3}  {_state(study, s)}"
        )
        finished = set(s.done)
        marks = [
            f"[{'x' if k in finished else ' '}] {k.task}/{k.protocol}-f{k.fraction:g}"
            for k in u.cells
        ]
        lines.append("        " + "  ".join(marks))
    eta = estimate_left(statuses, study)
    if eta["units_left"] == 0:
        lines.append(f"every unit is done ({unmeasured} not measured)" if unmeasured else
                     "every unit is done")  # fmt: skip
    elif eta["seconds"] is None:
        lines.append(f"{_units(eta['units_left'])} left; time left: unknown until a unit finishes")
    else:
        workers = max(1, eta["live_workers"])
        wall = eta["seconds"] / workers
        lines.append(
            f"{_units(eta['units_left'])} left: about {_minutes(eta['seconds'])} of work "
            f"(per-arm mean of finished units), about {_minutes(wall)} with "
            f"{workers} worker{'s' if workers > 1 else ''}"
        )
    return "\n".join(lines)


def _state(study: Study, status: UnitStatus) -> str:
    """The unit's state in the listing; a "not measured" unit says why (``unavailable``)."""
    if status.state == "not measured":
        return str(study.unavailable.get(status.unit.arm.name) or "not measured")
    return status.describe()


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def _minutes(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
