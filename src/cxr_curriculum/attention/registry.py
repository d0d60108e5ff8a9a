"""Saliency methods by name, for :class:`~cxr_curriculum.attention.LungAttentionScorer`."""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import SaliencyMethod
from .cam import CAM, GradCAM, GradCAMPlusPlus, HiResCAM
from .gradients import Gradients, IntegratedGradients, SmoothGrad
from .rollout import AttentionRollout, CLSAttention

__all__ = ["SALIENCY_METHODS", "make_saliency"]

#: Method name -> class. CAM methods need a target layer; the others do not (the ViT
#: attention methods read the attention of the model's ViT Backbone).
SALIENCY_METHODS: dict[str, type[SaliencyMethod]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "gradients": Gradients,
    "smoothgrad": SmoothGrad,
    "integrated_gradients": IntegratedGradients,
    "attention_rollout": AttentionRollout,
    "cls_attention": CLSAttention,
}


def make_saliency(
    method: str, model: nn.Module, target_layer: nn.Module | str | None = None, **kwargs: Any
) -> SaliencyMethod:
    """Build saliency method ``method`` (a key of :data:`SALIENCY_METHODS`) for ``model``.

    Args:
        method: Method name.
        model: The model to explain.
        target_layer: Layer for CAM methods (module, dotted name or ``None`` to use the
            model's ``target_layer``); must be ``None`` for gradient methods.
        **kwargs: Method settings (e.g. ``n_samples`` for SmoothGrad).
    """
    if method not in SALIENCY_METHODS:
        raise ValueError(
            f"unknown saliency method {method!r}; choose from {sorted(SALIENCY_METHODS)}"
        )
    cls = SALIENCY_METHODS[method]
    if issubclass(cls, CAM):
        return cls(model, target_layer, **kwargs)
    if target_layer is not None:
        raise ValueError(f"{method!r} works on the input and takes no target_layer")
    return cls(model, **kwargs)
