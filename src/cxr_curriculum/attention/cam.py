"""Class activation maps: Grad-CAM, Grad-CAM++ and HiResCAM, batched in torch.

A template method (after jacobgil/pytorch-grad-cam's ``BaseCAM``): :class:`CAM` owns the
forward hook (always released, by a context manager, also when the model raises), the
forward pass, the target scores and the gradient; a subclass implements one step,
:meth:`CAM.combine`, which turns the layer's activations ``A`` and gradients ``G``
(both ``(B, C, h, w)``) into a ``(B, h, w)`` map. The map is passed through a ReLU (as in
all three papers), upsampled bilinearly (``align_corners=False``) to the input size and
returned without min-max normalisation. A layer that returns tokens ``(B, T, C)`` (a ViT
block) is reshaped to the patch grid, activations and gradients alike, by a
``reshape_transform`` (pytorch-grad-cam's recipe; found by itself for a Backbone ViT, see
:mod:`.tokens`).

References:
    Selvaraju et al., "Grad-CAM", ICCV 2017.
    Chattopadhay et al., "Grad-CAM++", WACV 2018 (eq. 19 closed form for exp scores).
    Draelos & Carin, "Use HiResCAM instead of Grad-CAM", arXiv 2011.08891, 2020.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import SaliencyMethod
from .targets import TargetsLike
from .tokens import ReshapeTransform, token_reshape

__all__ = [
    "CAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "backbone_modules",
    "capture_activation",
    "find_layer",
    "layer_name",
]


def backbone_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Backbone-like submodule of ``model`` (itself included).

    Backbone-like: a module with a ``body`` submodule and a ``target_layer`` attribute,
    as :class:`~cxr_curriculum.backbones.Backbone` has (found by shape, so that this
    layer does not import the backbones).
    """
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "body", None), nn.Module) and hasattr(type(m), "target_layer")
    ]


def _relative_layer(model: nn.Module, name: str) -> nn.Module | None:
    """The layer called ``name`` relative to the Backbone inside ``model`` (``None`` if
    no Backbone has it; ``ValueError`` if two different Backbones do)."""
    found: dict[int, tuple[str, nn.Module]] = {}
    for outer, bb in backbone_modules(model):
        body = bb.get_submodule("body")
        for base, prefix in ((bb, outer), (body, f"{outer}.body" if outer else "body")):
            try:
                layer = base.get_submodule(name)
            except AttributeError:
                continue
            full = f"{prefix}.{name}" if prefix else name
            found.setdefault(id(layer), (full, layer))
    if len(found) > 1:
        names = sorted(full for full, _ in found.values())
        raise ValueError(
            f"target_layer {name!r} is ambiguous: the model holds several backbones with "
            f"that layer ({names}); give the full dotted name"
        )
    return next(iter(found.values()))[1] if found else None


def find_layer(model: nn.Module, target_layer: nn.Module | str | None) -> nn.Module:
    """Resolve the layer to explain.

    One naming scheme for every model: a name is looked up as a full dotted name in
    ``model`` first (``"0.body.layer4"`` in ``nn.Sequential(backbone, head)``,
    ``"backbone.body.layer4"`` in :func:`~cxr_curriculum.evaluation.fine_tune`'s
    classifier), then relative to the :class:`~cxr_curriculum.backbones.Backbone`
    inside it, with or without its ``body.`` (``"layer3"`` or ``"body.layer3"``), so
    ``target_layer="layer3"`` names the same layer on a bare backbone, on
    ``nn.Sequential(backbone, head)`` and on a fine-tuned classifier.

    Args:
        model: The model.
        target_layer: A submodule of ``model``, its dotted name (full, or relative to
            the backbone), or ``None``: the ``target_layer`` attribute of the model or
            of its first submodule that has one (a Backbone, also inside
            ``nn.Sequential(backbone, head)``).

    Raises:
        ValueError: If the layer cannot be found, is not part of ``model``, or a
            relative name matches layers of two different backbones.
    """
    if isinstance(target_layer, str):
        try:
            return model.get_submodule(target_layer)
        except AttributeError:
            pass
        layer = _relative_layer(model, target_layer)
        if layer is not None:
            return layer
        names = [n for n, _ in model.named_modules() if n][:8]
        hint = ""
        bbs = backbone_modules(model)
        if bbs:
            body = bbs[0][1].get_submodule("body")
            relative = [n for n, _ in body.named_children()][:8]
            hint = f"; names relative to the backbone (work on any model holding it): {relative}"
        raise ValueError(
            f"model has no submodule {target_layer!r}; full names look like {names}{hint}"
        )
    if isinstance(target_layer, nn.Module):
        if not any(m is target_layer for m in model.modules()):
            raise ValueError("target_layer is not a submodule of model")
        return target_layer
    if target_layer is not None:
        raise ValueError(
            f"target_layer must be a module, a dotted name or None, got {target_layer!r}"
        )
    for module in model.modules():
        layer = getattr(module, "target_layer", None)
        if isinstance(layer, nn.Module):
            return layer
    raise ValueError(
        "no target_layer given and the model has no Backbone-like `target_layer` attribute; "
        "pass the layer or its dotted name"
    )


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """Dotted name of ``layer`` inside ``model`` (a layer :func:`find_layer` resolved)."""
    return next(n for n, m in model.named_modules() if m is layer)


