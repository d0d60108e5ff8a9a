"""Negative cosine similarity (SimSiam, Chen & He 2021, arXiv 2011.10566) and BYOL's
normalised regression loss (Grill et al. 2020, arXiv 2006.07733, Eq. 2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NegativeCosineSimilarity", "byol_regression", "negative_cosine_similarity"]


def negative_cosine_similarity(p: Tensor, z: Tensor, eps: float = 1e-8) -> Tensor:
    """``-mean_i cos(p_i, z_i)``; the caller decides where gradients stop.

    Args:
        p: ``(N, D)`` predictions.
        z: ``(N, D)`` targets.
        eps: Small value for numerical stability.

    Returns:
        Scalar in ``[-1, 1]``.
    """
    return -F.cosine_similarity(p, z, dim=1, eps=eps).mean()


def byol_regression(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's ``||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z)``, averaged over the batch."""
    return 2.0 - 2.0 * F.cosine_similarity(p, z, dim=1).mean()


class NegativeCosineSimilarity(nn.Module):
    """``forward(p, z) = -mean cos(p, z)``, one direction (lightly-compatible).

    For BYOL and SimSiam use :meth:`symmetric`, which stops the gradient of the targets
    and *sums* the two directions, as BYOL's reference does (lightly PR #1286 found that
    averaging halves the loss and the gradients; ImageNet kNN 34.6% -> 45.6%).

    Args:
        eps: Small value for numerical stability.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = eps

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """Scalar ``-mean cos(z0, z1)`` for two ``(N, D)`` tensors."""
        if z0.shape != z1.shape:
            raise ValueError(f"shapes differ: {tuple(z0.shape)} vs {tuple(z1.shape)}")
        return negative_cosine_similarity(z0, z1, self.eps)

    def symmetric(self, p0: Tensor, p1: Tensor, z0: Tensor, z1: Tensor) -> Tensor:
        """``D(p0, sg(z1)) + D(p1, sg(z0))``: predictions of each view regress the other.

        Args:
            p0: ``(N, D)`` predictions from view 0.
            p1: ``(N, D)`` predictions from view 1.
            z0: ``(N, D)`` targets from view 0 (gradient stopped here).
            z1: ``(N, D)`` targets from view 1 (gradient stopped here).
        """
        return self(p0, z1.detach()) + self(p1, z0.detach())
