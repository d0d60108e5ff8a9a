"""Random patch masking and token gathering for masked image modelling (MAE).

The masking follows MAE (He et al. 2022, Sec. 3 "Masking"; ``random_masking`` in the
official code, ``random_token_mask`` in lightly): draw one uniform number per patch, sort,
keep the ``int(N * (1 - mask_ratio))`` patches with the smallest numbers and mask the rest.
Every image of a batch keeps the same number of patches, so the encoder's input stays a
dense tensor. Indices here count patches only (``0..N-1``); prefix (CLS) tokens are never
masked and are handled by the encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gather_tokens", "mask_from_noise", "random_patch_mask", "scatter_tokens"]


def mask_from_noise(noise: Tensor, mask_ratio: float) -> tuple[Tensor, Tensor]:
    """Split patch indices by sorting per-patch noise.

    Args:
        noise: ``(B, N)`` random numbers, one per patch.
        mask_ratio: Fraction of patches to mask, in ``[0, 1)``.

    Returns:
        ``(keep (B, K), masked (B, N - K))`` patch indices with ``K = max(1, int(N * (1 -
        mask_ratio)))``, each in order of increasing noise.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if noise.ndim != 2 or noise.shape[1] < 1:
        raise ValueError(f"noise must be (B, N) with N >= 1, got {tuple(noise.shape)}")
    n_keep = max(1, int(noise.shape[1] * (1 - mask_ratio)))
    order = torch.argsort(noise, dim=1)
    return order[:, :n_keep], order[:, n_keep:]


def random_patch_mask(
    batch_size: int,
    num_patches: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """MAE's random masking: :func:`mask_from_noise` of uniform noise.

    The noise is drawn on the CPU (from ``generator``, or torch's global CPU generator) and
    the indices moved to ``device``, so that a seed gives the same masks on every device.

    Returns:
        ``(keep (B, K), masked (B, N - K))`` patch indices (``int64``).
    """
    noise = torch.rand(batch_size, num_patches, generator=generator)
    keep, masked = mask_from_noise(noise, mask_ratio)
    return keep.to(device), masked.to(device)


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """``tokens[b, index[b]]``: ``(B, N, D)`` and ``(B, K)`` -> ``(B, K, D)``."""
    return torch.gather(tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1]))


def scatter_tokens(base: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """A copy of ``base`` ``(B, N, D)`` with ``values`` ``(B, K, D)`` written at ``index``."""
    return torch.scatter(base, 1, index[..., None].expand(-1, -1, base.shape[-1]), values)
