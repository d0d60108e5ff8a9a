"""The state of one stage's training loop: optimiser, schedule, steps, checks, checkpoints.

:func:`~cxr_curriculum.curriculum.runner.train_stage` drives a :class:`StageLoop`. Each
optimiser step consumes one global batch of ``stage.batch_size`` images split over
``world_size`` processes and ``grad_accum`` micro-batches; the loss of every micro-batch
is divided by ``grad_accum`` and DDP averages gradients over processes, so for a
per-sample loss the step equals a single-process step on the whole batch. Before the
optimiser steps, the loss and every floating buffer are checked (one all-reduce for
both); before a checkpoint is written, every weight is checked too: NaN, inf and values
whose square overflows float32 stop the stage (:mod:`~cxr_curriculum.curriculum.health`).
The stage's :class:`~cxr_curriculum.curriculum.DivergenceRule` also checks every step's
loss against the stage's early level and its method's chance loss, and, at logged
steps, before every checkpoint and at the end, the backbone's feature scale against the
stage's start (:mod:`~cxr_curriculum.curriculum.divergence`). A checkpoint is taken
after its step's checks and written, and kept as the last good state, at the next step,
once the loss of its weights (which that step computes) passed too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, NoReturn

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from cxr_curriculum.curriculum.checkpoint import capture_rng, cpu_copy, restore_rng
from cxr_curriculum.curriculum.distributed import all_reduce_mean
from cxr_curriculum.curriculum.divergence import DivergenceMonitor, feature_scale, probe_batch
from cxr_curriculum.curriculum.health import (
    LIMIT,
    LastGood,
    eval_output_flag,
    floating_buffers,
    listed,
    unhealthy_flag,
    unhealthy_names,
)
from cxr_curriculum.curriculum.metrics_log import (
    CollapseError,
    CollapseMonitor,
    DivergenceError,
    NonFiniteLossError,
)
from cxr_curriculum.curriculum.optim import WarmupCosine, build_optimizer
from cxr_curriculum.curriculum.plan import StagePlan
from cxr_curriculum.curriculum.sampling import ResumableDistributedSampler, StageDataset, mix_seed
from cxr_curriculum.curriculum.settings import RunSettings
from cxr_curriculum.curriculum.stage import Stage
from cxr_curriculum.curriculum.stepping import (
    StepModule,
    method_state_without_backbone,
    steps_per_epoch,
    to_device,
)

__all__ = ["StageLoop", "StagePlan"]  # StagePlan re-exported from .plan

logger = logging.getLogger("cxr_curriculum.curriculum")
_CONTINUE_HINT = (
    "To go on from what was kept with other optimiser settings (a lower lr, gradient "
    "clipping), rerun with Curriculum(..., resume='continue')."
)


class StageLoop:
    """The objects of one stage's loop (built by ``train_stage``, after ``method.setup``)."""

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
        self.schedule = WarmupCosine(
            self.total, stage.resolved_warmup(self.total), stage.final_lr_ratio
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self.schedule)
        fp16 = run.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(run.device.type, enabled=fp16)
        self.monitor = CollapseMonitor(stage.collapse_threshold, stage.collapse_patience)
        rule = stage.divergence
        self.divergence = (
            None if rule is None else DivergenceMonitor.for_method(rule, self.method, self.micro)
        )
        self.probe: torch.Tensor | None = None
        if rule is not None and rule.scale_factor is not None:
            probe = probe_batch(stage.data, rule.probe_images, stage.image_size)
            self.probe = to_device(probe, run.device, run.channels_last)
        self.step = 0
        self.resumed_at: int | None = None
        self.model: nn.Module = StepModule(self.method)
        self.last_good = LastGood.capture(backbone, 0, None)
        #: a checkpoint taken but not yet written: (step, CPU copy of :meth:`state`)
        self._pending: tuple[int, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ checkpoints
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
        self.step, self.monitor.low = int(state["step"]), int(state["collapse_low"])
        if self.divergence is not None:
            self.divergence.load(state.get("divergence"))
        if self.plan.settings_changed:
            self._continue_with_new_settings(state)
        else:
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.run.dist.is_main:
            restore_rng(state["rng"])
        else:  # only rank 0's RNG is saved
            torch.manual_seed(mix_seed(self.plan.seed, self.run.dist.rank, self.step))
        self.last_good = LastGood.capture(self.backbone, self.step, self.plan.checkpoint)
        self.resumed_at = self.step

    def _continue_with_new_settings(self, state: dict[str, Any]) -> None:
        """Keep the optimiser's running state (momentum, Adam moments) if it is the same
        optimiser, but take lr, weight decay, momentum and the schedule from the stage."""
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.opt.param_groups]
        if state.get("optimizer_name") == self.stage.resolved_optimizer:
            self.opt.load_state_dict(state["optimizer"])
            for group, settings in zip(self.opt.param_groups, fresh, strict=True):
                group.update(settings)
        self.sched.last_epoch = self.step
        for group in self.opt.param_groups:
            group["lr"] = group["initial_lr"] * self.schedule(self.step)
        logger.warning(
            "stage %d (%s) continues from step %d with changed optimiser settings",
            self.plan.index, self.stage.label, self.step,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        """A partial checkpoint of the loop as it stands."""
        return {
            "step": self.step, "total_steps": self.total, "collapse_low": self.monitor.low,
            "backbone": self.backbone.state_dict(),
            "method": method_state_without_backbone(self.method, self.backbone),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "optimizer_name": self.stage.resolved_optimizer,
            "scaler": self.scaler.state_dict(), "rng": capture_rng(),
            "metrics": list(self.plan.metrics.rows),
            "divergence": None if self.divergence is None else self.divergence.state(),
            # the sampler and per-sample views are functions of (seed, epoch, position)
            "sampler": {"seed": self.plan.seed, "epoch": self.step // self.per_epoch,
                        "batches_done": self.step % self.per_epoch},
        }  # fmt: skip

    def save(self, batch: Any) -> None:
        """Check the state (:meth:`check_state`) and take a partial checkpoint.

        It is written, and kept as the last good state, by the next optimiser step once
        the loss of these weights passed the stage's checks (:meth:`_write_pending`): a
        checkpoint is only as good as the loss its weights give, which the next step
        computes. A stop before then discards it.

        Under DDP only rank 0 writes (``plan.save``), but every rank of a run with a
        checkpoint file (``plan.checkpoint``) keeps the same step as its last good state,
        so that after a stop every process hands back the same backbone.
        """
        self.check_state(batch)
        if self.plan.save is not None:
            self._pending = (self.step, cpu_copy(self.state()))
        elif self.plan.checkpoint is not None:  # another rank writes it: the backbone is enough
            self._pending = (self.step, {"backbone": cpu_copy(self.backbone.state_dict())})

    def _write_pending(self) -> None:
        """Write the checkpoint :meth:`save` took, now that its weights' loss passed."""
        if self._pending is None:
            return
        step, state = self._pending
        self._pending = None
        if self.plan.save is not None:
            self.plan.save(state)
        self.last_good = LastGood(step, dict(state["backbone"]), self.plan.checkpoint)

    # ------------------------------------------------------------------ stepping
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
        """Accumulate ``grad_accum`` micro-batches, check loss and buffers, step; return the
        loss and the last micro-batch."""
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
        buffers = [b for _, b in floating_buffers(self.method)]
        stats = all_reduce_mean(
            torch.stack([
                loss_sum / accum,
                (~torch.isfinite(loss_sum)).float(),
                unhealthy_flag(buffers, run.device),
            ]),
            run.dist,
        )  # fmt: skip
        if stats[1] > 0 or not torch.isfinite(stats[0]):
            self.stop(f"loss is {stats[0].item()} at step {self.step}")
        loss_value = float(stats[0])
        if self.divergence is not None:  # the same value on every rank: the same verdict
            reason = self.divergence.check_loss(loss_value, self.step + 1)
            if reason is not None:
                self.stop(f"diverged: {reason}", DivergenceError)
        if stats[2] > 0:
            names = unhealthy_names(floating_buffers(self.method))
            where = listed(names) if names else "on another process"
            self.stop(
                f"the loss is finite but buffers became NaN, inf or too large (above {LIMIT:.1e},"
                f" whose square overflows float32) at step {self.step}: {where} (BatchNorm "
                "running statistics of a batch of huge activations)"
            )
        self._write_pending()  # the loss of the weights it holds passed every check
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
        return loss_value, batch

    # ------------------------------------------------------------------ stops
    def start_divergence_monitor(self) -> None:
        """Measure the feature scale the stage starts from (unless a checkpoint had it)."""
        if self.divergence is not None and self.divergence.start_scale is None:
            self.divergence.start_scale = self._feature_scale()

    def _feature_scale(self) -> float | None:
        if self.probe is None:
            return None
        local = torch.tensor(feature_scale(self.backbone, self.probe), device=self.run.device)
        return float(all_reduce_mean(local, self.run.dist))  # one verdict on every rank

    def check_scale(self) -> None:
        """Stop with :class:`DivergenceError` if the feature scale is far above the start."""
        if self.divergence is None or self.probe is None:
            return
        scale = self._feature_scale()
        reason = None if scale is None else self.divergence.check_scale(scale, self.step)
        if reason is not None:
            self.stop(f"diverged: {reason}", DivergenceError)

    def check_state(self, batch: Any | None) -> None:
        """Stop if a weight or buffer of the method (backbone included) is not healthy, if
        its eval-mode outputs on ``batch`` are not (the model would be unusable), or if the
        backbone's feature scale broke the stage's divergence rule."""
        names = unhealthy_names(self.method.state_dict().items())
        if names:
            self.stop(
                f"weights became NaN, inf or too large (above {LIMIT:.1e}) after step "
                f"{self.step}: {listed(names)}"
            )
        self.check_scale()
        if batch is None:
            return
        flag = all_reduce_mean(eval_output_flag(self.method, batch, self.run.device), self.run.dist)
        if flag > 0:
            self.stop(
                f"after step {self.step} the model's eval-mode outputs are NaN, inf or too large "
                "(its weights or BatchNorm running statistics have diverged)"
            )

    def check_collapse(self, std: float | None) -> None:
        """Stop with :class:`CollapseError` when the collapse monitor says so."""
        if std is not None and self.monitor.update(std):
            self.stop(
                f"embeddings collapsed (scaled std {std:.2e} < {self.stage.collapse_threshold} "
                f"for {self.monitor.patience} checks) at step {self.step}",
                CollapseError,
            )

    def stop(self, reason: str, kind: type[Exception] = NonFiniteLossError) -> NoReturn:
        """Raise ``kind`` with a message saying what stopped and what was kept."""
        diverged = issubclass(kind, NonFiniteLossError)
        hint = f" {_CONTINUE_HINT}" if diverged else ""
        good = self.last_good
        first_after_resume = self.resumed_at is not None and self.step == self.resumed_at
        if diverged and good.checkpoint is not None and first_after_resume:
            hint = (
                f" No step succeeded after resuming from {good.checkpoint}: its weights are "
                "already diverging. Delete it and rerun with resume='continue' to restart the "
                "stage from its start with the new settings."
            )
        raise kind(
            f"stage {self.plan.index} ({self.stage.label}): {reason}; the stage stopped and "
            f"{self.last_good.describe()}.{hint}"
        )
