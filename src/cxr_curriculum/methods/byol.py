"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", arXiv 2006.07733)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cxr_curriculum.losses import byol_regression
from cxr_curriculum.methods._views import two_views
from cxr_curriculum.methods.base import OptimizerHint, preserved_buffers
from cxr_curriculum.methods.heads import BYOLPredictionHead, BYOLProjectionHead
from cxr_curriculum.methods.teacher import TeacherStudentMethod

__all__ = ["BYOL"]


class BYOL(TeacherStudentMethod):
    """Online network (projector + predictor) regresses a momentum target network.

    Loss: ``L = ||q0 - sg(z1')||^2 + ||q1 - sg(z0')||^2`` with L2-normalised vectors
    (``2 - 2 cos``), *summed* over the two directions as in the paper's Eq. 2 and
    reference code (lightly PR #1286: averaging halves the gradients).

    Batch: ``[view0, view1]``. No negatives, so nothing is gathered under DDP; use
    SyncBatchNorm for global batch statistics as the paper did.

    Args:
        projection_hidden_dim: Projector hidden width (4096).
        projection_dim: Projector output width (256).
        prediction_hidden_dim: Predictor hidden width (4096).
        momentum: Target momentum at the start (0.996).
        momentum_end: Target momentum at the end (1.0; cosine schedule).
        asymmetric_blur: Blur view 0 always and view 1 with p=0.1 (paper); else both
            use the augmentation defaults.
    """

    name: ClassVar[str] = "byol"
    #: LARS, lr 0.2 x batch/256, weight decay 1.5e-6 (paper, Sec. 3.3).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("lars", lr=0.2, weight_decay=1.5e-6)

    def __init__(
        self,
        projection_hidden_dim: int = 4096,
        projection_dim: int = 256,
        prediction_hidden_dim: int = 4096,
        momentum: float = 0.996,
        momentum_end: float = 1.0,
        asymmetric_blur: bool = True,
    ) -> None:
        super().__init__(
            momentum,
            momentum_end,
            projection_hidden_dim=projection_hidden_dim,
            projection_dim=projection_dim,
            prediction_hidden_dim=prediction_hidden_dim,
            asymmetric_blur=asymmetric_blur,
        )
        for name in ("projection_hidden_dim", "projection_dim", "prediction_hidden_dim"):
            if self.hparams[name] < 1:
                raise ValueError(f"{name} must be >= 1, got {self.hparams[name]}")

    def build_heads(self, num_features: int) -> None:
        hp = self.hparams
        self.projection_head = BYOLProjectionHead(
            num_features, hp["projection_hidden_dim"], hp["projection_dim"]
        )
        self.prediction_head = BYOLPredictionHead(
            hp["projection_dim"], hp["prediction_hidden_dim"], hp["projection_dim"]
        )
        self._build_teacher(self.projection_head)

    def _online(self, x: Tensor) -> Tensor:
        out: Tensor = self.prediction_head(self.projection_head(self._features(x)))
        return out

    @torch.no_grad()
    def _target(self, x: Tensor) -> Tensor:
        out: Tensor = self.teacher_head(self._teacher_features(x))
        return out

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        x0, x1 = two_views(batch)
        # one pass per view, so BatchNorm statistics are per view as in the reference code
        q0, q1 = self._online(x0), self._online(x1)
        z0, z1 = self._target(x0), self._target(x1)
        return byol_regression(q0, z1) + byol_regression(q1, z0)

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """L2-normalised online projections ``(B, projection_dim)`` of the first view."""
        with preserved_buffers(self):
            z = self.projection_head(self._features(two_views(batch)[0]))
        return F.normalize(z, dim=1)
