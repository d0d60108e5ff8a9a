"""Any convolutional timm model, or a timm Vision Transformer, as a feature extractor.

Named ``"timm:<model name>"``. timm is an optional dependency, imported only when a
``timm:`` backbone is built. The model is created with ``num_classes=0`` and
``in_chans`` inputs. For a CNN the feature map is its own ``forward_features``; timm's
pooling head (which for some models adds a pre-logits convolution or norm) is not used:
:class:`Backbone` always average-pools. A ViT (``vit_*``, ``deit_*``) is built with
``dynamic_img_size=True`` and wrapped in :class:`~._vit.TimmTokens` (see ``_vit.py``);
other token models (Swin, EVA, ...) are refused.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from ._parts import Parts
from ._vit import TimmTokens, is_vit_arch, resample_pos_embed_state

__all__ = ["TIMM_PREFIX", "build_timm", "timm_imagenet_state_dict", "timm_names"]

TIMM_PREFIX = "timm:"


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is installed in the dev env
        raise ImportError(
            "timm backbones ('timm:<name>') need the timm package: pip install timm"
        ) from err
    return timm


class TimmFeatures(nn.Module):
    """``forward_features`` of a timm model followed by an identity ``out`` layer.

    ``out`` returns the last feature map unchanged; it is the CAM target layer, whose
    output is by construction exactly what :meth:`Backbone.forward_features` returns.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.out = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` -> last feature map ``(B, C, h, w)``."""
        return self.out(self.model.forward_features(x))  # type: ignore[operator]


def timm_names() -> list[str]:
    """All timm architecture names, prefixed with ``"timm:"`` (needs timm)."""
    return [TIMM_PREFIX + n for n in _import_timm().list_models()]


def _create(arch: str, in_chans: int, **kwargs: Any) -> nn.Module:
    timm = _import_timm()
    if not timm.is_model(arch):
        raise ValueError(
            f"unknown timm model {arch!r}; see timm.list_models() or Backbone.available(timm=True)"
        )
    if is_vit_arch(timm, arch):
        kwargs["dynamic_img_size"] = True
    model: nn.Module = timm.create_model(arch, in_chans=in_chans, num_classes=0, **kwargs)
    if hasattr(model, "patch_embed") and not is_vit_arch(timm, arch):
        raise ValueError(
            f"timm model {arch!r} is a token (transformer) model that is not a plain Vision "
            "Transformer; Backbone takes convolutional timm models and timm's ViTs "
            "('timm:vit_tiny_patch16_224', 'timm:vit_small_patch16_224', "
            "'timm:deit_small_patch16_224', ...)"
        )
    return model


def _grey_norm(cfg: dict[str, Any]) -> tuple[float, float] | None:
    """The one-channel ``(mean, std)`` of a timm pretrained config: its RGB values averaged."""
    mean, std = cfg.get("mean"), cfg.get("std")
    if not mean or not std:
        return None
    return round(sum(mean) / len(mean), 6), round(sum(std) / len(std), 6)


def build_timm(arch: str, in_chans: int) -> Parts:
    """Build the timm model ``arch`` (random weights) with ``in_chans`` inputs.

    Args:
        arch: timm architecture name without the ``"timm:"`` prefix, e.g. ``"resnet10t"``
            or ``"vit_small_patch16_224"``.
        in_chans: Input channels of the first convolution (a ViT's patch embedding).

    Returns:
        The :class:`Parts` of the model; ``body`` is a :class:`TimmFeatures` for a CNN and
        a :class:`~._vit.TimmTokens` for a ViT, whose CAM target layer is the last block's
        ``norm1`` (pytorch-grad-cam's choice for ViTs). ``pretrained_norm`` is the
        grey-level mean and std of the model's default pretrained config (e.g. 0.5 and
        0.5 for the augreg ViTs, ImageNet's for DeiT and DINO), read without downloading.
    """
    model = _create(arch, in_chans, pretrained=False)
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    first_conv = cfg.get("first_conv") or ""
    if isinstance(first_conv, (list, tuple)):
        first_conv = first_conv[0]
    classifier = cfg.get("classifier") or ()
    heads = tuple(f"{c}." for c in ([classifier] if isinstance(classifier, str) else classifier))
    norm = _grey_norm(cfg)
    if is_vit_arch(_import_timm(), arch):
        tokens = TimmTokens(model)
        return Parts(
            body=tokens,
            target_layer=tokens.blocks[-1].get_submodule("norm1"),
            num_features=int(model.num_features),  # type: ignore[arg-type]
            first_conv="model.patch_embed.proj.weight",
            source="timm",
            source_prefix="model.",
            head_prefixes=heads,
            adapt_state=lambda state: resample_pos_embed_state(state, tokens),
            pretrained_norm=norm,
        )
    body = TimmFeatures(model)
    return Parts(
        body=body,
        target_layer=body.out,
        num_features=int(model.num_features),  # type: ignore[arg-type]
        first_conv=f"model.{first_conv}.weight" if first_conv else "",
        source="timm",
        source_prefix="model.",
        head_prefixes=heads,
        pretrained_norm=norm,
    )


def timm_imagenet_state_dict(
    arch: str, in_chans: int, file: str | os.PathLike[str] | None = None
) -> dict[str, Tensor]:
    """timm's default pretrained weights for ``arch``, first conv adapted by timm.

    timm fetches them from the Hugging Face Hub (or its cache), or reads ``file`` when
    given (no network). Connectivity is checked by the caller.

    Returns:
        The state dict of the pretrained model in timm's own key form (no classifier).
    """
    overlay = {"file": os.fspath(file)} if file is not None else None
    model = _create(arch, in_chans, pretrained=True, pretrained_cfg_overlay=overlay)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
