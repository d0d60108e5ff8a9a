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


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sums every process's gradient into the local slice.

    The same rule as SimCLR's and lightly's ``GatherLayer``, written on the public
    ``dist.all_gather`` / ``dist.all_reduce`` (torch 2.14 warns that
    ``torch.distributed.nn.functional.all_gather`` is deprecated).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.stack(out)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients.

    The backward pass sums the gradients that all processes computed for this
    process's rows (every process's loss uses every row). Every process must pass a
    tensor of the same shape.

    Args:
        x: ``(N, ...)`` local tensor.

    Returns:
        ``(world_size * N, ...)``, rank 0's rows first; ``x`` itself on one process.
    """
    if world_size() == 1:
        return x
    gathered: Tensor = _GatherWithGrad.apply(x)
    return gathered.flatten(0, 1)


@torch.no_grad()
def gather_without_grad(x: Tensor) -> Tensor:
    """Like :func:`gather_with_grad` but detached (e.g. for queue updates)."""
    if world_size() == 1:
        return x.detach()
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.detach().contiguous())
    return torch.cat(out, dim=0)
