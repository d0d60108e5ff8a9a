"""DINO's self-distillation loss (Caron et al. 2021, "Emerging Properties in
Self-Supervised Vision Transformers", arXiv 2104.14294, Eq. 2-4 and Algorithm 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cxr_curriculum.losses._distributed import world_size
from cxr_curriculum.losses._precision import float32_loss

__all__ = ["DINOLoss", "dino_cross_entropy"]


def dino_cross_entropy(
    teacher_out: Tensor,
    student_out: Tensor,
    center: Tensor,
    teacher_temp: float,
    student_temp: float,
) -> Tensor:
    """Mean cross-entropy between centred, sharpened teacher and student distributions.

    Pairs with the same view index (a view against itself) are skipped; teacher views are
    the first ``T`` student views (the global crops).

    Args:
        teacher_out: ``(T, N, K)`` teacher logits of ``T`` global views.
        student_out: ``(S, N, K)`` student logits of ``S >= T`` views.
        center: ``(K,)`` or ``(1, K)`` running centre of the teacher logits.
        teacher_temp: Teacher softmax temperature (sharpening).
        student_temp: Student softmax temperature.

    Returns:
        Scalar loss averaged over the ``T * S - T`` pairs and the batch.
    """
    t = F.softmax((teacher_out - center.reshape(1, 1, -1)) / teacher_temp, dim=-1).detach()
    log_s = F.log_softmax(student_out / student_temp, dim=-1)
    pair_loss = -torch.einsum("tnk,snk->ts", t, log_s) / teacher_out.shape[1]  # (T, S)
    n_teacher = teacher_out.shape[0]
    keep = ~torch.eye(n_teacher, student_out.shape[0], dtype=torch.bool, device=t.device)
    if not keep.any():
        raise ValueError("DINO needs at least two views (a view is never compared to itself)")
    return pair_loss[keep].mean()


class DINOLoss(nn.Module):
    """Self-distillation with centring and sharpening of the teacher.

    ``forward(teacher_out, student_out)`` takes lists of per-view logits (teacher: the
    global views; student: global then local views), returns the loss and then updates
    the centre ``c <- m c + (1 - m) mean(teacher_out)``. The centre is a persistent
    buffer; under DDP the batch mean is all-reduced over processes, as in the official code.

    Args:
        output_dim: ``K``, the head's output dimension (65536 in the paper).
        teacher_temp: Teacher temperature after warm-up (0.04; up to 0.07).
        student_temp: Student temperature (0.1).
        center_momentum: Centre EMA momentum (0.9).
    """

    center: Tensor

    def __init__(
        self,
        output_dim: int = 65536,
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if output_dim < 1:
            raise ValueError(f"output_dim must be >= 1, got {output_dim}")
        if teacher_temp <= 0 or student_temp <= 0:
            raise ValueError(f"temperatures must be > 0, got {teacher_temp}, {student_temp}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        self.teacher_temp = teacher_temp
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, output_dim))

    def forward(
        self,
        teacher_out: Sequence[Tensor],
        student_out: Sequence[Tensor],
        teacher_temp: float | None = None,
    ) -> Tensor:
        """Loss of per-view logits ``(N, K)``; ``teacher_temp`` overrides the default."""
        if len(teacher_out) < 1 or len(student_out) < len(teacher_out):
            raise ValueError("need >= 1 teacher view and at least as many student views")
        t = torch.stack(list(teacher_out))
        s = torch.stack(list(student_out))
        temp = self.teacher_temp if teacher_temp is None else teacher_temp
        with float32_loss(t):
            t, s = t.float(), s.float()
            loss = dino_cross_entropy(t, s, self.center, temp, self.student_temp)
        if self.training:
            self.update_center(t)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """EMA update of the centre from teacher logits ``(..., K)``."""
        batch_center = teacher_out.detach().reshape(-1, teacher_out.shape[-1]).mean(0, keepdim=True)
        if world_size() > 1:
            dist.all_reduce(batch_center)
            batch_center /= world_size()
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
