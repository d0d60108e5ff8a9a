"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv 2002.05709)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from cxr_curriculum.losses import NTXentLoss
from cxr_curriculum.losses._distributed import world_size
from cxr_curriculum.methods._views import two_views
from cxr_curriculum.methods.base import OptimizerHint
from cxr_curriculum.methods.heads import SimCLRProjectionHead
from cxr_curriculum.methods.two_view import TwoViewMethod

__all__ = ["SimCLR"]


class SimCLR(TwoViewMethod):
    """Two augmented views, a 2-layer MLP projection and the NT-Xent loss.

    Batch: ``[view0, view1]``, each ``(B, 1, S, S)``.

    Args:
        temperature: NT-Xent temperature (0.1, the paper's ImageNet setting; Table 5).
        hidden_dim: Projection hidden width; ``None`` uses the backbone width (paper).
        output_dim: Projection output width (128).
        gather_distributed: Under DDP, use the views of all processes as negatives,
            gathered with gradients (the paper's global batch; no-op on one process).
    """

    name: ClassVar[str] = "simclr"
    #: LARS, lr 0.3 x batch/256, weight decay 1e-6 (paper, Sec. B.9).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("lars", lr=0.3, weight_decay=1e-6)

    def __init__(
        self,
        temperature: float = 0.1,
        hidden_dim: int | None = None,
        output_dim: int = 128,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(
            temperature=temperature,
            hidden_dim=hidden_dim,
            output_dim=output_dim,
            gather_distributed=gather_distributed,
        )
        if hidden_dim is not None and hidden_dim < 1:
            raise ValueError(f"hidden_dim must be None or >= 1, got {hidden_dim}")
        if output_dim < 1:
            raise ValueError(f"output_dim must be >= 1, got {output_dim}")
        self.criterion = NTXentLoss(temperature, gather_distributed=gather_distributed)

    def build_heads(self, num_features: int) -> None:
        hidden = self.hparams["hidden_dim"] or num_features
        self.projection_head = SimCLRProjectionHead(
            num_features, hidden, self.hparams["output_dim"]
        )

    def chance_loss(self, batch_size: int) -> float:
        """``log(2N - 1)``: NT-Xent when every view is as similar to all others.

        ``N`` is ``batch_size`` times the number of processes when negatives are gathered.
        """
        n = batch_size * (world_size() if self.hparams["gather_distributed"] else 1)
        return math.log(max(2 * n - 1, 2))

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        x0, x1 = two_views(batch)
        z = self._project(torch.cat([x0, x1]))  # one pass: BN statistics over both views
        z0, z1 = z.chunk(2)
        return self.criterion(z0, z1)
