"""Where a ViT's CLS token attends: attention rollout and last-layer CLS attention.

Both maps are read from the attention matrices of a :class:`~cxr_curriculum.backbones.Backbone`
ViT inside the model, are class-agnostic (``targets`` are ignored: they show where the
representation gathers information, not what drives one logit) and come out at the input
resolution, upsampled bilinearly from the patch grid like a CAM, never min-max normalised.

Attention matrices: timm's ``Attention`` runs fused scaled-dot-product attention and never
materialises the weights, so :func:`capture_attention` hooks each block's ``attn.qkv``
projection and recomputes ``softmax(q k^T * scale)`` from its output (after the block's
``q_norm``/``k_norm``), per head. This is the matrix timm's unfused path computes (its
``attn_drop`` input), without switching the model to the slower path.

References:
    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020,
    arXiv 2005.00928 (rollout: ``A~ = 0.5 A + 0.5 I``, rows renormalised, multiplied
    over the layers). jacobgil/vit-explain adds two settings that this module keeps:
    ``head_fusion`` (``"mean"``, ``"max"`` or ``"min"`` over heads; the paper averages)
    and ``discard_ratio`` (zero that fraction of the lowest fused weights of each layer,
    never the CLS-to-CLS weight; vit-explain's example uses 0.9, the paper 0).
    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO),
    ICCV 2021: the last layer's CLS attention over the patches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SaliencyMethod
from .targets import TargetsLike
from .tokens import find_vit

__all__ = [
    "HEAD_FUSIONS",
    "AttentionRollout",
    "CLSAttention",
    "attention_rollout",
    "capture_attention",
    "fuse_heads",
]

#: How the heads of one layer are combined.
HEAD_FUSIONS = ("mean", "max", "min")


@contextlib.contextmanager
def capture_attention(blocks: Sequence[nn.Module]) -> Iterator[list[Tensor]]:
    """Record each block's attention weights ``(B, heads, T, T)`` during the ``with`` block.

    Args:
        blocks: timm transformer blocks (each with ``attn.qkv``, ``num_heads``,
            ``head_dim``, ``scale``, ``q_norm`` and ``k_norm``).

    The hooks are removed on exit, whatever happens inside the block. Weights are float32.
    """
    store: list[Tensor] = []
    handles = []

    def hook(attn: nn.Module) -> Any:
        def record(_m: nn.Module, _i: Any, qkv: Tensor) -> None:
            b, t, _ = qkv.shape
            heads, dim = int(attn.num_heads), int(attn.head_dim)  # type: ignore[arg-type]
            q, k, _v = qkv.reshape(b, t, 3, heads, dim).permute(2, 0, 3, 1, 4).unbind(0)
            q, k = attn.q_norm(q).float(), attn.k_norm(k).float()  # type: ignore[operator]
            scale = float(attn.scale)  # type: ignore[arg-type]
            store.append(((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1))

        return record

    try:
        for block in blocks:
            attn = getattr(block, "attn", None)
            qkv = getattr(attn, "qkv", None)
            if not isinstance(qkv, nn.Module) or not hasattr(attn, "head_dim"):
                raise ValueError(
                    f"{type(block).__name__} has no timm Attention with a fused qkv projection"
                )
            handles.append(qkv.register_forward_hook(hook(attn)))  # type: ignore[arg-type]
        yield store
    finally:
        for handle in handles:
            handle.remove()


def fuse_heads(attention: Tensor, head_fusion: str) -> Tensor:
    """Combine heads: ``(B, heads, T, T) -> (B, T, T)`` by ``"mean"``, ``"max"`` or ``"min"``."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")


