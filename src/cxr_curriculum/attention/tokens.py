"""Token models (ViTs) inside a classifier: their token-to-grid reshape and their blocks.

A CAM method explains a layer whose output is a ``(B, C, h, w)`` map. A ViT layer returns
tokens ``(B, P + N, D)`` instead; pytorch-grad-cam's recipe (its tutorial
``vision_transformers``) explains the last block's ``norm1`` and reshapes its output and
gradients with a ``reshape_transform`` that drops the ``P`` prefix (CLS) tokens and lays the
``N`` patch tokens on the patch grid. :func:`token_reshape` finds that reshape for a layer
of a :class:`~cxr_curriculum.backbones.Backbone` ViT inside any model
(``nn.Sequential(backbone, head)``, the classifier of ``evaluation.fine_tune``, ...), and
:func:`find_vit` finds the ViT itself for the attention methods (:mod:`.rollout`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

__all__ = ["ReshapeTransform", "find_vit", "holds_vit", "token_reshape"]

#: ``(tokens (B, T, C), image size (H, W)) -> map (B, C, h, w)``.
ReshapeTransform = Callable[[Tensor, tuple[int, int]], Tensor]


def _vits(model: nn.Module) -> list[nn.Module]:
    """Sub-modules of ``model`` (itself included) that are Backbone ViTs."""
    return [m for m in model.modules() if bool(getattr(m, "is_token_model", False))]


def holds_vit(model: nn.Module) -> bool:
    """Whether ``model`` contains a Backbone ViT."""
    return bool(_vits(model))


def token_reshape(model: nn.Module, layer: nn.Module) -> ReshapeTransform | None:
    """The token-to-grid reshape of the Backbone ViT that owns ``layer``, if any.

    Args:
        model: The model being explained.
        layer: The explained layer.

    Returns:
        The owning backbone's :meth:`~cxr_curriculum.backbones.Backbone.tokens_to_map`, or
        ``None`` when ``layer`` is not inside a Backbone ViT.
    """
    for vit in _vits(model):
        if any(m is layer for m in vit.modules()):
            reshape: ReshapeTransform = vit.tokens_to_map  # type: ignore[assignment]
            return reshape
    return None


def find_vit(model: nn.Module) -> Any:
    """The one Backbone ViT inside ``model`` (what attention rollout reads).

    Raises:
        ValueError: ``model`` holds no Backbone ViT, or more than one.
    """
    found = _vits(model)
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ValueError(
            f"attention methods need a model with one ViT Backbone (e.g. nn.Sequential("
            f"Backbone('timm:vit_tiny_patch16_224'), head)); found {what}"
        )
    return found[0]
