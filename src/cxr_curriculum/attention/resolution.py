"""Is a CAM map fine enough to be scored against lung masks?

A class activation map has the spatial size of the layer it explains: a ResNet's last
stage (``layer4``, stride 32) gives a 2x2 map at 64 px. Upsampled bilinearly to the
mask, a 2x2 map is one smooth blob centred on the image: its energy in the lungs is the
lung area fraction whatever the model learned (lift about 1, chance; measured in
``docs/attention.md``). A lung spans about a third of the image's width, so a map needs
at least :data:`MIN_CAM_SIDE` cells along each side before one cell can lie inside one
lung.

The scorer does not change the layer on its own (scores are only comparable within one
method, layer and input size); it warns with :class:`CoarseSaliencyWarning`, records the
map size in the report, and names the deepest layer whose map is fine enough
(:func:`suggest_layer`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import eval_mode
from .tokens import holds_vit

__all__ = ["MIN_CAM_SIDE", "CoarseSaliencyWarning", "coarse_map_message", "suggest_layer"]

#: Smallest CAM map side (cells) that can tell the lungs from the rest of the image.
MIN_CAM_SIDE = 4


class CoarseSaliencyWarning(UserWarning):
    """A saliency map too coarse for lung masks (see :mod:`.resolution`)."""


def layer_output_sizes(model: nn.Module, images: Tensor) -> list[tuple[str, tuple[int, int]]]:
    """``(name, (h, w))`` of every submodule that returns a ``(B, C, h, w)`` tensor.

    Listed in the order in which the modules *finish* during one forward pass of
    ``images`` (a container comes after its children), without gradients, in eval mode.
    """
    done: list[tuple[str, tuple[int, int]]] = []
    handles = []

    def hook(name: str) -> Any:
        def record(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, Tensor) and out.ndim == 4 and out.shape[0] == images.shape[0]:
                done.append((name, (int(out.shape[-2]), int(out.shape[-1]))))

        return record

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad(), eval_mode(model):
            model(images)
    finally:
        for h in handles:
            h.remove()
    return done


def suggest_layer(model: nn.Module, images: Tensor, min_side: int = MIN_CAM_SIDE) -> str | None:
    """The deepest layer whose output map is at least ``min_side`` cells on each side.

    "Deepest" is the module that finishes last in the forward pass among those with a
    fine enough map, so a whole stage (``"0.body.layer3"``) is preferred to its last
    convolution. ``None`` when no layer qualifies (the input is too small) and for ViTs
    (their maps are the patch grid at every depth: use a larger input or smaller patches).

    Args:
        model: The classifier.
        images: ``(B, C, H, W)`` input of the size that will be explained (one image
            is enough).
        min_side: Smallest acceptable map side.
    """
    if holds_vit(model):  # every ViT layer works on the same patch grid: none is finer
        return None
    fine = [name for name, (h, w) in layer_output_sizes(model, images) if min(h, w) >= min_side]
    return fine[-1] if fine else None


def coarse_map_message(
    model: nn.Module,
    layer: str,
    map_size: tuple[int, int],
    images: Tensor,
    min_side: int = MIN_CAM_SIDE,
) -> str | None:
    """A warning text when ``map_size`` is below ``min_side``, else ``None``.

    Args:
        model: The classifier.
        layer: Name of the explained layer.
        map_size: ``(h, w)`` of its map.
        images: The input batch (its first image is used to find a better layer).
        min_side: Smallest acceptable map side.
    """
    if min(map_size) >= min_side:
        return None
    size = "x".join(str(s) for s in images.shape[-2:])
    better = suggest_layer(model, images[:1], min_side)
    if better is not None:
        advice = f"use target_layer={better!r}, a larger input or a gradient method"
    elif holds_vit(model):
        advice = (
            "use a larger input, a ViT with smaller patches (e.g. patch 8) or a gradient method"
        )
    else:
        advice = "use a larger input or a gradient method (e.g. method='gradients')"
    return (
        f"the CAM map of layer {layer!r} is {map_size[0]}x{map_size[1]} at {size} input: "
        f"too coarse for lung masks (need at least {min_side}x{min_side}; its lung score "
        f"sits near chance whatever the model does); {advice}"
    )
