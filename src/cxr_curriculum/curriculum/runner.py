"""The training loop of one stage: set up heads, step, monitor, checkpoint, tear down.

:class:`~cxr_curriculum.curriculum.Curriculum` decides *which* stage runs and from
which state; :func:`train_stage` runs it with a
:class:`~cxr_curriculum.curriculum.loop.StageLoop`. When a stop rule ends the stage early
(a non-finite loss, buffer or weight; a divergence; a collapse), or anything else raises
mid-stage (an image with NaN pixels, a failing read), the backbone is handed back as it
was at the last good checkpoint, or at the start of the stage if none was written; under
DDP every process hands back the same one (the checkpoint rank 0 wrote, or rank 0's start,
which DDP broadcast).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from cxr_curriculum.curriculum.health import LastGood
from cxr_curriculum.curriculum.loop import StageLoop, StagePlan
from cxr_curriculum.curriculum.metrics_log import CurriculumError
from cxr_curriculum.curriculum.sampling import mix_seed
from cxr_curriculum.curriculum.settings import RunSettings
from cxr_curriculum.curriculum.stage import Stage
from cxr_curriculum.curriculum.stepping import monitor_std

__all__ = ["StagePlan", "StageResult", "train_stage"]

logger = logging.getLogger("cxr_curriculum.curriculum")


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


def _run_monitor(loop: StageLoop) -> dict[str, float]:
    """The stage's monitor scores, computed without touching the training RNG streams."""
    monitor, run = loop.stage.monitor, loop.run
    if monitor is None or not run.dist.is_main:
        return {}
    devices = [run.device] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        values = monitor(loop.backbone, image_size=loop.stage.image_size, device=run.device)
    return {k: float(v) for k, v in values.items()}


def train_stage(stage: Stage, backbone: nn.Module, plan: StagePlan, run: RunSettings) -> int:
    """Train ``backbone`` in place for one stage and return the stage's number of steps.

    Args:
        stage: the stage.
        backbone: the backbone, already holding the previous stage's weights.
        plan: the stage's index, seed, metric log, resume state and checkpoint callback.
        run: the process's resolved settings.

    Raises:
        NonFiniteLossError: the loss, a buffer or a weight became NaN/inf (no checkpoint
            is written after it; the backbone is restored to the last good state).
        DivergenceError: the stage's ``DivergenceRule`` saw the loss or the feature
            scale run away (same handling).
        CollapseError: the embedding std stayed below ``stage.collapse_threshold``.
        ValueError: the batch does not split over processes and micro-batches, or an
            image has non-finite pixels (the message names the item and its file).
    """
    info, method = run.dist, stage.method
    if stage.batch_size % (info.world_size * stage.grad_accum):
        raise ValueError(
            f"stage {stage.label!r}: batch_size={stage.batch_size} must be divisible by "
            f"world_size * grad_accum = {info.world_size} * {stage.grad_accum}"
        )
    torch.manual_seed(plan.seed)  # heads start from the same weights on every rank and rerun
    backbone.to(run.device)
    method.setup(backbone)  # type: ignore[operator]
    method.to(run.device)
    if run.channels_last:
        method.to(memory_format=torch.channels_last)
    bar: Any = None
    loop: StageLoop | None = None
    try:
        loop = StageLoop(stage, backbone, plan, run)
        torch.manual_seed(mix_seed(plan.seed, info.rank, 1))
        if plan.resume is not None:
            loop.restore(plan.resume)
        loop.start_divergence_monitor()
        if info.distributed:
            cuda = run.device.type == "cuda"
            ids = [run.device.index or torch.cuda.current_device()] if cuda else None
            loop.model = DistributedDataParallel(
                loop.model, device_ids=ids, find_unused_parameters=run.find_unused_parameters
            )
            # DDP has broadcast rank 0's weights: that is the start every rank hands back
            good = loop.last_good
            loop.last_good = LastGood.capture(backbone, good.step, good.checkpoint)
        bar = tqdm(total=loop.total, initial=loop.step, desc=f"stage {plan.index} {stage.label}",
                   disable=not (run.progress and info.is_main))  # fmt: skip
        seen, t_log, batch = 0, time.perf_counter(), None
        t_start = t_log - (float(plan.metrics.rows[-1]["time_s"]) if plan.metrics.rows else 0.0)
        method.train()
        while loop.step < loop.total:
            epoch, in_epoch = divmod(loop.step, loop.per_epoch)
            batches = iter(loop.loader(epoch, in_epoch))
            for _ in range(min(loop.per_epoch - in_epoch, loop.total - loop.step)):
                lr = float(loop.opt.param_groups[0]["lr"])
                loss, batch = loop.optimizer_step(batches)
                seen += stage.batch_size
                bar.update(1)
                last = loop.step == loop.total
                scored = stage.monitor is not None and (
                    last or loop.step % stage.monitor.every == 0
                )
                if loop.step % run.log_every == 0 or last or scored:
                    std, now = monitor_std(method, batch, info), time.perf_counter()
                    scores = _run_monitor(loop) if scored else {}
                    if info.is_main:
                        plan.metrics.append({
                            "stage": stage.label, "step": loop.step, "epoch": epoch, "lr": lr,
                            "loss": loss, "embedding_std": std, "time_s": now - t_start,
                            "images_per_s": seen / max(now - t_log, 1e-9), **scores,
                        })  # fmt: skip
                    seen, t_log = 0, time.perf_counter()
                    bar.set_postfix(loss=f"{loss:.4f}", std="-" if std is None else f"{std:.3f}")
                    logger.debug("stage %s step %d loss %.4f", stage.label, loop.step, loss)
                    loop.check_collapse(std)
                    loop.check_scale()
                every = run.checkpoint_every
                if every and not last and loop.step % every == 0:
                    loop.save(batch)
        loop.check_state(batch)
        return loop.total
    except Exception as exc:
        if loop is not None:  # every stop hands back the last good state, not half of a step
            loop.last_good.restore(backbone)
            if not isinstance(exc, CurriculumError) and hasattr(exc, "add_note"):
                kept = loop.last_good.describe()  # CurriculumErrors say it themselves
                exc.add_note(f"stage {plan.index} ({stage.label}) stopped and {kept}.")
        if plan.fail is not None:
            plan.fail(exc)
        raise
    finally:
        if bar is not None:
            bar.close()
        method.teardown()  # type: ignore[operator]
