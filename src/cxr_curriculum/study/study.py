"""``Study``: arms x seeds x tasks x label fractions x protocols, resumable cell by cell.

A study answers "does this curriculum beat one stage, ImageNet or scratch, and does the
better model look at the lungs?" with several training seeds, budget-matched arms and
statistics across runs (:mod:`.statistics`). The work is split into **units**, one per
(arm, seed) (:mod:`.units`): each pretrains once and computes every downstream cell of
that backbone. Units run in seed-major order (every arm of seed 0, then seed 1, ...) so
that a partial study holds complete seeds, and any number of processes may work on one
output folder at once, each claiming units (:mod:`.claims`, :mod:`.loop`). Each
finished cell is a small JSON (:mod:`.cells`), so a killed study resumes where it
stopped. See ``docs/study.md``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cxr_curriculum.curriculum import KEEP, Keep, MetricLogger, data_fingerprint
from cxr_curriculum.curriculum.loggers import check_loggers, log_cell
from cxr_curriculum.data import PoolExclusion, dataset_files, exclude_test_images
from cxr_curriculum.data.exclusion import file_key
from cxr_curriculum.study.arms import Arm, check_budgets
from cxr_curriculum.study.cells import CellKey, CellStore
from cxr_curriculum.study.claims import DEFAULT_CLAIM_TIMEOUT, ClaimBoard
from cxr_curriculum.study.design import check_design
from cxr_curriculum.study.loop import WorkLoop, distributed
from cxr_curriculum.study.results import StudyResults
from cxr_curriculum.study.runner import PROTOCOLS, Protocols, imagenet_status
from cxr_curriculum.study.tasks import Task
from cxr_curriculum.study.units import Unit, UnitStatus, unit_status
from cxr_curriculum.study.worker import ArmSeedWorker, OnCell, is_main

__all__ = ["Study"]


class Study:
    """A multi-seed, budget-matched comparison of pretraining arms.

    Args:
        arms: The arms (unique names; pretraining arms must have equal budgets).
        seeds: Training seeds (each arm is pretrained once per seed).
        tasks: Downstream tasks, e.g. ``[KermanyTask()]``.
        output: Folder of the cell JSONs, ``index.json``, ``results.json`` and ``report.md``.
        pretrain_data: Unlabelled images of every pretraining stage (``None`` only when
            no arm has stages). The images of every task's test patients are removed
            from it before pretraining (see ``exclude_test_patients``).
        pretrain_dir: Folder of the pretraining checkpoints (large; default
            ``output/pretrain``; keep it out of version control).
        arch: Backbone architecture (:class:`~cxr_curriculum.Backbone` name).
        batch_size: Pretraining batch size of stages that do not set their own.
        image_size: Pretraining and evaluation image side in pixels.
        fractions: Label fractions of the downstream training sets.
        protocols: Subset of ``("knn", "linear_probe", "fine_tune")``.
        protocol_settings: :class:`~cxr_curriculum.study.runner.Protocols`.
        device: Pretraining device (``None``: the Curriculum's choice).
        workers: DataLoader workers of the pretraining stages.
        progress: Show a progress bar of cells (``None``: when stderr is a terminal).
        exclude_test_patients: Keep every task's test patients out of ``pretrain_data``
            (:func:`~cxr_curriculum.data.exclude_test_images`: by patient id within one
            archive, by file otherwise); :attr:`pool_exclusion` and the report count the
            images removed. ``False`` pretrains on ``pretrain_data`` as given (the report
            then counts the test patients' images left in).
        keep: What each arm's pretraining keeps once it is done (``Curriculum(keep=)``):
            ``"final"`` (default) only ``pretrain_dir/<arm>/seed<k>/backbone.safetensors``
            (about 43 MB for a ResNet-18), ``"backbones"`` also each stage's backbone,
            ``"all"`` also each stage's ``final.pt``.
        loggers: Metric loggers (``TensorBoardLogger(dir)`` or any callable
            ``logger(group, metrics, step)``, :mod:`cxr_curriculum.curriculum.loggers`):
            every pretraining row goes to group ``pretrain/<arm>/seed<k>/<stage folder>``
            and every finished cell's metric to group
            ``cells/<task>/<metric>/<protocol>/<fraction>`` as ``{<arm>: value}`` at step
            ``seed``. They are flushed after each cell.

    Raises:
        ValueError: On mismatched budgets, duplicate names or invalid settings.
    """

    def __init__(
        self,
        arms: Sequence[Arm],
        seeds: Sequence[int],
        tasks: Sequence[Task],
        output: str | os.PathLike[str],
        *,
        pretrain_data: Dataset[Any] | None = None,
        pretrain_dir: str | os.PathLike[str] | None = None,
        arch: str = "resnet18",
        batch_size: int = 32,
        image_size: int = 64,
        fractions: Sequence[float] = (0.01, 0.1, 1.0),
        protocols: Sequence[str] = PROTOCOLS,
        protocol_settings: Protocols | None = None,
        device: str | torch.device | None = None,
        workers: int = 0,
        progress: bool | None = None,
        exclude_test_patients: bool = True,
        keep: Keep = "final",
        loggers: Sequence[MetricLogger] = (),
    ) -> None:
        self.arms, self.tasks = list(arms), list(tasks)
        self.seeds = [int(s) for s in seeds]
        if not self.arms or not self.seeds or not self.tasks:
            raise ValueError("a study needs at least one arm, one seed and one task")
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct ints >= 0; got {self.seeds}")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique; got {names}")
        bad = [p for p in protocols if p not in PROTOCOLS]
        if bad or not protocols:
            raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}; got {bad}")
        if not fractions or not all(0.0 < float(f) <= 1.0 for f in fractions):
            raise ValueError(f"fractions must lie in (0, 1]; got {list(fractions)}")
        self.budget = check_budgets(self.arms, batch_size)
        if pretrain_data is None and any(a.stages for a in self.arms):
            raise ValueError("pretrain_data is required when an arm has stages")
        self.output = Path(output)
        self.pretrain_dir = Path(pretrain_dir) if pretrain_dir else self.output / "pretrain"
        self.pool_source, self.arch = pretrain_data, arch
        self.exclude_test_patients = bool(exclude_test_patients)
        self._pool: tuple[Dataset[Any] | None, dict[str, PoolExclusion]] | None = None
        self._checked: list[str] | None = None
        self.batch_size, self.image_size = int(batch_size), int(image_size)
        self.fractions = [float(f) for f in fractions]
        self.protocols = [p for p in PROTOCOLS if p in protocols]
        self.protocol_settings = protocol_settings or Protocols()
        self.device, self.workers, self.progress = device, workers, progress
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}; got {keep!r}")
        self.keep: Keep = keep
        self.loggers = check_loggers(loggers)
        self.store = CellStore(self.output)
        self._pool_fp: str | None = None
        self.unavailable: dict[str, str] = {}
        #: The study file this study was read from (``None``: built in Python); the
        #: output folder's design record names it.
        self.source: str | None = None
        #: Whether the last :meth:`run` wrote the final (or, stopped early, the partial)
        #: ``results.json`` and ``report.md``.
        self.reported = False
        self._imagenet_checked: set[str] = set()

    # ------------------------------------------------------------------ pool
    def _filtered_pool(self) -> tuple[Dataset[Any] | None, dict[str, PoolExclusion]]:
        if self._pool is None:
            data = self.pool_source
            if data is None:
                self._pool = (None, {})
            else:
                tests = {t.name: t.datasets[1] for t in self.tasks}
                kept, counts = exclude_test_images(data, tests)
                self._pool = (kept if self.exclude_test_patients else data, counts)
        return self._pool

    @property
    def pretrain_data(self) -> Dataset[Any] | None:
        """The pretraining images: ``pretrain_data`` less every task's test patients.

        With ``exclude_test_patients=False``, ``pretrain_data`` as given. Computed on
        first use (it loads every task's test set).
        """
        return self._filtered_pool()[0]

    @property
    def pool_exclusion(self) -> dict[str, PoolExclusion]:
        """Per task, the pool images of its test patients: removed, or (when
        ``exclude_test_patients`` is False) left in."""
        return self._filtered_pool()[1]

    def check(self) -> list[str]:
        """Load and check every task, every file start and the pretraining images.

        Runs before any training (:meth:`run` calls it); see
        :func:`cxr_curriculum.study.check.check_study`. The result is kept: a second
        call returns it without checking again.

        Returns:
            Lines that summarise what was checked (tasks, classes, pool, removals).

        Raises:
            ValueError: Naming the task, arm or file at fault.
        """
        from cxr_curriculum.study.check import check_study

        if self._checked is None:
            self._checked = check_study(self)
        return list(self._checked)

    # ------------------------------------------------------------------ cells
    def cells(self) -> list[CellKey]:
        """Every cell, in the order the study computes them (seed-major)."""
        return [
            CellKey(seed, arm.name, task.name, fraction, protocol)
            for seed in self.seeds
            for arm in self.arms
            for task in self.tasks
            for fraction in self.fractions
            for protocol in self.protocols
        ]

    def settings(self, key: CellKey) -> dict[str, Any]:
        """Everything that changes the cell's result (a finished cell must match it)."""
        arm = next(a for a in self.arms if a.name == key.arm)
        task = next(t for t in self.tasks if t.name == key.task)
        if self._pool_fp is None:
            data = self.pretrain_data
            self._pool_fp = "" if data is None else data_fingerprint(data)
        return {
            "arm": arm.config(self.batch_size, self.image_size),
            "pretrain": {
                "arch": self.arch,
                "data": self._pool_fp if arm.stages else None,
                "image_size": self.image_size,
            },
            "task": task.config(),
            "protocol": self.protocol_settings.config(key.protocol),
            "fraction": key.fraction,
            "seed": key.seed,
        }

    def pretraining_overlap(self) -> dict[str, int]:
        """Per task, how many test images are also in the pretraining pool (same file).

        Files are compared by absolute path (:func:`~cxr_curriculum.data.file_key`),
        never by name alone: archives such as CheXpert repeat names
        (``view1_frontal.jpg``) across patients. Unlabelled use of test images in
        pretraining is transductive; the report says so. Datasets that do not list their
        files count as 0.
        """
        pool = dataset_files(self.pretrain_data) if self.pretrain_data is not None else None
        keys = {file_key(f) for f in pool or ()}
        out = {}
        for task in self.tasks:
            files = dataset_files(task.datasets[1]) or []
            out[task.name] = sum(file_key(f) in keys for f in files)
        return out

    def pending(self) -> list[CellKey]:
        """Cells not finished yet (a finished cell with changed settings raises)."""
        self.store.refresh()
        return [k for k in self.cells() if self.store.read(k, self.settings(k)) is None]

    # ------------------------------------------------------------------ units
    def units(self) -> list[Unit]:
        """Every (arm, seed) unit: unit ``K`` is ``seeds[K // A]`` with ``arms[K % A]``."""
        cells = self.cells()
        out: list[Unit] = []
        for seed in self.seeds:
            for arm in self.arms:
                keys = tuple(k for k in cells if k.seed == seed and k.arm == arm.name)
                out.append(Unit(len(out), arm, seed, keys))
        return out

    def unit_status(
        self, claims: ClaimBoard | float | None = DEFAULT_CLAIM_TIMEOUT
    ) -> list[UnitStatus]:
        """Where every unit stands: finished cells, claim, state (see :class:`UnitStatus`).

        Args:
            claims: The claims (or the claim timeout in seconds that makes one stale);
                ``None`` ignores claims.
        """
        board = claims
        if claims is not None and not isinstance(claims, ClaimBoard):
            board = ClaimBoard(self.store.folder, float(claims))
        self._check_imagenet()
        return unit_status(self, board if isinstance(board, ClaimBoard) else None)

    def _check_imagenet(self) -> None:
        for arm in self.arms:
            if arm.start == "imagenet" and arm.name not in self._imagenet_checked:
                self._imagenet_checked.add(arm.name)
                status = imagenet_status(arm, self.arch)
                if status is not None:
                    self.unavailable[arm.name] = status

    # ------------------------------------------------------------------ running
    def run(
        self,
        *,
        max_cells: int | None = None,
        on_cell: OnCell | None = None,
        unit: int | None = None,
        claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    ) -> StudyResults:
        """Compute unfinished units as one worker, then write the report if it is due.

        Any number of processes may run this on one output folder at once (see
        :mod:`cxr_curriculum.study.loop`): each claims the next unit nobody holds, takes
        over units whose claim went stale, waits while live workers hold the rest, and
        the one that completes the study writes ``results.json`` and ``report.md``.

        Args:
            max_cells: Stop after computing this many cells (a partial study resumes);
                the partial results are written.
            on_cell: Called as ``on_cell(key, record)`` after each cell is written.
            unit: Compute unit ``unit`` only (its index in :meth:`units`); if that
                completes the study, the report is written.
            claim_timeout: Seconds without a heartbeat after which a claim is stale.

        Returns:
            The :class:`StudyResults` of every finished cell.

        Raises:
            StudyFolderError: The output folder belongs to a different study (checked
                before any work), or ``unit`` is held by a live worker.
            ArtefactWriteError: The output folder is read-only or full.
        """
        self.check()
        self.reported = False
        units = self.units()
        if unit is not None and not 0 <= unit < len(units):
            raise ValueError(f"unit must lie in 0..{len(units) - 1} for this study; got {unit}")
        main = is_main()
        board = None if distributed() else ClaimBoard(self.store.folder, claim_timeout)
        check_design(self, record=main)  # after every argument is checked
        total = len(self.cells())
        if self.loggers and main:
            on_cell = log_cell(self.loggers, on_cell)
        bar = tqdm(
            total=total,
            initial=total - len(self.pending()),
            desc="study cells",
            unit="cell",
            disable=not main or (self.progress is False) or (self.progress is None and not _tty()),
        )
        loop = WorkLoop(self, ArmSeedWorker(self, bar, on_cell), board, max_cells)
        try:
            if unit is None:
                loop.run_all()
            else:
                loop.run_one(units[unit])
        finally:
            bar.close()
        stopped_early = max_cells is not None and loop.worker.computed >= max_cells
        self.reported = main and (loop.report_due or stopped_early)
        return self.write_report() if self.reported else self.results()

    def run_worker(self, *, claim_timeout: float = DEFAULT_CLAIM_TIMEOUT) -> StudyResults:
        """``study FILE --worker``: :meth:`run` without a progress bar (logs only)."""
        progress, self.progress = self.progress, False
        try:
            return self.run(claim_timeout=claim_timeout)
        finally:
            self.progress = progress

    def write_report(self) -> StudyResults:
        """Write ``results.json`` and ``report.md`` from every finished cell.

        Report writes of several workers are serialised, and each re-reads the cells.
        """
        with self.store.folder.lock(".report.lock"):
            self._check_imagenet()
            self.store.refresh()
            results = self.results()
            results.write(self.output)
        self.reported = True
        return results

    # ------------------------------------------------------------------ results
    def results(self) -> StudyResults:
        """The statistics of every finished cell (no computation of new cells)."""
        self.store.refresh()
        finished = {}
        for key in self.cells():
            record = self.store.read(key, self.settings(key))
            if record is not None:
                finished[key] = record
        return StudyResults(self, finished)


def _tty() -> bool:
    return sys.stderr.isatty()
