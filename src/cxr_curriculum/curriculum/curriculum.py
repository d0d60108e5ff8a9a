"""The :class:`Curriculum`: stages run in order, each from the previous stage's backbone.

Curricular self-supervised pretraining (arXiv 2301.10687, arXiv 2112.12086) trains a
sequence of SSL tasks on unlabelled chest X-rays; each stage starts from the weights the
previous stage produced, with fresh stage-specific heads. With a ``checkpoint_dir`` every
stage writes ``stageNN-<name>/final.pt`` when it ends and ``last.pt`` every
``checkpoint_every`` steps, plus a ``manifest.json`` for the whole run; a rerun with the
same folder skips finished stages and resumes a partial one at the same step.

Example::

    from cxr_curriculum import Backbone, Curriculum, Stage
    from cxr_curriculum.methods import Rotation, SimCLR

    stages = [Stage(Rotation(), pool, steps=200), Stage(SimCLR(), pool, epochs=2)]
    backbone = Curriculum(stages, checkpoint_dir="runs/c1").fit(Backbone("resnet18"))
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from cxr_curriculum.curriculum.checkpoint import load_checkpoint
from cxr_curriculum.curriculum.distributed import (
    barrier,
    init_distributed,
    revert_sync_batchnorm,
)
from cxr_curriculum.curriculum.manifest import RunManifest
from cxr_curriculum.curriculum.metrics_log import MetricsLog
from cxr_curriculum.curriculum.runner import StagePlan, train_stage
from cxr_curriculum.curriculum.sampling import mix_seed
from cxr_curriculum.curriculum.settings import RunSettings, deterministic_mode, resolve_settings
from cxr_curriculum.curriculum.stage import Stage

__all__ = ["Curriculum", "StageResult"]

logger = logging.getLogger("cxr_curriculum.curriculum")
B = TypeVar("B", bound=nn.Module)


@dataclass(frozen=True)
class StageResult:
    """What one stage did.

    Attributes:
        index: position in the curriculum.
        name: the stage's label.
        steps: optimiser steps of the stage.
        skipped: True if the stage had finished in an earlier run (weights were loaded).
        resumed_from: the step a partial checkpoint resumed from (0: from the start).
        seconds: wall time of this call.
        checkpoint: the stage's ``final.pt`` (``None`` without a checkpoint folder).
        metrics: the logged rows (see :data:`~cxr_curriculum.curriculum.METRIC_FIELDS`).
    """

    index: int
    name: str
    steps: int
    skipped: bool
    resumed_from: int
    seconds: float
    checkpoint: Path | None
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        """The last logged loss, if any."""
        return float(self.metrics[-1]["loss"]) if self.metrics else None


class Curriculum:
    """An ordered list of :class:`Stage` s trained one after another on one backbone.

    Args:
        stages: the stages, in order (at least one; names must be unique).
        checkpoint_dir: folder for checkpoints, metrics and the manifest; ``None`` keeps
            nothing on disk (no resume).
        seed: seeds heads, sampling and augmentation; same seed, same data -> same run.
        resume: ``"auto"`` resumes what ``checkpoint_dir`` holds (and fails if its
            manifest disagrees with these stages), ``"must"`` also fails when there is
            nothing to resume, ``"never"`` deletes this run's files and starts over.
        checkpoint_every: write ``last.pt`` every this many optimiser steps (``None``: only
            at the end of each stage).
        log_every: log a metrics row every this many steps (and at the last step).
        progress: tqdm bar per stage; ``None`` shows it only when stderr is a terminal.
        device: ``None`` picks ``cuda:LOCAL_RANK`` when a GPU is present, else the CPU.
        amp: mixed precision: ``None`` = bf16 (or fp16) on a GPU and off on the CPU,
            ``"bf16"``, ``"fp16"`` or ``False``.
        channels_last: NHWC memory format; ``None`` = on for GPUs.
        deterministic: ``torch.use_deterministic_algorithms`` and no cuDNN benchmarking
            during :meth:`fit` (on the CPU runs are reproducible bit for bit either way).
        log_dir: where metrics go; defaults to ``checkpoint_dir``.
        sync_batchnorm: convert BatchNorm to SyncBatchNorm under multi-GPU DDP.
        find_unused_parameters: passed to ``DistributedDataParallel``.
        backend: process-group backend under torchrun (``None``: nccl on GPU, gloo on CPU).

    Raises:
        ValueError: on an empty or invalid stage list or an invalid option.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        checkpoint_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        *,
        resume: Literal["auto", "must", "never"] = "auto",
        checkpoint_every: int | None = 200,
        log_every: int = 10,
        progress: bool | None = None,
        device: str | torch.device | None = None,
        amp: Literal["bf16", "fp16"] | bool | None = None,
        channels_last: bool | None = None,
        deterministic: bool = False,
        log_dir: str | os.PathLike[str] | None = None,
        sync_batchnorm: bool = False,
        find_unused_parameters: bool = True,
        backend: str | None = None,
    ) -> None:
        self.stages = list(stages)
        if not self.stages or not all(isinstance(s, Stage) for s in self.stages):
            raise ValueError("stages must be a non-empty sequence of Stage objects")
        labels = [s.label for s in self.stages]
        if len(set(labels)) != len(labels):
            raise ValueError(f"stage names must be unique (set Stage(name=...)); got {labels}")
        if resume not in ("auto", "must", "never"):
            raise ValueError(f"resume must be 'auto', 'must' or 'never'; got {resume!r}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 or None; got {checkpoint_every}")
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1; got {log_every}")
        if amp not in (None, True, False, "bf16", "fp16"):
            raise ValueError(f"amp must be None, False, True, 'bf16' or 'fp16'; got {amp!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0; got {seed!r}")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else self.checkpoint_dir
        self.seed, self.resume = seed, resume
        self.checkpoint_every, self.log_every, self.progress = checkpoint_every, log_every, progress
        self.device, self.amp, self.channels_last = device, amp, channels_last
        self.deterministic, self.sync_batchnorm = deterministic, sync_batchnorm
        self.find_unused_parameters, self.backend = find_unused_parameters, backend
        self._run: RunSettings | None = None
        self._manifest: RunManifest | None = None

    def __len__(self) -> int:
        return len(self.stages)

    def __repr__(self) -> str:
        names = ", ".join(s.label for s in self.stages)
        return f"Curriculum([{names}], checkpoint_dir={self.checkpoint_dir}, seed={self.seed})"

    # ------------------------------------------------------------------ public API
    def fit(self, backbone: B) -> B:
        """Run every stage in order (skipping finished ones) and return the backbone.

        Args:
            backbone: the starting backbone (random, ImageNet or loaded from a file);
                trained in place.

        Returns:
            The same backbone object, holding the last stage's weights.
        """
        for result in self.iter_stages(backbone):
            logger.info(
                "stage %d (%s): %s",
                result.index,
                result.name,
                "skipped" if result.skipped else f"done, loss {result.final_loss}",
            )
        return backbone

    def iter_stages(self, backbone: nn.Module) -> Iterator[StageResult]:
        """Run the stages one by one, yielding a :class:`StageResult` after each."""
        for index in range(len(self.stages)):
            yield self.run_stage(index, backbone)

    def run_stage(self, index: int, backbone: nn.Module) -> StageResult:
        """Run (or skip, or resume) stage ``index`` on ``backbone``.

        A stage finished in ``checkpoint_dir`` loads its final weights into ``backbone``
        instead of training; a partial one resumes from its ``last.pt``.

        Raises:
            IndexError: if ``index`` is out of range.
        """
        if not 0 <= index < len(self.stages):
            raise IndexError(f"stage index {index} out of range for {len(self.stages)} stages")
        run, manifest = self._prepare()
        stage, folder = self.stages[index], self._folder(index)
        with deterministic_mode(self.deterministic):
            return self._run_stage(index, stage, backbone, run, manifest, folder)

    def stage_dir(self, index: int) -> Path | None:
        """The folder of stage ``index`` (``None`` without ``checkpoint_dir``)."""
        return self._folder(index)

    # ------------------------------------------------------------------ internals
    def _folder(self, index: int) -> Path | None:
        root = self.checkpoint_dir
        return None if root is None else root / f"stage{index:02d}-{self.stages[index].label}"

    def _prepare(self) -> tuple[RunSettings, RunManifest | None]:
        if self._run is None:
            info = init_distributed(self.backend)
            self._run = resolve_settings(
                info, seed=self.seed, device=self.device, amp=self.amp,
                channels_last=self.channels_last, checkpoint_every=self.checkpoint_every,
                log_every=self.log_every, progress=self.progress,
                sync_batchnorm=self.sync_batchnorm,
                find_unused_parameters=self.find_unused_parameters,
            )  # fmt: skip
            if self.checkpoint_dir is not None:
                self._manifest = RunManifest.open(
                    self.checkpoint_dir, self.stages, self.seed, info, self.resume, self._folder
                )
        return self._run, self._manifest

    def _run_stage(
        self,
        index: int,
        stage: Stage,
        backbone: nn.Module,
        run: RunSettings,
        manifest: RunManifest | None,
        folder: Path | None,
    ) -> StageResult:
        t0 = time.perf_counter()
        final = folder / "final.pt" if folder is not None else None
        if manifest is not None and final is not None and final.exists():
            state = manifest.check(load_checkpoint(final), index)
            backbone.load_state_dict(state["backbone"])
            return StageResult(
                index,
                stage.label,
                int(state["total_steps"]),
                True,
                0,
                time.perf_counter() - t0,
                final,
                list(state["metrics"]),
            )
        resume = None
        if manifest is not None and folder is not None and (folder / "last.pt").exists():
            resume = manifest.check(load_checkpoint(folder / "last.pt"), index)
        log_folder = (
            None
            if self.log_dir is None
            else self.log_dir / (folder or Path(f"stage{index:02d}-{stage.label}")).name
        )
        metrics = MetricsLog(
            log_folder if run.dist.is_main else None, list(resume["metrics"]) if resume else []
        )
        if run.dist.is_main:
            metrics.rewrite()
        plan = StagePlan(index, mix_seed(self.seed, index), metrics, resume)
        if manifest is not None and run.dist.is_main and folder is not None:
            manifest.mark(index, "running")

            def save(state: dict[str, Any]) -> None:
                manifest.save_partial(index, folder / "last.pt", state)
                metrics.write_json(stage=stage.label, index=index, steps_done=state["step"])

            plan.save = save
            plan.fail = lambda exc: manifest.mark(index, "failed", error=str(exc))
        sync = self.sync_batchnorm and run.dist.distributed
        if sync:
            nn.SyncBatchNorm.convert_sync_batchnorm(backbone)
        try:
            total = train_stage(stage, backbone, plan, run)
        finally:
            if sync:
                revert_sync_batchnorm(backbone)
        if run.dist.is_main:
            metrics.write_json(stage=stage.label, index=index, steps=total, config=stage.config())
            if manifest is not None and final is not None:
                manifest.save_final(
                    index,
                    final,
                    {
                        "total_steps": total,
                        "metrics": metrics.rows,
                        "backbone": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
                    },
                )
                _save_backbone_file(backbone, folder, stage)  # type: ignore[arg-type]
        barrier(run.dist)
        logger.info("stage %d (%s) finished %d steps", index, stage.label, total)
        return StageResult(
            index,
            stage.label,
            total,
            False,
            int(resume["step"]) if resume else 0,
            time.perf_counter() - t0,
            final,
            list(metrics.rows),
        )


def _save_backbone_file(backbone: nn.Module, folder: Path, stage: Stage) -> None:
    """Also save a ``Backbone`` as ``backbone.safetensors`` (+ JSON) for direct reuse."""
    save = getattr(backbone, "save", None)
    if callable(save):
        try:
            save(folder / "backbone.safetensors", curriculum_stage=stage.label)
        except Exception as exc:  # the checkpoint already holds the weights
            logger.warning("could not write %s/backbone.safetensors: %s", folder, exc)
