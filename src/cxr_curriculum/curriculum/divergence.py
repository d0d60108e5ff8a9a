"""Divergence measured against the run itself: a loss or a feature scale far from its start.

A stage that diverges rarely turns NaN at once. At 1000x the right learning rate a
ResNet's training loss stays finite (BatchNorm normalises each batch with its own
statistics) while its weights and eval-mode outputs grow by 10^15, and a contrastive
loss can sit at chance while the features it compares grow by 10^3. The checks of
:mod:`~cxr_curriculum.curriculum.health` (NaN, inf, ``|x| > 1.8e19``) miss both, so a
:class:`DivergenceRule` compares each stage with its own beginning:

* **loss, early level**: the loss of a step is above ``loss_factor`` times the mean loss
  of the stage's first ``early_steps`` steps (only while that level is positive: a
  negative loss such as SimSiam's ``-cos`` is bounded and says nothing here);
* **loss, chance**: the loss is above ``chance_factor`` times the method's chance loss,
  the loss of a model that has learnt nothing (``method.chance_loss(batch_size)``:
  ``log 4`` for rotation, ``log(2B - 1)`` for NT-Xent; methods that state none are
  checked against their early level only);
* **feature scale**: the root mean square of the backbone's pooled features of a fixed
  probe (the stage's first ``probe_images`` images, resized to the stage's
  ``image_size``), computed with batch statistics as in training, is above
  ``scale_factor`` times its value at the start of the stage.

The loss is checked at every optimiser step (before the step is taken, from the value
the loop already has); the feature scale at every logged step, before every checkpoint
and at the end. Thresholds were set on real X-rays: healthy runs of every method at
their paper learning rates stay below a quarter of them (the largest, Barlow Twins'
feature scale, grows 3.5x in 30 steps), while rotation at lr 5 reaches 19x its chance
loss after one step and SimCLR at lr 1000 reaches a 10x feature scale after one step and
100x after six.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from cxr_curriculum.curriculum.sampling import first_image
from cxr_curriculum.curriculum.stepping import frozen_batchnorm_stats
from cxr_curriculum.transforms import Resize

__all__ = [
    "DEFAULT_RULE",
    "DivergenceMonitor",
    "DivergenceRule",
    "feature_scale",
    "probe_batch",
]

#: Smallest feature scale used as a reference (a dead start would make any ratio huge).
_SCALE_FLOOR = 1e-3


@dataclass(frozen=True)
class DivergenceRule:
    """When a stage counts as diverged before anything is NaN (see the module docstring).

    Pass one as ``Stage(..., divergence=DivergenceRule(...))``; ``divergence=None`` keeps
    only the NaN, inf and overflow checks. A factor of ``None`` turns its check off. The
    rule is recorded in the run manifest (``stages[i].divergence``); it is not part of a
    stage's settings hash, so changing it does not invalidate checkpoints.

    Attributes:
        loss_factor: stop when a step's loss exceeds this many times the stage's early
            loss level (the mean of its first ``early_steps`` steps, when positive).
        early_steps: steps whose mean loss is the early level (until then, the mean of
            the steps so far).
        chance_factor: stop when a step's loss exceeds this many times the method's
            chance loss (``method.chance_loss(batch_size)``; skipped when it has none).
        scale_factor: stop when the RMS of the backbone's features of the probe images
            exceeds this many times its value at the start of the stage.
        probe_images: images of the stage's data (the first ones) in the probe batch.
    """

    loss_factor: float | None = 10.0
    early_steps: int = 10
    chance_factor: float | None = 3.0
    scale_factor: float | None = 100.0
    probe_images: int = 8

    def __post_init__(self) -> None:
        for key in ("loss_factor", "chance_factor", "scale_factor"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 1.0):
                raise ValueError(f"DivergenceRule.{key} must be a finite number > 1 or None; "
                                 f"got {value!r}")  # fmt: skip
        for key in ("early_steps", "probe_images"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DivergenceRule.{key} must be a positive int; got {value!r}")
        if self.probe_images == 1 and self.scale_factor is not None:
            raise ValueError(
                "DivergenceRule.probe_images must be >= 2 when scale_factor is set (batch "
                "statistics need two images)"
            )

    def config(self) -> dict[str, Any]:
        """The thresholds, as recorded in the manifest."""
        return asdict(self)


#: The rule a :class:`~cxr_curriculum.curriculum.Stage` uses unless told otherwise.
DEFAULT_RULE = DivergenceRule()


def probe_batch(data: Dataset[Any], n: int, image_size: int) -> Tensor:
    """The first ``n`` images of ``data`` (fewer if it is shorter), resized: ``(n, 1, S, S)``."""
    resize = Resize(image_size)
    count = min(n, len(data))  # type: ignore[arg-type]
    return torch.stack([resize(first_image(data[i], i)) for i in range(count)])


def feature_scale(backbone: nn.Module, probe: Tensor) -> float:
    """RMS of ``backbone(probe)`` in train mode with batch statistics, nothing updated.

    BatchNorm running statistics are neither used nor changed, dropout and drop-path
    draw from a forked RNG, gradients are off and the module's mode is restored.

    Args:
        backbone: a module mapping ``(N, C, S, S)`` images to features.
        probe: the images, on the backbone's device.
    """
    was_training = backbone.training
    devices = [probe.device] if probe.device.type == "cuda" else []
    backbone.train()
    try:
        with (
            torch.no_grad(),
            torch.random.fork_rng(devices=devices),
            frozen_batchnorm_stats(backbone),
        ):
            out = backbone(probe)
    finally:
        backbone.train(was_training)
    return float(out.detach().float().pow(2).mean().sqrt())


@dataclass
class DivergenceMonitor:
    """The state of one stage's :class:`DivergenceRule` (saved in its checkpoints).

    Args:
        rule: the thresholds.
        chance: the method's chance loss for this batch size, or ``None``.
        early: losses of the stage's first steps (up to ``rule.early_steps``).
        start_scale: the probe's feature scale at the stage's start (``None``: not yet).
    """

    rule: DivergenceRule
    chance: float | None = None
    early: list[float] = field(default_factory=list)
    start_scale: float | None = None

    @classmethod
    def for_method(
        cls, rule: DivergenceRule, method: nn.Module, batch_size: int
    ) -> DivergenceMonitor:
        """A monitor with ``method.chance_loss(batch_size)`` when the method states one."""
        fn: Callable[[int], float | None] | None = getattr(method, "chance_loss", None)
        chance = fn(batch_size) if callable(fn) else None
        if chance is not None and not (math.isfinite(chance) and chance > 0):
            chance = None
        return cls(rule, chance)

    @property
    def early_level(self) -> float | None:
        """The mean of the early losses, or ``None`` before the first step."""
        return sum(self.early) / len(self.early) if self.early else None

    def check_loss(self, loss: float, step: int) -> str | None:
        """Why the loss of step ``step`` (1-based) counts as diverged, or ``None``."""
        rule, level, chance = self.rule, self.early_level, self.chance
        reason = None
        if (
            rule.chance_factor is not None
            and chance is not None
            and loss > rule.chance_factor * chance
        ):
            reason = (
                f"loss {loss:.4g} at step {step} is above {rule.chance_factor:g} x the method's "
                f"chance loss {chance:.4g}"
            )
        above_early = (
            rule.loss_factor is not None
            and level is not None
            and level > 0
            and loss > rule.loss_factor * level
        )
        if reason is None and above_early:
            reason = (
                f"loss {loss:.4g} at step {step} is above {rule.loss_factor:g} x its early level "
                f"{level:.4g} (mean of the stage's first {len(self.early)} steps)"
            )
        if reason is None and len(self.early) < rule.early_steps:
            self.early.append(float(loss))
        return reason

    def check_scale(self, scale: float, step: int) -> str | None:
        """Why a feature scale at step ``step`` counts as diverged, or ``None``."""
        factor = self.rule.scale_factor
        if factor is None or self.start_scale is None:
            return None
        reference = max(self.start_scale, _SCALE_FLOOR)
        if math.isfinite(scale) and scale <= factor * reference:
            return None
        return (
            f"the backbone's feature scale (RMS {scale:.3g} on {self.rule.probe_images} probe "
            f"images) at step {step} is above {factor:g} x its value at the start of the stage "
            f"({self.start_scale:.3g})"
        )

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the early losses and the start scale."""
        return {"early": list(self.early), "start_scale": self.start_scale}

    def load(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state` (a checkpoint without one keeps the monitor fresh)."""
        if state:
            self.early = [float(v) for v in state.get("early", [])]
            start = state.get("start_scale")
            self.start_scale = None if start is None else float(start)