@contextlib.contextmanager
def capture_activation(layer: nn.Module) -> Iterator[list[Tensor]]:
    """Record ``layer``'s output tensors during the ``with`` block.

    The hook is removed on exit, whatever happens inside the block. The list receives the
    (non-detached) output of every call, so that gradients can be taken with respect to it.
    """
    store: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, Tensor):
            raise ValueError(
                f"target layer {type(_module).__name__} must return a tensor, "
                f"got {type(output).__name__}"
            )
        store.append(output)

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


class CAM(SaliencyMethod):
    """Template for gradient-weighted class activation maps.

    Args:
        model: Any ``nn.Module`` returning logits.
        target_layer: The layer to explain (module, dotted name, or ``None`` to use the
            model's ``target_layer`` attribute); its output must be ``(B, C, h, w)``, or
            tokens ``(B, T, C)`` with a ``reshape_transform``.
        relu: Apply the ReLU of the papers to the combined map (default ``True``).
        reshape_transform: ``(tokens (B, T, C), (H, W)) -> (B, C, h, w)`` applied to the
            layer's activations and gradients; ``None`` uses the owning Backbone ViT's
            :meth:`~cxr_curriculum.backbones.Backbone.tokens_to_map` for token layers.
    """

    name = "cam"

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module | str | None = None,
        relu: bool = True,
        reshape_transform: ReshapeTransform | None = None,
    ) -> None:
        super().__init__(model)
        self.target_layer = find_layer(model, target_layer)
        self.relu = relu
        self.reshape_transform = reshape_transform or token_reshape(model, self.target_layer)
        #: ``(h, w)`` of the layer's map in the last call (``None`` before the first).
        self.map_size: tuple[int, int] | None = None

    @property
    def layer_name(self) -> str:
        """Dotted name of the explained layer inside the model."""
        return layer_name(self.model, self.target_layer)

    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """Forward, score, differentiate with respect to the layer, combine, upsample."""
        # Inputs require grad so that frozen models still give the layer a grad_fn.
        images = images.requires_grad_(True)
        with capture_activation(self.target_layer) as store:
            outputs = self.model(images)
        if len(store) != 1:
            raise ValueError(f"target layer ran {len(store)} times in one forward pass; need 1")
        act = store[0]
        tokens = act.ndim == 3 and self.reshape_transform is not None
        if not (act.ndim == 4 or tokens) or act.shape[0] != images.shape[0]:
            raise ValueError(
                f"target layer output must be (B, C, h, w), or tokens (B, T, C) of a ViT "
                f"Backbone or with a reshape_transform, got {tuple(act.shape)}; choose a "
                "convolutional layer"
            )
        scores = self._score(outputs, targets)
        (grads,) = torch.autograd.grad(scores.sum(), act)
        act, grads = act.detach(), grads.detach()
        if tokens:
            size = (int(images.shape[-2]), int(images.shape[-1]))
            act = self.reshape_transform(act, size)  # type: ignore[misc]
            grads = self.reshape_transform(grads, size)  # type: ignore[misc]
        self.map_size = (int(act.shape[-2]), int(act.shape[-1]))
        cam = self.combine(act, grads)
        if self.relu:
            cam = cam.clamp_min(0)
        return F.interpolate(
            cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]

    def combine(self, activations: Tensor, grads: Tensor) -> Tensor:
        """Map ``(B, C, h, w)`` activations and gradients to a ``(B, h, w)`` map."""
        raise NotImplementedError


class GradCAM(CAM):
    """Grad-CAM: channel weights are the spatially averaged gradients (Selvaraju 2017)."""

    name = "gradcam"

    def combine(self, activations: Tensor, grads: Tensor) -> Tensor:
        """``sum_c mean_ij(G_cij) * A_c``."""
        weights = grads.mean(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(1)


class GradCAMPlusPlus(CAM):
    """Grad-CAM++ with the closed-form alpha of its eq. 19 (Chattopadhay 2018)."""

    name = "gradcam++"

    def combine(self, activations: Tensor, grads: Tensor) -> Tensor:
        """``sum_c (sum_ij alpha_cij relu(G_cij)) * A_c`` with the paper's alpha."""
        g2 = grads.pow(2)
        g3 = g2 * grads
        denom = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
        alpha = torch.where(grads != 0, g2 / (denom + 1e-6), torch.zeros_like(grads))
        weights = (alpha * grads.clamp_min(0)).sum(dim=(2, 3), keepdim=True)
        return (weights * activations).sum(1)


class HiResCAM(CAM):
    """HiResCAM: element-wise gradient times activation, summed over channels (Draelos 2020)."""

    name = "hirescam"

    def combine(self, activations: Tensor, grads: Tensor) -> Tensor:
        """``sum_c G_c * A_c``."""
        return (grads * activations).sum(1)
