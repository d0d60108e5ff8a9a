"""Distributed data parallel helpers: process-group set-up, rank-0 duties, reductions.

A curriculum runs unchanged under ``torchrun --nproc_per_node N script.py``: the
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables torchrun sets are read, the process
group is created with ``nccl`` on GPUs and ``gloo`` on CPUs, and the method is wrapped
in ``DistributedDataParallel``. Only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistInfo", "all_reduce_mean", "barrier", "init_distributed", "revert_sync_batchnorm"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes, or report a single process.

    If ``torch.distributed`` is already initialised it is used as is. Otherwise, when
    ``WORLD_SIZE > 1`` is set (torchrun), the group is initialised from the environment
    with ``backend`` (default ``"nccl"`` if CUDA is available, else ``"gloo"``).

    Args:
        backend: ``"gloo"``, ``"nccl"`` or ``None`` (auto).

    Returns:
        This process's :class:`DistInfo`.
    """
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():  # pragma: no cover
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo', 'nccl' or None; got {backend!r}")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for a single process)."""
    if info.distributed:
        dist.barrier()


def all_reduce_mean(values: Tensor, info: DistInfo) -> Tensor:
    """Average a tensor over processes (returns a detached copy; no-op for one process)."""
    out = values.detach().clone()
    if info.distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Undo ``nn.SyncBatchNorm.convert_sync_batchnorm``: SyncBatchNorm -> BatchNorm2d.

    Parameters and running statistics are kept (the modules share tensors). Used so the
    backbone returned by a DDP run is an ordinary module again.

    Args:
        module: a module tree, changed in place where possible.

    Returns:
        The module (a new one only if ``module`` itself was a SyncBatchNorm).
    """
    out = module
    if isinstance(module, nn.SyncBatchNorm):
        out = nn.BatchNorm2d(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            out.weight = module.weight
            out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, revert_sync_batchnorm(child))
    return out
