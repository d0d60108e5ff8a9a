"""Compute losses in float32 even inside an autocast (bf16/fp16) region."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["float32_loss"]


@contextlib.contextmanager
def float32_loss(reference: Tensor) -> Iterator[None]:
    """Disable autocast on ``reference``'s device type for the enclosed loss computation.

    Cross-correlations, covariances and softmax logits lose too much precision in
    bfloat16/float16; callers also cast their inputs with ``.float()``.
    """
    with torch.autocast(device_type=reference.device.type, enabled=False):
        yield
