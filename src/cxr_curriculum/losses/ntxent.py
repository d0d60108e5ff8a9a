"""NT-Xent / InfoNCE: SimCLR's in-batch contrastive loss and MoCo's queue variant.

- SimCLR (Chen et al. 2020, arXiv 2002.05709, Eq. 1): each of the ``2N`` views is
  classified against the other ``2N - 1`` views; its partner view is the positive.
- MoCo (He et al. 2020, arXiv 1911.05722, Eq. 1): each query is classified against its
  key (positive) and the ``K`` keys of a :class:`MemoryQueue` (negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxr_curriculum.losses._distributed import gather_with_grad, rank
from cxr_curriculum.losses._precision import float32_loss
from cxr_curriculum.losses.memory_queue import MemoryQueue

__all__ = ["NTXentLoss", "info_nce_with_negatives", "nt_xent"]


def nt_xent(z0: Tensor, z1: Tensor, temperature: float, gather_distributed: bool = False) -> Tensor:
    """SimCLR's NT-Xent loss, averaged over the ``2N`` (local) views.

    With ``gather_distributed`` the views of every process serve as negatives (gathered
    with gradients); the mean over processes then equals the single-process loss on the
    concatenated batch. All processes must use the same local batch size.

    Args:
        z0: ``(N, D)`` embeddings of the first views (not necessarily normalised).
        z1: ``(N, D)`` embeddings of the second views.
        temperature: Softmax temperature ``tau``.
        gather_distributed: Use all processes' views as negatives.

    Returns:
        Scalar loss.
    """
    n = z0.shape[0]
    z_local = F.normalize(torch.cat([z0, z1]), dim=1)  # (2N, D)
    if gather_distributed:
        all0 = gather_with_grad(F.normalize(z0, dim=1))
        all1 = gather_with_grad(F.normalize(z1, dim=1))
        offset = rank() * n
    else:
        all0, all1 = z_local[:n], z_local[n:]
        offset = 0
    total = all0.shape[0]
    z_all = torch.cat([all0, all1])  # (2M, D), M = world_size * N
    logits = z_local @ z_all.T / temperature  # (2N, 2M)
    own = torch.arange(n, device=z0.device) + offset
    self_cols = torch.cat([own, own + total])
    pos_cols = torch.cat([own + total, own])
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(2 * n, device=z0.device), self_cols] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, pos_cols)


def info_nce_with_negatives(
    query: Tensor, key: Tensor, negatives: Tensor, temperature: float
) -> Tensor:
    """MoCo's InfoNCE: the key is the positive, ``negatives`` the other classes.

    Args:
        query: ``(N, D)`` query embeddings.
        key: ``(N, D)`` key embeddings (the positives).
        negatives: ``(K, D)`` L2-normalised negative keys.
        temperature: Softmax temperature.

    Returns:
        Scalar loss (mean over queries).
    """
    q = F.normalize(query, dim=1)
    k = F.normalize(key, dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    l_neg = q @ negatives.to(q.dtype).T  # (N, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


class NTXentLoss(nn.Module):
    """NT-Xent (SimCLR) or, with ``memory_bank_size > 0``, MoCo's queue InfoNCE.

    In queue mode ``forward(query, key)`` uses the queue's keys as negatives and then, in
    training mode, enqueues the normalised ``key`` (after computing the loss, so a key is
    never its own negative).

    DDP: ``gather_distributed=True`` gathers in-batch negatives with gradients (SimCLR);
    in queue mode it gathers the keys of all processes (without gradients) before they
    are enqueued, so every process holds the same queue (see :class:`MemoryQueue`).

    Args:
        temperature: Softmax temperature, ``> 0`` (0.5 by default; SimCLR used 0.1 on
            ImageNet, MoCo v2 0.2).
        memory_bank_size: Number of queued negatives; 0 disables the queue.
        embedding_dim: Key dimension, required when ``memory_bank_size > 0``.
        gather_distributed: See above; a no-op without an initialised process group.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        memory_bank_size: int = 0,
        embedding_dim: int | None = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if not temperature > 1e-8:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if memory_bank_size < 0:
            raise ValueError(f"memory_bank_size must be >= 0, got {memory_bank_size}")
        if memory_bank_size > 0 and (embedding_dim is None or embedding_dim < 1):
            raise ValueError("memory_bank_size > 0 needs a positive embedding_dim")
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self.memory_bank: MemoryQueue | None = None
        if memory_bank_size > 0:
            assert embedding_dim is not None
            self.memory_bank = MemoryQueue(memory_bank_size, embedding_dim, gather_distributed)

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """Loss of two ``(N, D)`` batches of embeddings (queries and keys in queue mode)."""
        if z0.dim() != 2 or z0.shape != z1.shape:
            raise ValueError(
                f"expected two (N, D) tensors, got {tuple(z0.shape)}, {tuple(z1.shape)}"
            )
        with float32_loss(z0):
            z0, z1 = z0.float(), z1.float()
            if self.memory_bank is None:
                return nt_xent(z0, z1, self.temperature, self.gather_distributed)
            negatives = self.memory_bank.negatives()
            loss = info_nce_with_negatives(z0, z1, negatives, self.temperature)
        if self.training:
            self.memory_bank.enqueue(F.normalize(z1.detach(), dim=1))
        return loss