def attention_rollout(
    attentions: Sequence[Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> Tensor:
    """Roll attention out over the layers (Abnar & Zuidema 2020, Eq. 1).

    Args:
        attentions: Per layer, input end first, ``(B, heads, T, T)`` attention weights.
        head_fusion: See :func:`fuse_heads`.
        discard_ratio: Fraction in ``[0, 1)`` of each fused layer's lowest weights set to
            zero before the identity is added (never the CLS-to-CLS weight).

    Returns:
        ``(B, T, T)``: ``R = A~_L ... A~_1`` with ``A~ = rownorm(0.5 A + 0.5 I)``.
    """
    if not attentions:
        raise ValueError("attention_rollout needs at least one layer")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    b, _, t, _ = attentions[0].shape
    eye = torch.eye(t, device=attentions[0].device)
    result = eye.expand(b, t, t)
    for attention in attentions:
        fused = fuse_heads(attention.float(), head_fusion)
        n_drop = int(t * t * discard_ratio)
        if n_drop:
            flat = fused.flatten(1)
            low = flat.topk(n_drop, dim=1, largest=False).indices
            drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, low, True)
            drop[:, 0] = False  # the CLS token's attention to itself is kept
            fused = flat.masked_fill(drop, 0.0).view(b, t, t)
        a = (fused + eye) / 2
        result = (a / a.sum(dim=-1, keepdim=True)) @ result
    return result


class _ViTAttention(SaliencyMethod):
    """Base: run the model's ViT Backbone with the attention hooks, map CLS rows to images."""

    def __init__(self, model: nn.Module, head_fusion: str = "mean") -> None:
        super().__init__(model)
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
        self.vit = find_vit(model)
        if not self.vit.body.has_class_token:
            raise ValueError(f"{self.vit.name!r} has no CLS token to read attention from")
        self.head_fusion = head_fusion
        #: ``(h, w)`` of the patch grid in the last call (``None`` before the first).
        self.map_size: tuple[int, int] | None = None

    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """Attention maps ``(B, H, W)``; ``targets`` are ignored (class-agnostic)."""
        grid = self.vit.patch_grid(int(images.shape[-2]), int(images.shape[-1]))
        with torch.no_grad(), capture_attention(list(self.vit.body.blocks)) as store:
            self.vit.forward_tokens(images)
        cls_row = self.cls_row(store)[:, self.vit.num_prefix_tokens :]  # (B, N)
        self.map_size = grid
        maps = cls_row.reshape(images.shape[0], 1, *grid)
        return F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[
            :, 0
        ]

    def cls_row(self, attentions: list[Tensor]) -> Tensor:
        """``(B, T)`` weights of the CLS token over all tokens."""
        raise NotImplementedError


class AttentionRollout(_ViTAttention):
    """Attention rollout (Abnar & Zuidema 2020): the CLS row of :func:`attention_rollout`.

    Args:
        model: A model holding one ViT :class:`~cxr_curriculum.backbones.Backbone`.
        head_fusion: ``"mean"`` (paper), ``"max"`` or ``"min"`` over heads.
        discard_ratio: Fraction of the lowest weights of each layer dropped (0, paper;
            vit-explain's example uses 0.9).
    """

    name = "attention_rollout"

    def __init__(
        self, model: nn.Module, head_fusion: str = "mean", discard_ratio: float = 0.0
    ) -> None:
        super().__init__(model, head_fusion)
        if not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
        self.discard_ratio = discard_ratio

    def cls_row(self, attentions: list[Tensor]) -> Tensor:
        """The CLS row of the rollout over every layer."""
        return attention_rollout(attentions, self.head_fusion, self.discard_ratio)[:, 0]


class CLSAttention(_ViTAttention):
    """The last layer's attention of the CLS token over the patches (DINO's maps).

    Args:
        model: A model holding one ViT :class:`~cxr_curriculum.backbones.Backbone`.
        head_fusion: ``"mean"`` (default), ``"max"`` or ``"min"`` over heads.
    """

    name = "cls_attention"

    def cls_row(self, attentions: list[Tensor]) -> Tensor:
        """The CLS query's weights in the last block, heads fused."""
        return fuse_heads(attentions[-1][:, :, :1], self.head_fusion)[:, 0]
