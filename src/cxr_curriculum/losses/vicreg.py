"""VICReg loss (Bardes, Ponce & LeCun 2022, arXiv 2105.04906, Eqs. 1-6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxr_curriculum.losses._distributed import gather_with_grad
from cxr_curriculum.losses._precision import float32_loss

__all__ = ["VICRegLoss", "covariance_loss", "invariance_loss", "variance_loss"]


def invariance_loss(z0: Tensor, z1: Tensor) -> Tensor:
    """Mean squared distance between the two embeddings ``(N, D)`` (Eq. 5, per element)."""
    return F.mse_loss(z0, z1)


def variance_loss(z: Tensor, eps: float = 1e-4, gamma: float = 1.0) -> Tensor:
    """Hinge on each feature's standard deviation: ``mean_j relu(gamma - sqrt(var_j + eps))``."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances divided by ``D`` (Eq. 3)."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


class VICRegLoss(nn.Module):
    """``lambda * s(z0, z1) + mu * [v(z0) + v(z1)] / 2 + nu * [c(z0) + c(z1)]``.

    DDP: the invariance term is local; with ``gather_distributed=True`` the variance and
    covariance terms use the embeddings of all processes, gathered with gradients (as the
    official code does); a no-op on one process.

    Args:
        lambda_param: Invariance weight (25).
        mu_param: Variance weight (25).
        nu_param: Covariance weight (1).
        gather_distributed: See above.
        eps: Variance floor inside the square root (1e-4).
    """

    def __init__(
        self,
        lambda_param: float = 25.0,
        mu_param: float = 25.0,
        nu_param: float = 1.0,
        gather_distributed: bool = False,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        for name, value in (
            ("lambda_param", lambda_param),
            ("mu_param", mu_param),
            ("nu_param", nu_param),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.lambda_param = lambda_param
        self.mu_param = mu_param
        self.nu_param = nu_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """Scalar loss of two ``(N, D)`` batches, ``N >= 2``."""
        if z0.dim() != 2 or z0.shape != z1.shape or z0.shape[0] < 2:
            raise ValueError(
                f"expected two (N, D) tensors with N >= 2, got {tuple(z0.shape)}, {tuple(z1.shape)}"
            )
        with float32_loss(z0):
            z0, z1 = z0.float(), z1.float()
            inv = invariance_loss(z0, z1)
            if self.gather_distributed:
                z0, z1 = gather_with_grad(z0), gather_with_grad(z1)
            var = 0.5 * (variance_loss(z0, self.eps) + variance_loss(z1, self.eps))
            cov = covariance_loss(z0) + covariance_loss(z1)
            return self.lambda_param * inv + self.mu_param * var + self.nu_param * cov
