"""The :class:`Curriculum`: stages run in order, each from the previous stage's backbone.

Curricular self-supervised pretraining (arXiv 2301.10687, arXiv 2112.12086) trains a
sequence of SSL tasks on unlabelled chest X-rays; each stage starts from the weights the
previous stage produced, with fresh stage-specific heads. With a ``checkpoint_dir`` every
stage writes ``stageNN-<name>/final.pt`` when it ends and ``last.pt`` every
``checkpoint_every`` steps, plus a ``manifest.json`` for the whole run, and the run ends
with ``checkpoint_dir/backbone.safetensors`` whose sidecar holds the whole recipe. A
rerun with the same folder skips finished stages (repairing what an interrupted run left
incomplete) and resumes a partial one at the same step.

Example::

    from cxr_curriculum import Backbone, Curriculum, Stage
    from cxr_curriculum.methods import Rotation, SimCLR

    stages = [Stage(Rotation(), pool, steps=200), Stage(SimCLR(), pool, epochs=2)]
    cur = Curriculum(stages, checkpoint_dir="runs/c1")
    cur.fit(Backbone("resnet18", seed=0))
    backbone = Backbone.from_file(cur.backbone_path)   # runs/c1/backbone.safetensors
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from cxr_curriculum.curriculum.changes import ResumeError
from cxr_curriculum.curriculum.checkpoint import load_checkpoint, read_json
from cxr_curriculum.curriculum.distributed import (
    barrier,
    init_distributed,
    revert_sync_batchnorm,
)
from cxr_curriculum.curriculum.loggers import MetricLogger, check_loggers
from cxr_curriculum.curriculum.loggers import flush as flush_loggers
from cxr_curriculum.curriculum.manifest import RunManifest
from cxr_curriculum.curriculum.metrics_log import METRIC_FIELDS, MetricsLog
from cxr_curriculum.curriculum.outputs import (
    BACKBONE_FILE,
    KEEP,
    Keep,
    load_pruned_stage,
    prune_run,
    prune_stage,
    save_finished_stage,
    settle_finished_stage,
    write_run_backbone,
)
from cxr_curriculum.curriculum.runner import StagePlan, StageResult, train_stage
from cxr_curriculum.curriculum.sampling import mix_seed
from cxr_curriculum.curriculum.settings import RunSettings, deterministic_mode, resolve_settings
from cxr_curriculum.curriculum.stage import Stage

__all__ = ["Curriculum", "StageResult"]

logger = logging.getLogger("cxr_curriculum.curriculum")
B = TypeVar("B", bound=nn.Module)


class Curriculum:
    """An ordered list of :class:`Stage` s trained one after another on one backbone.

    Args:
        stages: the stages, in order (at least one; names must be unique).
        checkpoint_dir: folder for checkpoints, metrics and the manifest; ``None`` keeps
            nothing on disk (no resume).
        seed: seeds heads, sampling and augmentation; same seed, same data -> same run.
        resume: ``"auto"`` resumes what ``checkpoint_dir`` holds (and fails if its
            manifest disagrees with these stages), ``"must"`` also fails when there is
            nothing to resume, ``"never"`` deletes this run's files and starts over,
            ``"continue"`` is ``"auto"`` but lets a stage that has not finished change
            its optimiser settings (``lr``, ``weight_decay``, ``momentum``,
            ``optimizer``, warm-up, ``final_lr_ratio``, ``clip_grad_norm``) and continue
            from its last checkpoint, e.g. with a lower ``lr`` after a
            :class:`NonFiniteLossError`; the manifest records the change and its step.
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
        keep: what stays on disk once stages are done (each weights file of a ResNet-18
            is about 43 MB): ``"all"`` (default) keeps every stage's ``final.pt`` and
            backbone file; ``"backbones"`` deletes a finished stage's ``final.pt`` (its
            backbone file holds the same weights); ``"final"`` also deletes the stages'
            backbone files once the run's ``backbone.safetensors`` is written, leaving
            one weights file per run. Metrics and the manifest always stay; a rerun skips
            removed stages without training them again (the manifest lists what was
            removed under ``pruned``).
        loggers: metric loggers that get every logged row beside ``metrics.csv``:
            :class:`~cxr_curriculum.curriculum.TensorBoardLogger` or any callable
            ``logger(group, metrics, step)`` (``group``: the stage's folder name,
            ``step``: the curriculum's global step); see
            :mod:`~cxr_curriculum.curriculum.loggers`. Rank 0 only; flushed after each
            stage, closed by their owner.

    Raises:
        ValueError: on an empty or invalid stage list or an invalid option.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        checkpoint_dir: str | os.PathLike[str] | None = None,
        seed: int = 0,
        *,
        resume: Literal["auto", "must", "never", "continue"] = "auto",
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
        keep: Keep = "all",
        loggers: Sequence[MetricLogger] = (),
    ) -> None:
        self.stages = list(stages)
        if not self.stages or not all(isinstance(s, Stage) for s in self.stages):
            raise ValueError("stages must be a non-empty sequence of Stage objects")
        labels = [s.label for s in self.stages]
        if len(set(labels)) != len(labels):
            raise ValueError(f"stage names must be unique (set Stage(name=...)); got {labels}")
        if resume not in ("auto", "must", "never", "continue"):
            raise ValueError(
                f"resume must be 'auto', 'must', 'never' or 'continue'; got {resume!r}"
            )
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1 or None; got {checkpoint_every}")
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1; got {log_every}")
        if amp not in (None, True, False, "bf16", "fp16"):
            raise ValueError(f"amp must be None, False, True, 'bf16' or 'fp16'; got {amp!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0; got {seed!r}")
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}; got {keep!r}")
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.log_dir = Path(log_dir) if log_dir is not None else self.checkpoint_dir
        self.seed, self.resume = seed, resume
        self.checkpoint_every, self.log_every, self.progress = checkpoint_every, log_every, progress
        self.device, self.amp, self.channels_last = device, amp, channels_last
        self.deterministic, self.sync_batchnorm = deterministic, sync_batchnorm
        self.find_unused_parameters, self.backend = find_unused_parameters, backend
        self.keep: Keep = keep
        self.loggers = check_loggers(loggers)
        self._totals: dict[int, int] = {}
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
            The same backbone object, holding the last stage's weights (also written to
            :attr:`backbone_path` when there is a ``checkpoint_dir``).

        Raises:
            CurriculumError: a stage stopped (non-finite loss or state, collapse); the
                backbone holds the weights of that stage's last good checkpoint.
            ResumeError: ``checkpoint_dir`` holds a run these stages cannot resume (other
                settings or seed, or nothing to resume with ``resume="must"``).
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

    @property
    def backbone_path(self) -> Path | None:
        """``checkpoint_dir/backbone.safetensors``, the finished run's backbone file.

        Written after the last stage when the backbone is a ``Backbone`` (its sidecar
        ``backbone.json`` holds the recipe); ``None`` without a ``checkpoint_dir``.
        """
        return None if self.checkpoint_dir is None else self.checkpoint_dir / BACKBONE_FILE

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
                if self._manifest.data.get("keep") != self.keep:
                    self._manifest.data["keep"] = self.keep
                    self._manifest.write()
        return self._run, self._manifest

    def _run_info(self, run: RunSettings) -> dict[str, Any]:
        amp = None if run.amp_dtype is None else str(run.amp_dtype).removeprefix("torch.")
        return {"device": run.device.type, "amp": amp, "channels_last": run.channels_last,
                "deterministic": self.deterministic}  # fmt: skip

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
        if manifest is not None and folder is not None:
            manifest.redo_prunes(index, folder)  # every process, before it looks for final.pt
            if run.dist.is_main:
                manifest.forget_missing(index, folder)  # deleted as advised: trained again
        if manifest is not None and final is not None and folder is not None and final.exists():
            manifest.verify(index, final, _FINAL_REMEDY)  # the whole file, zip metadata too
            state = manifest.check(load_checkpoint(final, remedy=_FINAL_REMEDY), index)
            backbone.load_state_dict(state["backbone"])
            self._totals[index] = int(state["total_steps"])
            if run.dist.is_main:
                info = self._run_info(run)
                settle_finished_stage(manifest, index, folder, state, backbone, info)
            if self.keep != "all":
                barrier(run.dist)  # every process has read final.pt
                if run.dist.is_main:
                    prune_stage(manifest, index, folder, self.keep)
            self._finish_run(index, backbone, run, manifest)
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
        if manifest is not None and folder is not None and manifest.is_pruned(index):
            return self._skip_pruned(index, stage, backbone, run, manifest, folder, t0)
        last = folder / "last.pt" if folder is not None else None
        resume = None
        if manifest is not None and last is not None and last.exists():
            manifest.verify(index, last, _LAST_REMEDY)
            resume = manifest.check(load_checkpoint(last, remedy=_LAST_REMEDY), index)
        log_folder = (
            None
            if self.log_dir is None
            else self.log_dir / (folder or Path(f"stage{index:02d}-{stage.label}")).name
        )
        fields = METRIC_FIELDS + (stage.monitor.fields if stage.monitor is not None else ())
        metrics = MetricsLog(
            log_folder if run.dist.is_main else None,
            list(resume["metrics"]) if resume else [],
            tuple(fields),
            loggers=self.loggers if run.dist.is_main else [],
            group=(folder or Path(f"stage{index:02d}-{stage.label}")).name,
            step_offset=self._step_offset(index, manifest),
        )
        if run.dist.is_main:
            metrics.rewrite()
        plan = StagePlan(index, mix_seed(self.seed, index), metrics, resume, checkpoint=last)
        if manifest is not None:
            entry_hash = manifest.data["stages"][index]["config_hash"]
            plan.settings_changed = resume is not None and resume["config_hash"] != entry_hash
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
            flush_loggers(metrics.loggers)
        self._totals[index] = total
        if run.dist.is_main:
            metrics.write_json(stage=stage.label, index=index, steps=total, config=stage.config())
            if manifest is not None and folder is not None:
                state = {"total_steps": total, "metrics": metrics.rows}
                save_finished_stage(manifest, index, folder, backbone, state, self._run_info(run))
                prune_stage(manifest, index, folder, self.keep)
        barrier(run.dist)
        logger.info("stage %d (%s) finished %d steps", index, stage.label, total)
        self._finish_run(index, backbone, run, manifest)
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

    def _step_offset(self, index: int, manifest: RunManifest | None) -> int:
        """Optimiser steps of the stages before ``index`` (the loggers' global step): as run
        in this process, else as the manifest records them, else as planned."""
        offset = 0
        for j in range(index):
            entry = manifest.data["stages"][j] if manifest is not None else {}
            stage = self.stages[j]
            planned = stage.steps or (stage.epochs or 0) * max(
                1,
                len(stage.data) // stage.batch_size,  # type: ignore[arg-type]
            )
            offset += self._totals.get(j) or int(entry.get("total_steps") or 0) or planned
        return offset

    def _finish_run(
        self, index: int, backbone: nn.Module, run: RunSettings, manifest: RunManifest | None
    ) -> None:
        """After the last stage: write (or verify) ``checkpoint_dir/backbone.safetensors``."""
        path = self.backbone_path
        if index != len(self.stages) - 1 or manifest is None or path is None:
            return
        if run.dist.is_main:
            write_run_backbone(manifest, backbone, path, self._run_info(run))
            folders = [self._folder(i) for i in range(len(self.stages))]
            prune_run(manifest, [f for f in folders if f is not None], path, self.keep)
        barrier(run.dist)

    def _skip_pruned(
        self,
        index: int,
        stage: Stage,
        backbone: nn.Module,
        run: RunSettings,
        manifest: RunManifest,
        folder: Path,
        t0: float,
    ) -> StageResult:
        """A finished stage whose ``final.pt`` was removed (``keep=``): load its weights
        from the file that still holds them, or go on if the next stage is done too (it
        brings its own weights)."""
        path = self.backbone_path
        assert path is not None
        if not load_pruned_stage(manifest, index, folder, path, backbone):
            after = manifest.data["stages"][index + 1 : index + 2]  # it starts from these
            if not after or after[0].get("status") != "done":
                needs = "the run's backbone file" if not after else "the next stage"
                raise ResumeError(
                    f"stage {index} ({stage.label}) in {self.checkpoint_dir} is done but no file "
                    f"holds its weights any more (keep={self.keep!r}, and {self.backbone_path} "
                    f"is missing or holds other weights) while {needs} needs them; rerun with "
                    "resume='never' or another checkpoint_dir"
                )
        self._finish_run(index, backbone, run, manifest)
        entry = manifest.data["stages"][index]
        self._totals[index] = int(entry.get("total_steps") or 0)
        log = self.log_dir / folder.name / "metrics.json" if self.log_dir is not None else None
        rows = list(read_json(log).get("rows", [])) if log is not None and log.is_file() else []
        return StageResult(
            index,
            stage.label,
            int(entry.get("total_steps") or 0),
            True,
            0,
            time.perf_counter() - t0,
            None,
            rows,
        )


_FINAL_REMEDY = (
    "delete it and run again: the stage is trained again from its start (same seed and "
    "settings give the same weights on the CPU)"
)
_LAST_REMEDY = "delete it and run again: the stage restarts from its first step"
