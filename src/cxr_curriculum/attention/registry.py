"""Saliency methods by name, for :class:`~cxr_curriculum.attention.LungAttentionScorer`.

Built-in names are the keys of :data:`SALIENCY_METHODS`; ``"pytorch-grad-cam:Class"`` and
``"captum:Class"`` name any method class of those libraries (see :mod:`.adapters`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import SaliencyMethod
from .cam import CAM, GradCAM, GradCAMPlusPlus, HiResCAM
from .gradients import Gradients, IntegratedGradients, SmoothGrad
from .rollout import AttentionRollout, CLSAttention

__all__ = ["SALIENCY_METHODS", "check_method", "make_saliency"]

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


def check_method(method: str) -> str:
    """Validate a method name eagerly: a built-in name, or ``"LIBRARY:Class"`` whose
    library is installed and has the class.

    Raises:
        ValueError: Unknown name or class.
        ImportError: The adapted library is missing (the message names the ``saliency``
            extra).
    """
    from .adapters import library_class, parse_method

    if parse_method(method) is not None:
        library_class(method)
    elif method not in SALIENCY_METHODS:
        raise ValueError(
            f"unknown method {method!r}; choose from {sorted(SALIENCY_METHODS)} or name a "
            "pytorch-grad-cam or captum class ('pytorch-grad-cam:ScoreCAM', 'captum:Occlusion')"
        )
    return method


def make_saliency(
    method: str, model: nn.Module, target_layer: nn.Module | str | None = None, **kwargs: Any
) -> SaliencyMethod:
    """Build saliency method ``method`` for ``model``.

    Args:
        method: A key of :data:`SALIENCY_METHODS`, or ``"pytorch-grad-cam:Class"`` /
            ``"captum:Class"`` (see :mod:`.adapters`).
        model: The model to explain.
        target_layer: Layer for CAM and layer methods (module, dotted name, full or
            relative to the backbone, or ``None`` to use the model's ``target_layer``);
            must be ``None`` for methods that work on the input.
        **kwargs: Method settings (e.g. ``n_samples`` for SmoothGrad); for adapted
            methods ``init={...}`` (constructor) and ``call={...}`` (the call).
    """
    from .adapters import library_class, parse_method, split_settings

    if parse_method(method) is not None:
        library, cls = library_class(method)
        init, call = split_settings(method, kwargs)
        if library == "captum":
            from .adapter_captum import CaptumAttribution

            return CaptumAttribution(model, cls, target_layer, init, call)
        from .adapter_gradcam import PytorchGradCAM

        return PytorchGradCAM(model, cls, target_layer, init, call)
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
