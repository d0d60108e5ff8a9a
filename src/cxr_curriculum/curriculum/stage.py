"""One stage of a curriculum: an SSL method, its data, its budget and its optimiser.

A curriculum (arXiv 2112.12086, arXiv 2301.10687) trains a sequence of
self-supervised tasks on unlabelled images, each stage starting from the backbone
weights the previous stage produced. A :class:`Stage` is the frozen, validated
description of one such step; :class:`~cxr_curriculum.curriculum.Curriculum` runs it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from torch import nn
from torch.utils.data import Dataset

from cxr_curriculum.curriculum.divergence import DEFAULT_RULE, DivergenceRule
from cxr_curriculum.curriculum.monitor import StageMonitor

__all__ = ["OPTIMIZERS", "Stage", "method_config"]

#: Optimisers a stage may name.
OPTIMIZERS = ("sgd", "adamw", "lars")

#: Default learning rate per optimiser for a batch of 256 (linear scaling rule,
#: Goyal et al. 2017): SGD 0.03 (MoCo v2, arXiv 2003.04297), LARS 0.3 (SimCLR,
#: arXiv 2002.05709, "0.3 x BatchSize/256"); AdamW uses a fixed 1e-3.
_BASE_LR = {"sgd": 0.03, "lars": 0.3}
_DEFAULT_WD = {"sgd": 1e-4, "adamw": 0.05, "lars": 1e-6}

#: Methods the Curriculum calls (the SSLMethod contract in docs/architecture.md).
_METHOD_API = ("setup", "make_transform", "training_step", "teardown")


def method_config(method: nn.Module) -> dict[str, Any]:
    """Return a JSON-able description of a method's hyper-parameters.

    The class's qualified name plus the method's ``hparams`` dict (what ``SSLMethod``
    records from its constructor) or, for other modules, every public attribute that is
    a plain scalar, string or tuple of them. Used to detect a changed stage between a
    run and the checkpoint it resumes; it does not change when ``setup`` runs.

    Args:
        method: the SSL method (before or after ``setup``).

    Returns:
        ``{"class": "module.Class", "<hparam>": value, ...}``.
    """
    cfg: dict[str, Any] = {"class": f"{type(method).__module__}.{type(method).__qualname__}"}
    hparams = getattr(method, "hparams", None)
    source = hparams if isinstance(hparams, dict) else vars(method)
    for key, value in sorted(source.items()):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            cfg[key] = {str(k): _jsonable(v) for k, v in sorted(value.items()) if _is_plain(v)}
        elif _is_plain(value) and _wanted(key, value, from_hparams=hparams is not None):
            cfg[key] = _jsonable(value)
    return cfg


@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
    """A validated, immutable description of one pretraining stage.

    Args:
        method: an ``SSLMethod`` (``cxr_curriculum.methods``), for example ``Rotation()``.
        data: any ``torch.utils.data.Dataset`` (or ``Subset``) whose items are an image
            tensor ``(1, H, W)`` or a tuple/NamedTuple whose first field is one; labels
            and other fields are ignored.
        epochs: budget in passes over ``data``. Exactly one of ``epochs``/``steps``.
        steps: budget in optimiser steps.
        batch_size: images per optimiser step over all processes and accumulation
            micro-batches (the *global* batch); must be divisible by
            ``world_size * grad_accum`` at run time.
        image_size: side in pixels of the views the method's transform produces.
        optimizer: ``"sgd"``, ``"adamw"`` or ``"lars"`` (You et al. 2017); ``None`` takes
            the method's paper setting (``method.default_optimizer``), else ``"sgd"``.
        lr: peak learning rate; ``None`` takes the method's paper value scaled linearly
            to ``batch_size`` when its optimiser is used, else 0.03 (SGD) / 0.3 (LARS)
            x batch/256 or 1e-3 (AdamW).
        weight_decay: ``None`` takes the method's paper value, else 1e-4 (SGD), 0.05
            (AdamW), 1e-6 (LARS). Biases and normalisation parameters (1-D) never get
            weight decay.
        momentum: SGD/LARS momentum; ``None`` takes the method's value, else 0.9.
        warmup_steps: linear warm-up length in optimiser steps; overrides
            ``warmup_fraction``.
        warmup_fraction: warm-up as a fraction of the stage's steps (SimCLR: 10 of 100 epochs).
        final_lr_ratio: the cosine schedule decays to ``lr * final_lr_ratio``.
        strength: augmentation strength passed to ``method.make_transform``.
        num_workers: DataLoader worker processes (does not change results).
        grad_accum: micro-batches accumulated per optimiser step.
        batched_augmentation: build views on the device with ``method.batch_transform``
            instead of per sample in the DataLoader.
        clip_grad_norm: clip the gradient norm to this value (``None``: no clipping).
        collapse_threshold: stop when the (scaled) embedding standard deviation stays
            below this for ``collapse_patience`` consecutive checks; ``None`` disables.
        collapse_patience: consecutive low-std checks that count as a collapse.
        name: short name used for folders and logs; defaults to the method's class
            name in lower case.
        monitor: scores logged while the stage trains, e.g.
            ``KNNMonitor(train, val, knn_evaluate, every=50)`` (see :mod:`~.monitor`;
            ``knn_evaluate`` from :mod:`cxr_curriculum.evaluation`); it does not change
            the trained weights and is not part of the stage's settings.
        divergence: when the stage counts as diverged before anything is NaN (loss far
            above its early level or its method's chance loss, feature scale far above
            the stage's start): a :class:`~cxr_curriculum.curriculum.DivergenceRule`;
            ``None`` keeps only the NaN, inf and overflow checks. Recorded in the
            manifest, not part of the settings hash.
    """

    method: nn.Module
    data: Dataset[Any]
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 64
    image_size: int = 64
    optimizer: Literal["sgd", "adamw", "lars"] | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    warmup_steps: int | None = None
    warmup_fraction: float = 0.1
    final_lr_ratio: float = 0.0
    strength: float = 1.0
    num_workers: int = 0
    grad_accum: int = 1
    batched_augmentation: bool = False
    clip_grad_norm: float | None = None
    collapse_threshold: float | None = 1e-3
    collapse_patience: int = 3
    name: str | None = None
    monitor: StageMonitor | None = None
    divergence: DivergenceRule | None = DEFAULT_RULE

    def __post_init__(self) -> None:
        missing = [a for a in _METHOD_API if not callable(getattr(self.method, a, None))]
        if not isinstance(self.method, nn.Module) or missing:
            raise TypeError(
                "Stage.method must be an SSLMethod (an nn.Module with setup, make_transform, "
                f"training_step, teardown); got {type(self.method).__name__}"
                + (f" missing {missing}" if missing else "")
            )
        if not hasattr(self.data, "__getitem__") or not hasattr(self.data, "__len__"):
            raise TypeError(
                "Stage.data must be a map-style torch Dataset with __len__ and __getitem__; "
                f"got {type(self.data).__name__}"
            )
        if len(self.data) == 0:
            raise ValueError("Stage.data is empty; a stage needs at least one image")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(
                f"give exactly one of epochs or steps; got epochs={self.epochs}, steps={self.steps}"
            )
        _positive_int("epochs", self.epochs, allow_none=True)
        _positive_int("steps", self.steps, allow_none=True)
        _positive_int("batch_size", self.batch_size)
        _positive_int("image_size", self.image_size)
        _positive_int("grad_accum", self.grad_accum)
        _positive_int("collapse_patience", self.collapse_patience)
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        for key in ("lr", "weight_decay", "clip_grad_norm", "collapse_threshold"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a finite number >= 0 or None; got {value!r}")
        if self.lr == 0:
            raise ValueError("lr must be > 0")
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0 or None; got {self.warmup_steps}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1); got {self.warmup_fraction}")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ValueError(f"final_lr_ratio must be in [0, 1]; got {self.final_lr_ratio}")
        if not self.strength >= 0.0:
            raise ValueError(f"strength must be >= 0; got {self.strength}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {self.num_workers}")
        if self.divergence is not None and not isinstance(self.divergence, DivergenceRule):
            raise TypeError(
                "Stage.divergence must be a DivergenceRule or None; got "
                f"{type(self.divergence).__name__}"
            )
        if self.monitor is not None and not isinstance(self.monitor, StageMonitor):
            raise TypeError(
                "Stage.monitor must be a KNNMonitor or an object with every, fields and "
                f"__call__(backbone, *, image_size, device); got {type(self.monitor).__name__}"
            )
        if self.name is not None and (not self.name or any(c in self.name for c in "/\\:")):
            raise ValueError(
                f"name must be a non-empty string without / \\ or :; got {self.name!r}"
            )

    @property
    def label(self) -> str:
        """The stage's name: ``name`` or the method's class name in lower case."""
        return self.name if self.name is not None else type(self.method).__name__.lower()

    @property
    def _hint(self) -> Any:
        """The method's paper optimiser (``default_optimizer``) if it matches ours."""
        hint = getattr(self.method, "default_optimizer", None)
        if hint is None or getattr(hint, "name", None) != self.resolved_optimizer:
            return None
        return hint

    @property
    def resolved_optimizer(self) -> str:
        """The optimiser's name after applying the method's default."""
        if self.optimizer is not None:
            return self.optimizer
        name = getattr(getattr(self.method, "default_optimizer", None), "name", None)
        return name if name in OPTIMIZERS else "sgd"

    @property
    def resolved_lr(self) -> float:
        """Peak learning rate after applying the method's or the optimiser's default."""
        if self.lr is not None:
            return float(self.lr)
        hint = self._hint
        if hint is not None:
            return float(hint.lr) * self.batch_size / int(hint.reference_batch)
        if self.resolved_optimizer == "adamw":
            return 1e-3
        return _BASE_LR[self.resolved_optimizer] * self.batch_size / 256

    @property
    def resolved_weight_decay(self) -> float:
        """Weight decay after applying the method's or the optimiser's default."""
        if self.weight_decay is not None:
            return float(self.weight_decay)
        hint = self._hint
        if hint is not None:
            return float(hint.weight_decay)
        return _DEFAULT_WD[self.resolved_optimizer]

    @property
    def resolved_momentum(self) -> float:
        """SGD/LARS momentum after applying the method's default (0.9 otherwise)."""
        if self.momentum is not None:
            return float(self.momentum)
        hint = self._hint
        return float(hint.momentum) if hint is not None else 0.9

    def resolved_warmup(self, total_steps: int) -> int:
        """Warm-up steps for a stage of ``total_steps`` optimiser steps."""
        if self.warmup_steps is not None:
            return min(self.warmup_steps, total_steps)
        return int(self.warmup_fraction * total_steps)

    def config(self) -> dict[str, Any]:
        """JSON-able settings that change the result (recorded in the checkpoint manifest).

        ``num_workers``, the collapse monitor, the divergence rule and ``monitor`` are
        left out: they do not change the trained weights (they may only stop a stage).
        """
        return {
            "name": self.label,
            "method": method_config(self.method),
            "epochs": self.epochs,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "image_size": self.image_size,
            "optimizer": self.resolved_optimizer,
            "lr": self.resolved_lr,
            "weight_decay": self.resolved_weight_decay,
            "momentum": self.resolved_momentum,
            "warmup_steps": self.warmup_steps,
            "warmup_fraction": self.warmup_fraction,
            "final_lr_ratio": self.final_lr_ratio,
            "strength": self.strength,
            "grad_accum": self.grad_accum,
            "batched_augmentation": self.batched_augmentation,
            "clip_grad_norm": self.clip_grad_norm,
        }

    def replace(self, **changes: Any) -> Stage:
        """Return a copy with some fields changed (validated again).

        Setting one of ``epochs``/``steps`` clears the other.
        """
        if "steps" in changes and "epochs" not in changes:
            changes["epochs"] = None
        if "epochs" in changes and "steps" not in changes:
            changes["steps"] = None
        return dataclasses.replace(self, **changes)


def _wanted(key: str, value: Any, *, from_hparams: bool) -> bool:
    if from_hparams:
        return True
    return key != "training" and value is not None and not key.startswith("_")


def _is_plain(value: Any) -> bool:
    scalars = (bool, int, float, str, type(None))
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, scalars) for v in value)
    return isinstance(value, scalars)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _positive_int(name: str, value: int | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
