"""Optimisers (SGD, AdamW, LARS) and the linear warm-up + cosine learning-rate schedule.

LARS is layer-wise adaptive rate scaling (You, Gitman, Ginsburg 2017, arXiv 1708.03888,
Eq. 6), the optimiser of SimCLR (arXiv 2002.05709) and BYOL (arXiv 2006.07733). As in
those papers, biases and normalisation parameters get neither weight decay nor the
layer-wise scaling. The schedule is a linear warm-up followed by a cosine decay
(Loshchilov & Hutter 2017, SGDR, without restarts; Goyal et al. 2017 for the warm-up).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LARS", "WarmupCosine", "build_optimizer", "param_groups"]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017).

    For each parameter tensor ``w`` with gradient ``g`` in a group with weight decay
    ``wd > 0``::

        local_lr = eta * ||w|| / (||g|| + wd * ||w|| + eps)     # Eq. 6, if both norms > 0
        d = local_lr * (g + wd * w)
        v = momentum * v + d
        w = w - lr * v

    Groups with ``weight_decay == 0`` (biases, norms; see :func:`param_groups`) are
    plain SGD with momentum.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        momentum: momentum factor in ``[0, 1)``.
        weight_decay: L2 weight decay ``>= 0``.
        trust_coefficient: ``eta`` of Eq. 6 (0.001 in the paper).
        eps: added to the denominator.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, object]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        if not trust_coefficient > 0:
            raise ValueError(f"trust_coefficient must be > 0; got {trust_coefficient}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Take one optimisation step (see the class docstring for the update)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if wd != 0:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(d)
                    d = d.add(p, alpha=wd)
                    if w_norm > 0 and g_norm > 0:
                        d = d * (
                            group["trust_coefficient"]
                            * w_norm
                            / (g_norm + wd * w_norm + group["eps"])
                        )
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.detach().clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    d = state["momentum_buffer"]
                p.add_(d, alpha=-group["lr"])
        return loss


def param_groups(
    params: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, object]]:
    """Split named parameters into a decayed group and a no-decay group.

    Parameters with fewer than two dimensions (biases, BatchNorm/LayerNorm weights)
    get no weight decay, the rule of SimCLR/BYOL's LARS and of most AdamW recipes.

    Args:
        params: ``(name, parameter)`` pairs; frozen ones (``requires_grad=False``) and
            duplicates are skipped.
        weight_decay: decay of the first group.

    Returns:
        ``[{"params": [...], "weight_decay": wd}, {"params": [...], "weight_decay": 0.0}]``
        without empty groups.
    """
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, p in params:
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups: list[dict[str, object]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if not groups:
        raise ValueError("no trainable parameters (all have requires_grad=False)")
    return groups


def build_optimizer(
    name: str,
    module: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """Create the optimiser a :class:`~cxr_curriculum.curriculum.Stage` names.

    Args:
        name: ``"sgd"``, ``"adamw"`` or ``"lars"``.
        module: the method (backbone + heads); its trainable parameters are optimised.
        lr: peak learning rate (the schedule multiplies it).
        weight_decay: weight decay of the ``>= 2``-D parameters.
        momentum: SGD/LARS momentum (AdamW uses ``betas=(0.9, 0.999)``).

    Returns:
        The optimiser.
    """
    groups = param_groups(module.named_parameters(), weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer must be 'sgd', 'adamw' or 'lars'; got {name!r}")


@dataclass(frozen=True)
class WarmupCosine:
    """Learning-rate factor: linear warm-up, then cosine decay to ``final_ratio``.

    ``factor(s) = (s + 1) / warmup`` for ``s < warmup``, then
    ``final + (1 - final) * (1 + cos(pi * (s - warmup) / (total - warmup))) / 2``.
    Used as ``torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(...))``, stepped
    once per optimiser step; it is a picklable object so the scheduler's state dict
    round-trips through a checkpoint.

    Args:
        total_steps: optimiser steps of the stage, ``>= 1``.
        warmup_steps: warm-up steps in ``[0, total_steps]``.
        final_ratio: factor reached at the end, in ``[0, 1]``.
    """

    total_steps: int
    warmup_steps: int = 0
    final_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1; got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"warmup_steps must be in [0, total_steps={self.total_steps}]; "
                f"got {self.warmup_steps}"
            )
        if not 0.0 <= self.final_ratio <= 1.0:
            raise ValueError(f"final_ratio must be in [0, 1]; got {self.final_ratio}")

    def __call__(self, step: int) -> float:
        """Factor for the 0-based optimiser step ``step``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (
            1.0 + math.cos(math.pi * progress)
        )
