"""The pieces an architecture builder hands to :class:`~cxr_curriculum.backbones.Backbone`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

__all__ = ["Parts", "new_first_conv"]


def _no_fix(key: str) -> str:
    return key


def _no_adapt(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return state


@dataclass(frozen=True)
class Parts:
    """A feature extractor cut out of a library model, with what is needed to load weights.

    Attributes:
        body: Module mapping ``(B, in_chans, H, W)`` to the last feature map ``(B, C, h, w)``.
        target_layer: Sub-module of ``body`` whose forward output *is* the last feature map
            (the layer that CAM methods explain).
        num_features: ``C``, the channels of the last feature map.
        first_conv: Key of the first convolution's weight in ``body.state_dict()``.
        source_prefix: Prefix that turns a key of the library's own checkpoint (a
            torchvision or timm state dict) into a key of ``body``.
        head_prefixes: Key prefixes of the library checkpoint's classifier, dropped on load.
        fix_key: Renames legacy keys of the library's published checkpoints.
        adapt_state: Adapts a whole state dict in ``body`` keys before the strict load
            (a ViT resamples positional embeddings of another grid).
        source: ``"torchvision"`` or ``"timm"``.
        pretrained_norm: One-channel ``(mean, std)`` the library's default pretrained
            weights expect (timm's pretrained config, RGB values averaged), or ``None``
            when the library does not say (torchvision: ImageNet statistics).
    """

    body: nn.Module
    target_layer: nn.Module
    num_features: int
    first_conv: str
    source: str
    source_prefix: str = ""
    head_prefixes: tuple[str, ...] = ()
    fix_key: Callable[[str], str] = field(default=_no_fix)
    adapt_state: Callable[[dict[str, Tensor]], dict[str, Tensor]] = field(default=_no_adapt)
    pretrained_norm: tuple[float, float] | None = None


def new_first_conv(conv: nn.Conv2d, in_chans: int) -> nn.Conv2d:
    """A freshly initialised copy of ``conv`` that takes ``in_chans`` input channels.

    The weight is drawn with Kaiming-normal (``fan_out``, ReLU gain), the initialisation
    torchvision uses for the stems of ResNet and EfficientNet.

    Args:
        conv: The library's first convolution (RGB).
        in_chans: Input channels of the new convolution.

    Returns:
        A new ``nn.Conv2d`` with the same kernel, stride, padding, dilation, groups and bias
        setting as ``conv``.
    """
    if conv.groups != 1:
        raise ValueError(f"cannot adapt a grouped first convolution (groups={conv.groups})")
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new
