"""Any captum attribution class (``method="captum:Occlusion"``) as a saliency method.

Three families, told apart by the class's constructor:

- **input attribution** (``IntegratedGradients``, ``Saliency``, ``InputXGradient``,
  ``Occlusion``, ``FeatureAblation``, ``GradientShap``, ``DeepLift``, ``DeepLiftShap``,
  ``GuidedBackprop``, ``Deconvolution``, ``LRP``, ``ShapleyValueSampling``, ``Lime``,
  ``KernelShap``, ...): built as ``cls(forward, **init)``; the attribution has the
  input's shape ``(B, 1, H, W)``;
- **layer attribution** (a ``layer`` argument: ``LayerGradCam``, ``LayerConductance``,
  ``LayerIntegratedGradients``, ``LayerGradientXActivation``, ``LayerActivation``,
  ``LayerDeepLift``, ``LayerLRP``, ``GuidedGradCam``, ...): built as
  ``cls(forward, layer, **init)`` with the scorer's target layer (as for the CAMs;
  ``target_layer="layer3"`` or ``None`` for the backbone's); the attribution has the
  layer's shape ``(B, C, h, w)`` and is upsampled bilinearly (``align_corners=False``)
  to the input after the channel sum;
- ``NoiseTunnel``: wraps the method named by ``init["attribution_method"]`` (e.g.
  ``"IntegratedGradients"``; the other ``init`` keys go to that method).

Neuron attributions (``Neuron*``) explain one unit, not a class, and are refused.

Channel reduction and sign: the attribution is **summed over channels** (the one input
channel of an X-ray; a layer's channels) and returned **signed**; the lung metrics and
the faithfulness orders count its positive part (:mod:`.metrics`). Captum's ``Saliency``
returns absolute gradients by default (``call={"abs": True}``); ``LayerGradCam`` returns
the unrectified map unless ``call={"relu_attributions": True}``.

Targets: a class index per image is passed as captum's ``target``; a single-logit model's
sign per image becomes a two-column output ``(-z, z)`` with target 0 or 1; any other
callable target is applied to the model's output (it must work on the larger batches
that captum builds). Captum's ``attribute`` computes gradients with
``torch.autograd.grad``, so parameter ``.grad`` fields are left alone.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from .adapters import fixed_target, library_class, per_image, upsampled
from .base import SaliencyMethod
from .cam import find_layer, layer_name
from .targets import Target, TargetsLike

__all__ = ["CaptumAttribution"]


class _SignedLogit(nn.Module):
    """``(B,)`` or ``(B, 1)`` logit ``z`` -> ``(B, 2)`` outputs ``(-z, z)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x).reshape(x.shape[0], 1)
        return torch.cat([-z, z], dim=1)


class _TargetScore(nn.Module):
    """The score of a callable target as a one-column output."""

    def __init__(self, model: nn.Module, target: Target) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: Tensor) -> Tensor:
        return self.target(self.model(x))[:, None]


def _first_parameter(cls: type) -> tuple[str, list[str]]:
    params = list(inspect.signature(cls).parameters)
    return (params[0] if params else ""), params


class CaptumAttribution(SaliencyMethod):
    """A captum attribution class as a :class:`~.base.SaliencyMethod`.

    Args:
        model: The classifier.
        cls: The captum class (``captum.attr.Occlusion``, ...).
        target_layer: The layer of a layer method (module, dotted name or ``None``: the
            backbone's); must be ``None`` for input methods.
        init: Keyword arguments of the constructor.
        call: Keyword arguments of ``attribute(inputs, target=..., **call)``.

    Raises:
        ValueError: A neuron method, a ``target_layer`` for an input method, or a
            ``NoiseTunnel`` without ``init["attribution_method"]``.
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
        from captum.attr import NeuronAttribution

        self.name = f"captum:{cls.__name__}"
        self.init, self.call = dict(init or {}), dict(call or {})
        self.inner: type | None = None
        first, params = _first_parameter(cls)
        if first == "attribution_method":  # NoiseTunnel(method)
            inner = self.init.pop("attribution_method", None)
            if not isinstance(inner, str):
                raise ValueError(
                    f"{self.name} wraps another method: name it with "
                    "method_kwargs={'init': {'attribution_method': 'IntegratedGradients'}}"
                )
            self.inner = library_class(f"captum:{inner}")[1]
            first, params = _first_parameter(self.inner)
        if issubclass(self.inner or cls, NeuronAttribution):
            raise ValueError(
                f"{self.name} attributes one neuron, not a class; use an input or layer method"
            )
        self.cls = cls
        self.uses_layer = "layer" in params
        self.target_layer: nn.Module | None = None
        if self.uses_layer:
            self.target_layer = find_layer(model, target_layer)
        elif target_layer is not None:
            raise ValueError(f"{self.name} works on the input and takes no target_layer")
        #: ``(h, w)`` of a layer method's map before upsampling in the last call.
        self.map_size: tuple[int, int] | None = None
        self.warnings: list[str] = []

    @property
    def layer_name(self) -> str | None:
        """Dotted name of a layer method's layer inside the model (``None`` otherwise)."""
        if self.target_layer is None:
            return None
        return layer_name(self.model, self.target_layer)

    def _build(self, forward: nn.Module) -> Any:
        method_cls = self.inner or self.cls
        args: list[Any] = [forward]
        if self.uses_layer:
            args.append(self.target_layer)
        method = method_cls(*args, **self.init)
        return self.cls(method) if self.inner is not None else method

    def _forward(self, target: Target, n: int, device: torch.device) -> tuple[nn.Module, Any]:
        classes, signs = per_image(target, n)
        if classes is not None:
            return self.model, classes.to(device)
        if signs is not None:
            return _SignedLogit(self.model), (signs > 0).long().to(device)
        return _TargetScore(self.model, target), 0

    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """Run captum's ``attribute`` and bring the result to ``(B, H, W)``."""
        n = images.shape[0]
        forward, captum_target = self._forward(
            fixed_target(self.model, images, targets), n, images.device
        )
        method = self._build(forward)
        call = dict(self.call)
        if "target" in inspect.signature(method.attribute).parameters or self.inner is not None:
            call["target"] = captum_target
        inputs = images.detach().clone().requires_grad_(True)  # as captum's gradients want
        out = method.attribute(inputs, **call)
        attr = out[0] if isinstance(out, tuple) else out
        if not isinstance(attr, Tensor) or attr.ndim != 4 or attr.shape[0] != n:
            shape = tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__
            raise ValueError(
                f"{self.name} returned {shape}; need (B, C, h, w) attributions "
                "(a layer with a token output needs a reshaped layer)"
            )
        maps = attr.detach().float().sum(1)
        maps, self.map_size = upsampled(maps, images)
        return maps
