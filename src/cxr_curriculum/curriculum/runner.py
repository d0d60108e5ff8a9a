"""The training loop of one stage: set up heads, step, monitor, checkpoint, tear down.

:class:`~cxr_curriculum.curriculum.Curriculum` decides *which* stage runs and from
which state; :func:`train_stage` runs it. Each optimiser step consumes one global
batch of ``stage.batch_size`` images split over ``world_size`` processes and
``grad_accum`` micro-batches; the loss of every micro-batch is divided by ``grad_accum``
and DDP averages gradients over processes, so for a per-sample loss the step equals a
single-process step on the whole batch.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cxr_curriculum.curriculum.checkpoint import capture_rng, restore_rng
from cxr_curriculum.curriculum.distributed import all_reduce_mean
from cxr_curriculum.curriculum.metrics_log import (
    CollapseError,
    CollapseMonitor,
    MetricsLog,
    NonFiniteLossError,
)
from cxr_curriculum.curriculum.optim import WarmupCosine, build_optimizer
from cxr_curriculum.curriculum.sampling import ResumableDistributedSampler, StageDataset, mix_seed
from cxr_curriculum.curriculum.settings import RunSettings
from cxr_curriculum.curriculum.stage import Stage
from cxr_curriculum.curriculum.stepping import (
    StepModule,
    method_state_without_backbone,
    monitor_std,
    steps_per_epoch,
    to_device,
)

__all__ = ["StagePlan", "train_stage"]

logger = logging.getLogger("cxr_curriculum.curriculum")


@dataclass
class StagePlan:
    """Everything a stage's loop needs besides the stage itself.

    Attributes:
        index: the stage's position in the curriculum.
        seed: the stage's seed, ``mix_seed(curriculum seed, index)``.
        metrics: the stage's metric log (rows restored when resuming).
        resume: a partial checkpoint to continue from, or ``None``.
        save: called as ``save(state)`` with a partial checkpoint every
            ``checkpoint_every`` steps (rank 0 only), or ``None``.
        fail: called with the error before it is raised (to record it in the manifest).
    """

    index: int
    seed: int
    metrics: MetricsLog
    resume: dict[str, Any] | None = None
    save: Callable[[dict[str, Any]], None] | None = None
    fail: Callable[[Exception], None] | None = None


class _Loop:
    """The objects of one stage's loop (built by :func:`train_stage`, after ``setup``)."""

    def __init__(self, stage: Stage, backbone: nn.Module, plan: StagePlan, run: RunSettings):
        self.stage, self.backbone, self.plan, self.run = stage, backbone, plan, run
        self.method, info, accum = stage.method, run.dist, stage.grad_accum
        self.micro = stage.batch_size // (info.world_size * accum)
        kwargs = {"batched": True} if stage.batched_augmentation else {}
        transform = self.method.make_transform(stage.image_size, stage.strength, **kwargs)  # type: ignore[operator]
        self.batch_tf = getattr(self.method, "batch_transform", None) if kwargs else None
        if kwargs and self.batch_tf is None:
            raise ValueError(f"{type(self.method).__name__} has no batch_transform")
        self.data = StageDataset(stage.data, transform, plan.seed)
        self.sampler = ResumableDistributedSampler(self.data, info.world_size, info.rank, plan.seed)
        self.per_epoch = steps_per_epoch(self.sampler, self.micro, accum, len(self.data))
        self.total = stage.steps or stage.epochs * self.per_epoch  # type: ignore[operator]
        self.opt = build_optimizer(
            stage.resolved_optimizer, self.method, lr=stage.resolved_lr,
            weight_decay=stage.resolved_weight_decay, momentum=stage.resolved_momentum,
        )  # fmt: skip
        warmup = stage.resolved_warmup(self.total)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, WarmupCosine(self.total, warmup, stage.final_lr_ratio)
        )
        fp16 = run.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=fp16)
        self.monitor = CollapseMonitor(stage.collapse_threshold, stage.collapse_patience)
        self.step = 0
        self.model: nn.Module = StepModule(self.method)

    def restore(self, state: dict[str, Any]) -> None:
        """Load a partial checkpoint: weights, method state, optimiser, schedule, RNG."""
        self.backbone.load_state_dict(state["backbone"])
        own = method_state_without_backbone(self.method, self.backbone)
        missing, unexpected = self.method.load_state_dict(state["method"], strict=False)
        missing = [k for k in missing if k in own]
        if unexpected or missing:
            raise RuntimeError(
                f"checkpoint does not fit {type(self.method).__name__}: missing {missing}, "
                f"unexpected {unexpected}"
            )
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.monitor.low = int(state["step"]), int(state["collapse_low"])
        if self.run.dist.is_main:
            restore_rng(state["rng"])
        else:  # only rank 0's RNG is saved
            torch.manual_seed(mix_seed(self.plan.seed, self.run.dist.rank, self.step))

    def state(self) -> dict[str, Any]:
        """A partial checkpoint of the loop as it stands."""
        return {
            "step": self.step, "total_steps": self.total, "collapse_low": self.monitor.low,
            "backbone": self.backbone.state_dict(),
            "method": method_state_without_backbone(self.method, self.backbone),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": capture_rng(),
            "metrics": list(self.plan.metrics.rows),
            # the sampler and per-sample views are functions of (seed, epoch, position)
            "sampler": {"seed": self.plan.seed, "epoch": self.step // self.per_epoch,
                        "batches_done": self.step % self.per_epoch},
        }  # fmt: skip

    def loader(self, epoch: int, in_epoch: int) -> DataLoader[Any]:
        """This rank's batches of ``epoch``, starting after ``in_epoch`` optimiser steps."""
        self.data.epoch = epoch
        self.sampler.set_epoch(epoch)
        self.sampler.skip = in_epoch * self.micro * self.stage.grad_accum
        return DataLoader(
            self.data, batch_size=self.micro, sampler=self.sampler, drop_last=True,
            num_workers=self.stage.num_workers, pin_memory=self.run.device.type == "cuda",
            generator=torch.Generator().manual_seed(mix_seed(self.plan.seed, epoch)),
        )  # fmt: skip

    def optimizer_step(self, batches: Iterator[Any]) -> tuple[float, Any]:
        """Accumulate ``grad_accum`` micro-batches, check the loss, step; return it and a batch."""
        run, accum, model = self.run, self.stage.grad_accum, self.model
        self.opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=run.device)
        autocast = torch.autocast(
            run.device.type, dtype=run.amp_dtype or torch.float32, enabled=run.amp_dtype is not None
        )
        for k in range(accum):
            batch = to_device(next(batches), run.device, run.channels_last)
            if self.batch_tf is not None:
                batch = self.batch_tf(batch)
            sync = k == accum - 1 or not isinstance(model, DistributedDataParallel)
            with contextlib.nullcontext() if sync else model.no_sync():  # type: ignore[operator]
                with autocast:
                    loss = model(batch)
                if loss.ndim != 0:
                    raise ValueError(f"training_step must return a scalar; got {tuple(loss.shape)}")
                self.scaler.scale(loss.float() / accum).backward()
            loss_sum += loss.detach().float()
        stats = all_reduce_mean(
            torch.stack([loss_sum / accum, (~torch.isfinite(loss_sum)).float()]), run.dist
        )
        if stats[1] > 0 or not torch.isfinite(stats[0]):
            raise NonFiniteLossError(
                f"stage {self.plan.index} ({self.stage.label}): loss is {stats[0].item()} at "
                f"step {self.step}; the stage stopped and its last checkpoint was kept"
            )
        if self.stage.clip_grad_norm is not None:
            self.scaler.unscale_(self.opt)
            params = [p for p in self.method.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(params, self.stage.clip_grad_norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        on_end = getattr(self.method, "on_step_end", None)
        if callable(on_end):
            on_end(self.step, self.total)
        self.step += 1
        return float(stats[0]), batch

    def check_collapse(self, std: float | None) -> None:
        """Raise :class:`CollapseError` when the monitor says so."""
        if std is not None and self.monitor.update(std):
            raise CollapseError(
                f"stage {self.plan.index} ({self.stage.label}): embeddings collapsed (scaled std "
                f"{std:.2e} < {self.stage.collapse_threshold} for {self.monitor.patience} checks)"
                f" at step {self.step}; the stage stopped and its last checkpoint was kept"
            )


def train_stage(stage: Stage, backbone: nn.Module, plan: StagePlan, run: RunSettings) -> int:
    """Train ``backbone`` in place for one stage and return the stage's number of steps.

    Args:
        stage: the stage.
        backbone: the backbone, already holding the previous stage's weights.
        plan: the stage's index, seed, metric log, resume state and checkpoint callback.
        run: the process's resolved settings.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (no checkpoint is written after it).
        CollapseError: the embedding std stayed below ``stage.collapse_threshold``.
        ValueError: the batch does not split over processes and micro-batches.
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
    try:
        loop = _Loop(stage, backbone, plan, run)
        torch.manual_seed(mix_seed(plan.seed, info.rank, 1))
        if plan.resume is not None:
            loop.restore(plan.resume)
        if info.distributed:
            cuda = run.device.type == "cuda"
            ids = [run.device.index or torch.cuda.current_device()] if cuda else None
            loop.model = DistributedDataParallel(
                loop.model, device_ids=ids, find_unused_parameters=run.find_unused_parameters
            )
        bar = tqdm(total=loop.total, initial=loop.step, desc=f"stage {plan.index} {stage.label}",
                   disable=not (run.progress and info.is_main))  # fmt: skip
        seen, t_log = 0, time.perf_counter()
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
                if loop.step % run.log_every == 0 or loop.step == loop.total:
                    std, now = monitor_std(method, batch, info), time.perf_counter()
                    if info.is_main:
                        plan.metrics.append({
                            "stage": stage.label, "step": loop.step, "epoch": epoch, "lr": lr,
                            "loss": loss, "embedding_std": std, "time_s": now - t_start,
                            "images_per_s": seen / max(now - t_log, 1e-9),
                        })  # fmt: skip
                    seen, t_log = 0, now
                    bar.set_postfix(loss=f"{loss:.4f}", std="-" if std is None else f"{std:.3f}")
                    logger.debug("stage %s step %d loss %.4f", stage.label, loop.step, loss)
                    loop.check_collapse(std)
                every = run.checkpoint_every
                if plan.save and every and loop.step < loop.total and loop.step % every == 0:
                    plan.save(loop.state())
        return loop.total
    except Exception as exc:
        if plan.fail is not None:
            plan.fail(exc)
        raise
    finally:
        if bar is not None:
            bar.close()
        method.teardown()  # type: ignore[operator]
