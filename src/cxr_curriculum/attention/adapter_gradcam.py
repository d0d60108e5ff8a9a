"""Any pytorch-grad-cam method (``method="pytorch-grad-cam:ScoreCAM"``) as a saliency method.

The library's class is built on the scorer's model and target layer (``init`` settings
pass through: ``reshape_transform`` for token models, ...) and called on the batch with
one pytorch-grad-cam target per image (``call`` settings pass through: ``aug_smooth``,
``eigen_smooth``).

**Maps are not min-max normalised.** pytorch-grad-cam rescales every map to ``[0, 1]``
(``scale_cam_image``) before returning it, which would change every mass metric (see
:mod:`.metrics`). For the methods built on ``BaseCAM``'s own flow (GradCAM, GradCAM++,
HiResCAM, ScoreCAM, AblationCAM, XGradCAM, EigenCAM, EigenGradCAM, LayerCAM,
GradCAMElementWise, KPCA_CAM, FEM, RandomCAM, ShapleyCAM, ...), the adapter replaces
that one step on the instance: the map is the method's own ``get_cam_image`` with the
library's ReLU, at the layer's resolution, upsampled bilinearly here like the built-in
CAMs. Methods that replace ``BaseCAM``'s flow (FullGrad, FinerCAM, RefineCAM, SESS,
...) are called as they are; their maps come back normalised by the library, which the
report says (``meta["warnings"]``).

The library's backward pass writes parameter ``.grad`` fields; the adapter puts them
back as they were, and the model's training flags are restored by the base class.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .adapters import fixed_target, per_image, upsampled
from .base import SaliencyMethod
from .cam import find_layer, layer_name
from .targets import Target, TargetsLike

__all__ = ["PytorchGradCAM", "keeps_scale"]


class _ClassScore:
    """pytorch-grad-cam target: one image's output ``(K,)`` -> its class-``k`` logit."""

    def __init__(self, k: int, sign: float = 1.0) -> None:
        self.k, self.sign = k, sign

    def __call__(self, output: Tensor) -> Tensor:
        return output.reshape(-1)[self.k] * self.sign


class _RowScore:
    """pytorch-grad-cam target from a batch target that works on any batch."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def __call__(self, output: Tensor) -> Tensor:
        return self.target(output[None])[0]


def keeps_scale(cls: type) -> bool:
    """Whether ``cls`` follows ``BaseCAM``'s flow, whose rescaling the adapter can skip."""
    from pytorch_grad_cam.base_cam import BaseCAM

    return issubclass(cls, BaseCAM) and all(
        getattr(cls, step) is getattr(BaseCAM, step)
        for step in ("forward", "compute_cam_per_layer", "aggregate_multi_layers")
    )


def _raw_cam_per_layer(self: Any, input_tensor: Tensor, targets: Any, eigen_smooth: bool) -> Any:
    """``BaseCAM.compute_cam_per_layer`` without ``scale_cam_image``: maps at the layer's
    resolution, ReLU applied as in the library, never rescaled."""
    store = self.activations_and_grads
    acts = [a.cpu().data.numpy() if self.detach else a for a in store.activations]
    grads = [g.cpu().data.numpy() if self.detach else g for g in store.gradients]
    per_layer = []
    for i, layer in enumerate(self.target_layers):
        act = acts[i] if i < len(acts) else None
        grad = grads[i] if i < len(grads) else None
        cam = self.get_cam_image(input_tensor, layer, targets, act, grad, eigen_smooth)
        if isinstance(cam, Tensor):
            cam = cam.detach().cpu().numpy()
        per_layer.append(np.maximum(cam, 0))
    return per_layer


def _mean_of_layers(per_layer: list[Any]) -> Any:
    return np.mean(np.stack(per_layer), axis=0)


class PytorchGradCAM(SaliencyMethod):
    """A pytorch-grad-cam CAM class as a :class:`~.base.SaliencyMethod`.

    Args:
        model: The classifier.
        cls: The pytorch-grad-cam class (``pytorch_grad_cam.ScoreCAM``, ...).
        target_layer: The layer to explain (module, dotted name or ``None``: the
            backbone's, see :func:`~.cam.find_layer`).
        init: Keyword arguments of ``cls(model, [layer], **init)``.
        call: Keyword arguments of ``cam(images, targets, **call)``.
    """

    def __init__(
        self,
        model: nn.Module,
        cls: type,
        target_layer: nn.Module | str | None = None,
        init: dict[str, Any] | None = None,
        call: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model)
        self.cls = cls
        self.name = f"pytorch-grad-cam:{cls.__name__}"
        self.target_layer = find_layer(model, target_layer)
        self.init, self.call = dict(init or {}), dict(call or {})
        self.keeps_scale = keeps_scale(cls)
        #: ``(h, w)`` of the map before upsampling in the last call (``None`` when the
        #: library upsampled it itself).
        self.map_size: tuple[int, int] | None = None
        self.warnings: list[str] = []
        if not self.keeps_scale:
            self.warnings.append(
                f"{self.name} replaces BaseCAM's flow, so its maps come back min-max "
                "normalised per image by pytorch-grad-cam; their lung metrics are not "
                "comparable with those of unnormalised maps"
            )

    @property
    def layer_name(self) -> str:
        """Dotted name of the explained layer inside the model."""
        return layer_name(self.model, self.target_layer)

    def _targets(self, target: Target, n: int) -> list[Any]:
        classes, signs = per_image(target, n)
        if classes is not None:
            return [_ClassScore(int(k)) for k in classes.tolist()]
        if signs is not None:
            return [_ClassScore(0, float(s)) for s in signs.tolist()]
        return [_RowScore(target)] * n

    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """Build the library's CAM, call it, and bring its maps to ``(B, H, W)``."""
        wanted = self._targets(fixed_target(self.model, images, targets), images.shape[0])
        grads = [(p, p.grad) for p in self.model.parameters()]
        cam = self.cls(self.model, [self.target_layer], **self.init)
        try:
            if self.keeps_scale:
                cam.compute_cam_per_layer = MethodType(_raw_cam_per_layer, cam)
                cam.aggregate_multi_layers = _mean_of_layers
            x = images.detach().clone().requires_grad_(True)
            out = cam(x, wanted, **self.call)
        finally:
            exit_hooks = getattr(cam, "__exit__", None)
            if callable(exit_hooks):
                exit_hooks(None, None, None)  # releases the library's hooks
            for p, g in grads:
                p.grad = g
        maps = torch.as_tensor(np.asarray(out), dtype=torch.float32, device=images.device)
        if maps.ndim != 3 or maps.shape[0] != images.shape[0]:
            raise ValueError(f"{self.name} returned maps of shape {tuple(maps.shape)}")
        maps, self.map_size = upsampled(maps, images)
        return maps
