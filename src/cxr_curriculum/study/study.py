"""``Study``: arms x seeds x tasks x label fractions x protocols, resumable cell by cell.

A study answers "does this curriculum beat one stage, ImageNet or scratch, and does the
better model look at the lungs?" with several training seeds, budget-matched arms and
statistics across runs (:mod:`.statistics`). Work runs in seed-major order (every arm
and cell of seed 0, then seed 1, ...) so that a partial study holds complete seeds.
Each (arm, seed) pretraining runs once and serves every downstream cell of it; each
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
from cxr_curriculum.data import dataset_files
from cxr_curriculum.study.arms import Arm, check_budgets
from cxr_curriculum.study.cells import CellKey, CellStore
from cxr_curriculum.study.results import StudyResults
from cxr_curriculum.study.runner import PROTOCOLS, Protocols
from cxr_curriculum.study.tasks import Task
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
            no arm has stages).
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
        self.pretrain_data, self.arch = pretrain_data, arch
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
        """Per task, how many test images are also in the pretraining pool (by file).

        Unlabelled use of test images in pretraining is transductive; the report says
        so. Datasets that do not list their files count as 0.
        """
        pool = dataset_files(self.pretrain_data) if self.pretrain_data is not None else None
        names = {Path(f).name for f in pool or ()}
        out = {}
        for task in self.tasks:
            files = dataset_files(task.datasets[1]) or []
            out[task.name] = sum(Path(f).name in names for f in files)
        return out

    def pending(self) -> list[CellKey]:
        """Cells not finished yet (a finished cell with changed settings raises)."""
        return [k for k in self.cells() if self.store.read(k, self.settings(k)) is None]

    # ------------------------------------------------------------------ running
    def run(self, *, max_cells: int | None = None, on_cell: OnCell | None = None) -> StudyResults:
        """Compute every unfinished cell, then write ``results.json`` and ``report.md``.

        Args:
            max_cells: Stop after computing this many cells (a partial study resumes).
            on_cell: Called as ``on_cell(key, record)`` after each cell is written.

        Returns:
            The :class:`StudyResults` of every finished cell.
        """
        pending = self.pending()
        main = is_main()
        total = len(self.cells())
        if self.loggers and main:
            on_cell = log_cell(self.loggers, on_cell)
        bar = tqdm(
            total=total,
            initial=total - len(pending),
            desc="study cells",
            unit="cell",
            disable=not main or (self.progress is False) or (self.progress is None and not _tty()),
        )
        worker = ArmSeedWorker(self, bar, total - len(pending), total, on_cell)
        done = 0
        try:
            for seed in self.seeds:
                before = done
                for arm in self.arms:
                    todo = [k for k in pending if k.seed == seed and k.arm == arm.name]
                    if not todo or (max_cells is not None and done >= max_cells):
                        continue
                    budget = None if max_cells is None else max_cells - done
                    done += worker.run(arm, seed, todo, budget)
                if main and done > before and seed != self.seeds[-1]:
                    self.results().write(self.output)  # partial results after every seed
        finally:
            bar.close()
        results = self.results()
        if main:
            results.write(self.output)
        return results

    # ------------------------------------------------------------------ results
    def results(self) -> StudyResults:
        """The statistics of every finished cell (no computation of new cells)."""
        finished = {}
        for key in self.cells():
            record = self.store.read(key, self.settings(key))
            if record is not None:
                finished[key] = record
        return StudyResults(self, finished)


def _tty() -> bool:
    return sys.stderr.isatty()
