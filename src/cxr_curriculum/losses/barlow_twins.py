"""Barlow Twins loss (Zbontar et al. 2021, arXiv 2103.03230, Eq. 1 and Algorithm 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cxr_curriculum.losses._distributed import gather_with_grad
from cxr_curriculum.losses._precision import float32_loss

__all__ = ["BarlowTwinsLoss", "cross_correlation", "off_diagonal"]


def off_diagonal(c: Tensor) -> Tensor:
    """The ``D * (D - 1)`` off-diagonal entries of a square ``(D, D)`` matrix, flattened."""
    n, m = c.shape
    if n != m:
        raise ValueError(f"expected a square matrix, got {tuple(c.shape)}")
    return c.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def cross_correlation(z0: Tensor, z1: Tensor, eps: float = 1e-5) -> Tensor:
    """Empirical cross-correlation ``(D, D)`` of two batches standardised along the batch.

    Each feature is standardised with the batch mean and biased standard deviation (as
    ``BatchNorm1d(affine=False)`` in training mode, the paper's implementation).

    Args:
        z0: ``(N, D)`` embeddings of the first views.
        z1: ``(N, D)`` embeddings of the second views.
        eps: Variance floor.
    """
    n = z0.shape[0]
    if n < 2:
        raise ValueError("Barlow Twins needs a batch of at least 2 samples")

    def standardise(z: Tensor) -> Tensor:
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)

    return standardise(z0).T @ standardise(z1) / n


class BarlowTwinsLoss(nn.Module):
    """``sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2``.

    DDP: with ``gather_distributed=True`` the embeddings of all processes are gathered
    with gradients before standardising, so the batch statistics and ``C`` are those of
    the global batch (the paper normalises over all GPUs); a no-op on one process.

    Args:
        lambda_param: Weight of the redundancy-reduction term (5e-3, paper).
        gather_distributed: See above.
        eps: Variance floor of the standardisation.
    """

    def __init__(
        self, lambda_param: float = 5e-3, gather_distributed: bool = False, eps: float = 1e-5
    ) -> None:
        super().__init__()
        if lambda_param < 0:
            raise ValueError(f"lambda_param must be >= 0, got {lambda_param}")
        self.lambda_param = lambda_param
        self.gather_distributed = gather_distributed
        self.eps = eps

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """Scalar loss of two ``(N, D)`` batches."""
        if z0.dim() != 2 or z0.shape != z1.shape:
            raise ValueError(
                f"expected two (N, D) tensors, got {tuple(z0.shape)}, {tuple(z1.shape)}"
            )
        with float32_loss(z0):
            z0, z1 = z0.float(), z1.float()
            if self.gather_distributed:
                z0, z1 = gather_with_grad(z0), gather_with_grad(z1)
            c = cross_correlation(z0, z1, self.eps)
            on_diag = (torch.diagonal(c) - 1).pow(2).sum()
            return on_diag + self.lambda_param * off_diagonal(c).pow(2).sum()
