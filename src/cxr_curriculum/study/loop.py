"""The work loop of a study process: claim a unit, compute it, repeat; the last reports.

Every study process is a worker (``Study.run``, ``study FILE``, ``study FILE --worker``):

1. it takes the unfinished unit with the lowest index that nobody holds (a claim,
   :mod:`.claims`), then, when none is left, a unit whose claim went stale;
2. it computes the unit (pretraining resumes from the stale worker's checkpoints);
3. when only units held by live workers remain, it waits (polling every
   :data:`WAIT_POLL_SECONDS`, or every tenth of the claim timeout if that is shorter) in
   case one of them dies, and stops as soon as every unit is done.

The worker whose unit completes the study writes ``results.json`` and ``report.md``; so
does a process that finds nothing left to do when it starts, and a waiting worker that
finds every unit finished but one still claimed (its worker died after the unit's last
cell, before it could record the unit and report). A worker that completes
the last unit of a seed writes partial results too. Report writes are serialised by a
lock, and each re-reads the cells, so the last one written is the most complete.

Under ``torchrun`` (``WORLD_SIZE > 1``) no claims are taken: every rank walks the units
in index order (rank 0 writes), as a single process does; run one ``torchrun`` per
unit (``--unit K``) to spread units over machines.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cxr_curriculum.study.claims import ClaimBoard
from cxr_curriculum.study.heartbeat import Claim
from cxr_curriculum.study.units import Unit, UnitStatus
from cxr_curriculum.study.worker import ArmSeedWorker, ClaimLostError, is_main

if TYPE_CHECKING:
    from cxr_curriculum.study.study import Study

__all__ = ["WAIT_POLL_SECONDS", "WorkLoop", "distributed"]

logger = logging.getLogger("cxr_curriculum.study")

#: Longest pause between two looks at the folder while a worker waits for other workers'
#: units: it exits at most this long after the study is done (reading the claims is
#: cheap; a tenth of the claim timeout, 30 s by default, kept idle workers up to 30 s).
WAIT_POLL_SECONDS = 2.0


def distributed() -> bool:
    """Whether this process is one rank of several (``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class WorkLoop:
    """Claims and computes units until the study (or the budget) is done.

    Args:
        study: The study.
        worker: Computes a unit's cells.
        board: The claims (``None`` under torchrun: no claims).
        max_cells: Stop after this many new cells.
    """

    def __init__(
        self, study: Study, worker: ArmSeedWorker, board: ClaimBoard | None, max_cells: int | None
    ) -> None:
        self.study, self.worker, self.board, self.max_cells = study, worker, board, max_cells
        self.report_due = False
        self.units_done = 0

    def _budget(self) -> int | None:
        return None if self.max_cells is None else self.max_cells - self.worker.computed

    def _spent(self) -> bool:
        budget = self._budget()
        return budget is not None and budget <= 0

    def run_all(self) -> None:
        """Compute units until every unit is done (waiting for live workers' units)."""
        first, waiting = True, False
        while not self._spent():
            statuses = self.study.unit_status(self.board)
            open_ = [s for s in statuses if s.state in ("to do", "stale", "claimed")]
            if not open_:
                # A finished unit still claimed: its worker may have died after its last
                # cell, before recording the unit and writing the report (or is about to
                # write it; a second report write is harmless).
                held = any(s.claim is not None for s in statuses)
                self.report_due = self.report_due or first or held
                self._tidy(statuses)
                return
            first = False
            if self.board is None:
                for s in open_:
                    self.compute(s.unit, None)
                    if self._spent():
                        return
                continue
            if self._take_one(open_):
                waiting = False
                continue
            poll = min(self.board.interval, WAIT_POLL_SECONDS)
            if not waiting:  # only live workers' units are left
                waiting = True
                logger.info(
                    "units %s are held by live workers; waiting, checking every %.1f s, to "
                    "take over any whose claim goes stale",
                    [s.unit.index for s in open_], poll,
                )  # fmt: skip
            time.sleep(poll)

    def _tidy(self, statuses: list[UnitStatus]) -> None:
        """Remove stale claims left on finished units (a worker killed after its last cell)."""
        if self.board is None:
            return
        for s in statuses:
            stale = s.claim is not None and s.claim.stale(self.board.timeout)
            if stale and self.board.discard_stale(s.unit.name):
                logger.info("removed the stale claim of finished unit %s", s.unit.name)

    def _take_one(self, open_: list[UnitStatus]) -> bool:
        assert self.board is not None
        ranked = sorted(
            (s for s in open_ if s.state != "claimed"),
            key=lambda s: (s.state == "stale", s.unit.index),
        )  # units nobody holds first, then stale claims
        for s in ranked:
            claim = self.board.acquire(s.unit.name, {"phase": "starting", "unit": s.unit.index})
            if claim is not None:
                self.compute(s.unit, claim)
                return True
        return False

    def run_one(self, unit: Unit) -> None:
        """Compute unit ``unit`` only (``--unit K``).

        Raises:
            StudyFolderError: A live worker holds the unit.
        """
        from cxr_curriculum.study.folder import StudyFolderError

        status = next(s for s in self.study.unit_status(self.board) if s.unit == unit)
        if status.state in ("done", "not measured"):
            logger.info("unit %d (%s) is %s", unit.index, unit.name, status.state)
            self.report_due = self._complete()
            return
        claim = None
        if self.board is not None:
            claim = self.board.acquire(unit.name, {"phase": "starting", "unit": unit.index})
            if claim is None:
                held = self.board.read(unit.name)
                raise StudyFolderError(
                    f"unit {unit.index} ({unit.name}) of {self.study.output} is being computed: "
                    f"{held.describe() if held else 'claimed'}; it is taken over only once its "
                    f"claim has not been renewed for {self.board.timeout:g} s"
                )
        self.compute(unit, claim)

    def compute(self, unit: Unit, claim: Claim | None) -> None:
        """Compute the unfinished cells of ``unit`` (holding ``claim``, if any)."""
        if claim is None:
            self._compute(unit, None)
            return
        with claim:
            if claim.taken_over is not None:
                logger.warning(
                    "unit %d (%s): took over from a stale claim: %s",
                    unit.index, unit.name, claim.taken_over.describe(),
                )  # fmt: skip
            try:
                self._compute(unit, claim)
            except ClaimLostError as err:
                logger.warning("unit %d (%s) abandoned: %s", unit.index, unit.name, err)

    def _compute(self, unit: Unit, claim: Claim | None) -> None:
        study = self.study
        study.store.refresh()
        todo = [k for k in unit.cells if study.store.read(k, study.settings(k)) is None]
        if not todo:
            return
        worker = claim.payload["worker"] if claim is not None else "this process"
        logger.info(
            "unit %d (%s, seed %d): %d cells to compute, by %s",
            unit.index, unit.arm.name, unit.seed, len(todo), worker,
        )  # fmt: skip
        start = time.perf_counter()
        computed = self.worker.run(unit.arm, unit.seed, todo, self._budget(), claim)
        if computed < len(todo) or not is_main():
            return
        seconds = round(time.perf_counter() - start, 2)
        info: dict[str, Any] = {
            "seconds": seconds,
            "worker": worker,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        indexed = study.store.record_unit(unit.name, info)
        self.units_done += 1
        logger.info("unit %d (%s) done in %.1f s", unit.index, unit.name, seconds)
        if self._complete(indexed):
            self.report_due = True
        elif all(k.relpath in indexed for k in study.cells() if k.seed == unit.seed):
            study.write_report()  # partial results after every complete seed

    def _complete(self, indexed: set[str] | None = None) -> bool:
        study = self.study
        if indexed is None:
            study.store.refresh()
            indexed = set(study.store.keys())
        skip = set(study.unavailable)
        return all(k.relpath in indexed for k in study.cells() if k.arm not in skip)
