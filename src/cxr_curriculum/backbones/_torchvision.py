"""torchvision architectures cut into a feature extractor (``body``) and a CAM target layer.

The torchvision model is wrapped, never subclassed: its own sub-modules are re-used
under their own names, so that a key of ``body.state_dict()`` equals the key of the
torchvision checkpoint (``conv1.weight``, ``features.conv0.weight``, ...). Only the
first convolution is replaced (``in_chans`` inputs) and the classifier is dropped.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from torch import nn
from torchvision import models as tvm

from ._parts import Parts, new_first_conv

__all__ = ["TORCHVISION_NAMES", "build_torchvision", "imagenet_weights_enum"]

_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_DENSENETS = ("densenet121", "densenet161", "densenet169", "densenet201")
_EFFICIENTNETS = (
    *(f"efficientnet_b{i}" for i in range(8)),
    "efficientnet_v2_s",
    "efficientnet_v2_m",
    "efficientnet_v2_l",
)
TORCHVISION_NAMES: tuple[str, ...] = _RESNETS + _DENSENETS + _EFFICIENTNETS

# torchvision's published DenseNet checkpoints still use the keys 'norm.1', 'conv.2', ...
# of an older _DenseLayer; torchvision renames them on load (models/densenet.py).
_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _fix_densenet_key(key: str) -> str:
    match = _DENSENET_LEGACY.match(key)
    return match.group(1) + match.group(2) if match else key


def imagenet_weights_enum(name: str) -> tvm.WeightsEnum:
    """torchvision's default ImageNet weights entry for ``name`` (e.g. ``ResNet18_Weights``)."""
    return tvm.get_model_weights(name).DEFAULT


def _resnet(model: tvm.ResNet, in_chans: int) -> Parts:
    model.conv1 = new_first_conv(model.conv1, in_chans)
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    body = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in names))
    return Parts(
        body=body,
        target_layer=model.layer4,
        num_features=model.fc.in_features,
        first_conv="conv1.weight",
        source="torchvision",
        head_prefixes=("fc.",),
    )


def _densenet(model: tvm.DenseNet, in_chans: int) -> Parts:
    model.features.conv0 = new_first_conv(model.features.conv0, in_chans)
    # torchvision applies F.relu after `features`; a ReLU module makes that map hookable.
    relu = nn.ReLU(inplace=False)
    body = nn.Sequential(OrderedDict(features=model.features, relu=relu))
    return Parts(
        body=body,
        target_layer=relu,
        num_features=model.classifier.in_features,
        first_conv="features.conv0.weight",
        source="torchvision",
        head_prefixes=("classifier.",),
        fix_key=_fix_densenet_key,
    )


def _efficientnet(model: tvm.EfficientNet, in_chans: int) -> Parts:
    stem = model.features[0]
    stem[0] = new_first_conv(stem[0], in_chans)
    body = nn.Sequential(OrderedDict(features=model.features))
    return Parts(
        body=body,
        target_layer=model.features[-1],
        num_features=model.classifier[-1].in_features,
        first_conv="features.0.0.weight",
        source="torchvision",
        head_prefixes=("classifier.",),
    )


def build_torchvision(name: str, in_chans: int) -> Parts:
    """Build the torchvision architecture ``name`` (random weights) with ``in_chans`` inputs.

    Args:
        name: One of :data:`TORCHVISION_NAMES`.
        in_chans: Input channels of the first convolution.

    Returns:
        The :class:`Parts` of the model.
    """
    if name not in TORCHVISION_NAMES:
        raise ValueError(f"unknown torchvision backbone {name!r}; available: {TORCHVISION_NAMES}")
    model = tvm.get_model(name, weights=None)
    if name in _RESNETS:
        return _resnet(model, in_chans)
    if name in _DENSENETS:
        return _densenet(model, in_chans)
    return _efficientnet(model, in_chans)
