"""Helpers to gather tensors across processes; no-ops when torch.distributed is not in use."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_with_grad", "gather_without_grad", "rank", "world_size"]


def world_size() -> int:
    """Number of processes, 1 when torch.distributed is unavailable or not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 when torch.distributed is unavailable or not initialised."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients.

    Uses ``torch.distributed.nn.functional.all_gather``, whose backward sums the
    gradients of all processes into each process's own slice. Every process must pass a
    tensor of the same shape.

    Args:
        x: ``(N, ...)`` local tensor.

    Returns:
        ``(world_size * N, ...)``, rank 0's rows first; ``x`` itself on one process.
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(list(all_gather(x)), dim=0)


@torch.no_grad()
def gather_without_grad(x: Tensor) -> Tensor:
    """Like :func:`gather_with_grad` but detached (e.g. for queue updates)."""
    if world_size() == 1:
        return x.detach()
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.detach().contiguous())
    return torch.cat(out, dim=0)
