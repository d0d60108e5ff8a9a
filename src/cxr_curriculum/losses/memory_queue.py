"""A FIFO queue of past keys used as negatives by MoCo (He et al. 2020, arXiv 1911.05722)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxr_curriculum.losses._distributed import gather_without_grad

__all__ = ["MemoryQueue"]


class MemoryQueue(nn.Module):
    """Ring buffer of ``size`` L2-normalised ``dim``-d keys, initialised at random.

    The queue and its pointer are persistent buffers, so a checkpoint restores them and
    a resumed run continues with identical negatives.

    DDP behaviour: with ``gather_distributed=True`` each step enqueues the keys of *all*
    processes (gathered without gradients, rank 0's first), as in the official MoCo code;
    every process then holds the same queue, which also makes DDP's buffer broadcast a
    no-op. With ``gather_distributed=False`` each process enqueues only its own keys.

    Args:
        size: Number of stored keys (65536 in MoCo).
        dim: Key dimension.
        gather_distributed: Enqueue the keys of all processes.
        seed: Seed of the random initial content (reproducible, independent of the global RNG).
    """

    queue: Tensor
    ptr: Tensor

    def __init__(self, size: int, dim: int, gather_distributed: bool = False, seed: int = 0):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got size={size}, dim={dim}")
        self.size = size
        self.dim = dim
        self.gather_distributed = gather_distributed
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("queue", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def negatives(self) -> Tensor:
        """A detached copy of the stored keys, ``(size, dim)``."""
        return self.queue.detach().clone()

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` ``(N, dim)`` over the oldest entries (wrapping around).

        Raises:
            ValueError: If the key dimension differs from ``dim``.
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"expected keys of shape (N, {self.dim}), got {tuple(keys.shape)}")
        if self.gather_distributed:
            keys = gather_without_grad(keys)
        keys = keys.detach().to(self.queue.dtype)[-self.size :]
        n = keys.shape[0]
        idx = (int(self.ptr) + torch.arange(n, device=self.queue.device)) % self.size
        self.queue[idx] = keys
        self.ptr.fill_((int(self.ptr) + n) % self.size)
