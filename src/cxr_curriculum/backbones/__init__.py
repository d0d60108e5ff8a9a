"""One-channel CNN and ViT backbones (torchvision / timm) with a uniform contract and weight I/O.

See ``docs/backbones.md``. The main object is :class:`Backbone`.
"""

from .._artefacts import ArtefactIntegrityError, ArtefactWriteError
from ._adapt import adapt_conv_weight
from ._check import check_backbone
from ._io import read_sidecar, verify_backbone_file
from ._weights import WeightsNotAvailableError, load_checkpoint
from .backbone import IMAGENET_GRAY_NORM, POOLS, Backbone

__all__ = [
    "IMAGENET_GRAY_NORM",
    "POOLS",
    "ArtefactIntegrityError",
    "ArtefactWriteError",
    "Backbone",
    "WeightsNotAvailableError",
    "adapt_conv_weight",
    "check_backbone",
    "load_checkpoint",
    "read_sidecar",
    "verify_backbone_file",
]
