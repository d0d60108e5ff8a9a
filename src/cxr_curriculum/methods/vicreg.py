"""VICReg (Bardes, Ponce & LeCun 2022, "VICReg: Variance-Invariance-Covariance
Regularization for Self-Supervised Learning", arXiv 2105.04906)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from cxr_curriculum.losses import VICRegLoss
from cxr_curriculum.methods._views import two_views
from cxr_curriculum.methods.base import OptimizerHint
from cxr_curriculum.methods.heads import VICRegProjectionHead
from cxr_curriculum.methods.two_view import TwoViewMethod

__all__ = ["VICReg"]


class VICReg(TwoViewMethod):
    """Invariance between views plus variance and covariance regularisation per branch.

    Batch: ``[view0, view1]``. DDP: with ``gather_distributed`` the variance and
    covariance terms use the embeddings of all processes, gathered with gradients (the
    official code's ``FullGatherLayer``); the invariance term stays local.

    Args:
        projection_dim: Width of each of the expander's three layers (8192).
        lambda_param: Invariance weight (25).
        mu_param: Variance weight (25).
        nu_param: Covariance weight (1).
        gather_distributed: See above (a no-op on one process).
        asymmetric_blur: BYOL's asymmetric blur between the views (the paper's augmentations).
    """

    name: ClassVar[str] = "vicreg"
    #: LARS, lr 0.2 x batch/256, weight decay 1e-6 (paper, Sec. 4.2).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("lars", lr=0.2, weight_decay=1e-6)

    def __init__(
        self,
        projection_dim: int = 8192,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = True,
        asymmetric_blur: bool = True,
    ) -> None:
        super().__init__(
            projection_dim=projection_dim,
            lambda_param=lambda_param,
            mu_param=mu_param,
            nu_param=nu_param,
            gather_distributed=gather_distributed,
            asymmetric_blur=asymmetric_blur,
        )
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        self.criterion = VICRegLoss(
            lambda_param, mu_param, nu_param, gather_distributed=gather_distributed
        )

    def build_heads(self, num_features: int) -> None:
        d = self.hparams["projection_dim"]
        self.projection_head = VICRegProjectionHead(num_features, d, d)

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        x0, x1 = two_views(batch)
        return self.criterion(self._project(x0), self._project(x1))
