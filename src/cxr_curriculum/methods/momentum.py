"""Momentum (teacher) utilities: explicit EMA updates and a cosine momentum schedule.

Momentum encoders (MoCo, He et al. 2020, arXiv 1911.05722; BYOL, Grill et al. 2020,
arXiv 2006.07733; DINO, Caron et al. 2021, arXiv 2104.14294) keep a teacher copy whose
weights follow the student's by an exponential moving average. The update is always an
explicit call from ``SSLMethod.on_step_end``, never hidden in ``forward``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

__all__ = ["cosine_schedule", "make_momentum_copy", "update_momentum"]


@torch.no_grad()
def update_momentum(student: nn.Module, teacher: nn.Module, m: float) -> None:
    """Move the teacher's parameters towards the student's: ``t <- m * t + (1 - m) * s``.

    Only parameters are averaged (as in MoCo and BYOL); buffers such as BatchNorm
    running statistics are left to the teacher's own forward passes.

    Args:
        student: The trained module.
        teacher: A module with the same parameter structure (usually a deep copy).
        m: Momentum in ``[0, 1]``; 1 keeps the teacher fixed, 0 copies the student.

    Raises:
        ValueError: If ``m`` is outside ``[0, 1]`` or the parameter lists differ.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum m must be in [0, 1], got {m}")
    s_params = list(student.parameters())
    t_params = list(teacher.parameters())
    if len(s_params) != len(t_params):
        raise ValueError(
            f"student has {len(s_params)} parameters but teacher has {len(t_params)}; "
            "the teacher must be a copy of the student"
        )
    for s, t in zip(s_params, t_params, strict=True):
        if s.shape != t.shape:
            raise ValueError(f"parameter shape mismatch: student {s.shape}, teacher {t.shape}")
        t.mul_(m).add_(s.detach(), alpha=1.0 - m)


def cosine_schedule(step: int, total: int, start: float, end: float) -> float:
    """Cosine ramp from ``start`` (at step 0) to ``end`` (at step ``total``).

    ``value = end - (end - start) * (cos(pi * step / total) + 1) / 2``, the schedule of
    BYOL's target momentum (Grill et al. 2020, Sec. 3.2) and DINO's teacher momentum.
    Steps beyond ``total`` return ``end``.

    Args:
        step: Current step, ``>= 0``.
        total: Number of steps of the ramp, ``>= 1``.
        start: Value at step 0.
        end: Value at step ``total``.

    Returns:
        The scheduled value.

    Raises:
        ValueError: If ``step < 0`` or ``total < 1``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    progress = min(step, total) / total
    return end - (end - start) * (math.cos(math.pi * progress) + 1.0) / 2.0


def make_momentum_copy(module: nn.Module) -> nn.Module:
    """Deep-copy ``module`` as a frozen teacher (``requires_grad=False`` everywhere).

    Args:
        module: The student module.

    Returns:
        An independent copy whose parameters do not receive gradients.
    """
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
