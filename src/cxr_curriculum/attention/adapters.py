"""Saliency methods of pytorch-grad-cam and captum, by name, through the scorer.

``LungAttentionScorer(method="pytorch-grad-cam:ScoreCAM")`` or ``method="captum:Occlusion"``
names any method class of those libraries; the adapter (:mod:`.adapter_gradcam`,
:mod:`.adapter_captum`) is a :class:`~.base.SaliencyMethod`, so the scorer's batching,
masks, metrics, intervals, faithfulness, sanity check and pictures apply unchanged.

The libraries are the optional extra ``saliency`` (``pip install "cxr_curriculum[saliency]"``)
and are imported only when a method of theirs is named; without them an ``ImportError``
names the extra.

Settings pass through unchanged, in two documented groups of ``method_kwargs``:

- ``"init"``: keyword arguments of the method class's constructor (pytorch-grad-cam:
  ``reshape_transform`` for token models, ``batch_size`` of AblationCAM, ...; captum:
  ``multiply_by_inputs``, ...);
- ``"call"``: keyword arguments of the call that computes the maps (pytorch-grad-cam's
  ``cam(input_tensor, targets, **call)``: ``aug_smooth``, ``eigen_smooth``; captum's
  ``attribute(inputs, target=..., **call)``: ``n_steps``, ``baselines``,
  ``sliding_window_shapes``, ``strides``, ``nt_type``, ...).

Any other key is refused. The model, the layer and the targets are the scorer's.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from .metrics import resize_saliency
from .targets import BinaryLogitTarget, ClassTarget, Target, TargetsLike, predicted_target
from .targets import resolve_target as _resolve

__all__ = [
    "LIBRARIES",
    "SALIENCY_EXTRA_HINT",
    "fixed_target",
    "library_class",
    "parse_method",
    "split_settings",
    "upsampled",
]

#: Method-name prefix -> the module whose classes it names.
LIBRARIES = {"pytorch-grad-cam": "pytorch_grad_cam", "captum": "captum.attr"}
#: How to install the adapted libraries.
SALIENCY_EXTRA_HINT = 'pip install "cxr_curriculum[saliency]"'


def parse_method(method: str) -> tuple[str, str] | None:
    """``("captum", "Occlusion")`` for ``"captum:Occlusion"``; ``None`` for a built-in name.

    Raises:
        ValueError: An unknown library prefix or an empty class name.
    """
    if not isinstance(method, str) or ":" not in method:
        return None
    library, _, name = method.partition(":")
    if library not in LIBRARIES or not name:
        raise ValueError(
            f"unknown saliency method {method!r}; adapted methods are named "
            f"'LIBRARY:Class' with LIBRARY one of {sorted(LIBRARIES)} "
            "(e.g. 'pytorch-grad-cam:ScoreCAM', 'captum:Occlusion')"
        )
    return library, name


def _module(library: str, method: str) -> ModuleType:
    try:
        return importlib.import_module(LIBRARIES[library])
    except ImportError as err:
        raise ImportError(
            f"saliency method {method!r} needs {library}, which is not installed; it comes "
            f"with the optional 'saliency' extra: {SALIENCY_EXTRA_HINT}"
        ) from err


def library_class(method: str) -> tuple[str, type]:
    """The library and class that ``method`` (``"LIBRARY:Class"``) names.

    Raises:
        ImportError: The library is missing (the message names the ``saliency`` extra).
        ValueError: Not an adapted name, or the library has no such method class.
    """
    parsed = parse_method(method)
    if parsed is None:
        raise ValueError(f"{method!r} is not an adapted method name ('LIBRARY:Class')")
    library, name = parsed
    module = _module(library, method)
    cls = getattr(module, name, None)
    if not isinstance(cls, type) or name.startswith("_"):
        known = sorted(n for n in dir(module) if isinstance(getattr(module, n), type))
        raise ValueError(f"{library} has no method class {name!r}; it has {known}")
    return library, cls


def split_settings(method: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(init, call)`` settings of an adapted method from ``method_kwargs``.

    Raises:
        ValueError: A key other than ``"init"`` and ``"call"``, or a group that is not
            a dict.
    """
    extra = sorted(set(kwargs) - {"init", "call"})
    if extra:
        raise ValueError(
            f"settings of {method!r} go in method_kwargs={{'init': {{...}}, 'call': {{...}}}} "
            "('init': the class's constructor, 'call': the call that computes the maps); "
            f"got {extra}"
        )
    groups = []
    for key in ("init", "call"):
        value = kwargs.get(key) or {}
        if not isinstance(value, dict):
            raise ValueError(f"method_kwargs[{key!r}] must be a dict, got {type(value).__name__}")
        groups.append(dict(value))
    return groups[0], groups[1]


def fixed_target(model: nn.Module, images: Tensor, targets: TargetsLike) -> Target:
    """The target for this batch: the predicted class (one no-grad forward) for ``None``,
    else ``targets`` as a :data:`~.targets.Target`.

    A :class:`~.targets.ClassTarget` looked up in class names (its ``n_outputs`` set) is
    checked against the model's outputs (one no-grad forward), as the built-in methods
    check it: the adapters read only its indices, so a class-names list that does not
    match the model would otherwise explain whichever output has that index.

    Raises:
        ValueError: The model's output count differs from the class names' count.
    """
    if targets is None:
        with torch.no_grad():
            return predicted_target(model(images))
    target = _resolve(targets, images)  # outputs are only read for None
    if isinstance(target, ClassTarget) and target.n_outputs is not None:
        with torch.no_grad():
            target(model(images))  # refuses a model with another number of outputs
    return target


def per_image(target: Target, n: int) -> tuple[Tensor | None, Tensor | None]:
    """``(classes, signs)``: one class index or one sign per image, or ``(None, None)``
    for a callable target (which must then work on any batch)."""
    if isinstance(target, ClassTarget):
        return (target.k.expand(n) if target.k.ndim == 0 else target.k), None
    if isinstance(target, BinaryLogitTarget):
        return None, (target.sign.expand(n) if target.sign.ndim == 0 else target.sign)
    return None, None


def upsampled(maps: Tensor, images: Tensor) -> tuple[Tensor, tuple[int, int] | None]:
    """An adapted method's ``(B, h, w)`` maps at the images' ``(H, W)``, and ``(h, w)``.

    Resized bilinearly (``align_corners=False``, as the built-in CAMs); the size before
    is ``None`` when the maps already had the images' size (the library upsampled them).
    """
    size = (int(images.shape[-2]), int(images.shape[-1]))
    if tuple(maps.shape[-2:]) == size:
        return maps, None
    return resize_saliency(maps, size), (int(maps.shape[-2]), int(maps.shape[-1]))
