"""Adapting the first convolution of RGB weights to ``in_chans`` input channels.

A grey X-ray copied into the three RGB channels and passed through an RGB
convolution gives the same output as the grey image passed through the *sum* of
the three RGB kernels. Summing is therefore the exact one-channel equivalent of an
ImageNet model fed a replicated grey image; it is the rule used by timm
(``timm/models/_manipulate.py: adapt_input_conv``) and segmentation-models-pytorch
(``encoders/_utils.py``). For other channel counts the RGB kernels are cycled and
rescaled by ``3 / in_chans`` so that the expected activation scale is kept.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["adapt_conv_weight"]


def adapt_conv_weight(weight: Tensor, in_chans: int) -> Tensor:
    """Adapt a first-convolution weight with 3 input channels to ``in_chans`` channels.

    Args:
        weight: Convolution weight of shape ``(out, 3, kh, kw)`` (RGB, OIHW layout).
        in_chans: Number of input channels of the target model (1 for X-rays).

    Returns:
        Weight of shape ``(out, in_chans, kh, kw)`` with the dtype of ``weight``:
        the sum over the RGB kernels for ``in_chans == 1``, the weight unchanged for
        ``in_chans == 3``, otherwise the RGB kernels cycled to ``in_chans`` channels
        and scaled by ``3 / in_chans``.

    Raises:
        ValueError: If ``in_chans < 1`` or ``weight`` is not a 4-D tensor with 3 input
            channels.
    """
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(
            "adapt_conv_weight expects an RGB conv weight of shape (out, 3, kh, kw), "
            f"got shape {tuple(weight.shape)}"
        )
    if in_chans == 3:
        return weight
    dtype = weight.dtype
    w = weight.float()
    if in_chans == 1:
        out = w.sum(dim=1, keepdim=True)
    else:
        reps = math.ceil(in_chans / 3)
        out = w.repeat(1, reps, 1, 1)[:, :in_chans] * (3.0 / in_chans)
    return out.to(dtype).contiguous(memory_format=torch.contiguous_format)
