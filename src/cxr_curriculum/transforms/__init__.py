"""X-ray-safe view augmentation (per sample and batched) and pretext transforms.

Images are float tensors ``(1, H, W)`` in ``[0, 1]``, masks ``uint8`` ``(1, H, W)``
(0 background, 1 lung, 255 ignore); randomness comes from ``torch.Generator`` s passed
as ``generator=``.
"""

from .augment import XRayAugment
from .batched import BatchedXRayAugment, crop_rotate_theta
from .config import AugmentConfig
from .jigsaw import JigsawPretext, maximal_hamming_permutations
from .params import AugmentParams, BatchAugmentParams, sample_batch_params
from .relative_patch import RELATIVE_POSITIONS, RelativePatchPretext
from .resize import Resize
from .rotation import RotationPretext
from .views import MultiView

__all__ = [
    "RELATIVE_POSITIONS",
    "AugmentConfig",
    "AugmentParams",
    "BatchAugmentParams",
    "BatchedXRayAugment",
    "JigsawPretext",
    "MultiView",
    "RelativePatchPretext",
    "Resize",
    "RotationPretext",
    "XRayAugment",
    "crop_rotate_theta",
    "maximal_hamming_permutations",
    "sample_batch_params",
]
