"""Pieces of one training step: the DDP-wrappable step module, device moves, the monitor.

Used by :mod:`cxr_curriculum.curriculum.runner`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from cxr_curriculum.curriculum.distributed import DistInfo, all_reduce_mean
from cxr_curriculum.curriculum.metrics_log import embedding_std
from cxr_curriculum.curriculum.sampling import ResumableDistributedSampler

__all__ = [
    "StepModule",
    "frozen_batchnorm_stats",
    "method_state_without_backbone",
    "monitor_std",
    "steps_per_epoch",
    "to_device",
]


class StepModule(nn.Module):
    """Make ``method.training_step`` the ``forward`` so DDP can wrap it."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: Any) -> Tensor:
        loss: Tensor = self.method.training_step(batch)  # type: ignore[operator]
        return loss


def to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(batch, Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(to_device(b, device, channels_last) for b in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


@contextlib.contextmanager
def frozen_batchnorm_stats(module: nn.Module) -> Iterator[None]:
    """Use batch statistics without updating running statistics (for the monitor)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    flags = [m.track_running_stats for m in norms]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(norms, flags, strict=True):
            m.track_running_stats = flag


def method_state_without_backbone(method: nn.Module, backbone: nn.Module) -> dict[str, Tensor]:
    """The method's state without the backbone's entries (saved separately)."""
    prefix = next((f"{n}." for n, m in method.named_children() if m is backbone), None)
    state = method.state_dict()
    return {k: v for k, v in state.items() if prefix is None or not k.startswith(prefix)}


def steps_per_epoch(sampler: ResumableDistributedSampler, micro: int, accum: int, n: int) -> int:
    per_epoch = sampler.num_samples // (micro * accum)
    if per_epoch < 1:
        raise ValueError(
            f"the stage's data has {n} images, fewer than one batch of {micro * accum} per "
            f"process; lower batch_size or add images"
        )
    return per_epoch


def monitor_std(method: nn.Module, batch: Any, info: DistInfo) -> float | None:
    fn = getattr(method, "embedding_for_monitor", None)
    if not callable(fn):
        return None
    with torch.no_grad(), frozen_batchnorm_stats(method):
        z = fn(batch)
    local = torch.tensor(embedding_std(z), device=z.device)
    return float(all_reduce_mean(local, info))
