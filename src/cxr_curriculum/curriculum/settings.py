"""Curriculum-wide settings resolved for this process: device, AMP, memory format, DDP.

``Curriculum`` takes user-facing options (``device=None``, ``amp=None``, ...);
:func:`resolve_settings` turns them into the concrete :class:`RunSettings` the stage
loop uses, once the process knows its rank (:func:`~.distributed.init_distributed`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from cxr_curriculum.curriculum.distributed import DistInfo

__all__ = ["RunSettings", "deterministic_mode", "resolve_settings"]


@dataclass(frozen=True)
class RunSettings:
    """Concrete settings of one process's run (see ``Curriculum`` for their meaning)."""

    seed: int
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    checkpoint_every: int | None
    log_every: int
    progress: bool
    dist: DistInfo
    find_unused_parameters: bool


def resolve_settings(
    info: DistInfo,
    *,
    seed: int,
    device: str | torch.device | None,
    amp: str | bool | None,
    channels_last: bool | None,
    checkpoint_every: int | None,
    log_every: int,
    progress: bool | None,
    sync_batchnorm: bool,
    find_unused_parameters: bool,
) -> RunSettings:
    """Resolve the automatic choices.

    ``device=None`` -> ``cuda:LOCAL_RANK`` if a GPU is present, else the CPU;
    ``amp=None`` -> bf16 autocast on GPUs that support it, fp16 on other GPUs, off on the
    CPU (``True``: the same but bf16 on the CPU); ``channels_last=None`` -> on for GPUs;
    ``progress=None`` -> on when stderr is a terminal.

    Raises:
        ValueError: ``sync_batchnorm`` under multi-process DDP on the CPU.
    """
    if device is None:
        dev = torch.device(f"cuda:{info.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    cuda = dev.type == "cuda"
    amp_dtype: torch.dtype | None = None
    auto = amp is None or amp is True
    if amp == "bf16" or (auto and cuda and torch.cuda.is_bf16_supported()):
        amp_dtype = torch.bfloat16
    elif amp == "fp16" or (auto and cuda):
        amp_dtype = torch.float16
    elif amp is True:
        amp_dtype = torch.bfloat16
    if sync_batchnorm and info.distributed and not cuda:
        raise ValueError("sync_batchnorm needs GPUs (SyncBatchNorm does not run on the CPU)")
    return RunSettings(
        seed=seed,
        device=dev,
        amp_dtype=amp_dtype,
        channels_last=cuda if channels_last is None else channels_last,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        progress=sys.stderr.isatty() if progress is None else bool(progress),
        dist=info,
        find_unused_parameters=find_unused_parameters,
    )


@contextlib.contextmanager
def deterministic_mode(enabled: bool) -> Iterator[None]:
    """Within the block: deterministic algorithms (warn only) and no cuDNN benchmarking.

    Sets ``CUBLAS_WORKSPACE_CONFIG`` if unset (needed by deterministic cuBLAS) and
    restores torch's previous flags on exit. A no-op when ``enabled`` is false.
    """
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.benchmark = before[1]
