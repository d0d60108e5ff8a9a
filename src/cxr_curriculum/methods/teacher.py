"""A base for methods with a momentum teacher (MoCo v2, BYOL, DINO)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from cxr_curriculum.methods.momentum import cosine_schedule, make_momentum_copy, update_momentum
from cxr_curriculum.methods.two_view import TwoViewMethod

__all__ = ["TeacherStudentMethod"]


class TeacherStudentMethod(TwoViewMethod):
    """A :class:`TwoViewMethod` whose teacher (backbone + head) follows the student by EMA.

    Subclasses call :meth:`_build_teacher` at the end of ``build_heads``. The teacher is
    a registered, frozen submodule, so ``state_dict()`` saves it and a resumed run
    continues identically. :meth:`on_step_end` sets the momentum by
    ``cosine_schedule(step, total_steps, momentum, momentum_end)`` and updates the
    teacher; the momentum depends only on the step, never on hidden state.

    Args:
        momentum: Momentum at the start of the stage.
        momentum_end: Momentum at the end (equal to ``momentum`` for a constant one).
        **hparams: Further hyper-parameters recorded in ``hparams``.
    """

    teacher_backbone: nn.Module
    teacher_head: nn.Module

    def __init__(self, momentum: float, momentum_end: float, **hparams: Any) -> None:
        super().__init__(momentum=momentum, momentum_end=momentum_end, **hparams)
        for name, value in (("momentum", momentum), ("momentum_end", momentum_end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.last_momentum: float | None = None

    def _build_teacher(self, head: nn.Module) -> None:
        """Create frozen copies of the backbone and of ``head``."""
        self.teacher_backbone = make_momentum_copy(self._require_backbone())
        self.teacher_head = make_momentum_copy(head)

    def _require_backbone(self) -> nn.Module:
        if self.backbone is None:
            raise RuntimeError(f"call {type(self).__name__}.setup(backbone) first")
        return self.backbone

    def _student_head(self) -> nn.Module:
        """The student module that :attr:`teacher_head` copies (``projection_head``)."""
        head: nn.Module = self.projection_head
        return head

    def _teacher_features(self, x: Tensor) -> Tensor:
        out: Tensor = self.teacher_backbone(x)
        return out.flatten(1)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """EMA update of the teacher with the scheduled momentum."""
        super().on_step_end(step, total_steps)
        self._require_setup()
        m = cosine_schedule(
            step, total_steps, self.hparams["momentum"], self.hparams["momentum_end"]
        )
        update_momentum(self._require_backbone(), self.teacher_backbone, m)
        update_momentum(self._student_head(), self.teacher_head, m)
        self.last_momentum = m
