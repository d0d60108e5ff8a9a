"""Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny 2021, "Barlow Twins: Self-Supervised
Learning via Redundancy Reduction", arXiv 2103.03230)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from cxr_curriculum.losses import BarlowTwinsLoss
from cxr_curriculum.methods._views import two_views
from cxr_curriculum.methods.base import OptimizerHint
from cxr_curriculum.methods.heads import BarlowTwinsProjectionHead
from cxr_curriculum.methods.two_view import TwoViewMethod

__all__ = ["BarlowTwins"]


class BarlowTwins(TwoViewMethod):
    """Make the cross-correlation of two views' embeddings close to the identity.

    Batch: ``[view0, view1]``. DDP: with ``gather_distributed`` the embeddings of all
    processes are gathered with gradients, so the standardisation and the
    cross-correlation use the global batch (as the paper's implementation).

    Args:
        projection_dim: Width of each of the projector's three layers (8192).
        lambda_param: Weight of the redundancy-reduction term (5e-3).
        gather_distributed: See above (a no-op on one process).
        asymmetric_blur: BYOL's asymmetric blur between the two views (paper, Sec. 4).
    """

    name: ClassVar[str] = "barlow_twins"
    #: LARS, lr 0.2 x batch/256 for weights, weight decay 1.5e-6 (paper, Sec. 4).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("lars", lr=0.2, weight_decay=1.5e-6)

    def __init__(
        self,
        projection_dim: int = 8192,
        lambda_param: float = 5e-3,
        gather_distributed: bool = True,
        asymmetric_blur: bool = True,
    ) -> None:
        super().__init__(
            projection_dim=projection_dim,
            lambda_param=lambda_param,
            gather_distributed=gather_distributed,
            asymmetric_blur=asymmetric_blur,
        )
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        self.criterion = BarlowTwinsLoss(lambda_param, gather_distributed=gather_distributed)

    def build_heads(self, num_features: int) -> None:
        d = self.hparams["projection_dim"]
        self.projection_head = BarlowTwinsProjectionHead(num_features, d, d)

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        x0, x1 = two_views(batch)
        return self.criterion(self._project(x0), self._project(x1))
