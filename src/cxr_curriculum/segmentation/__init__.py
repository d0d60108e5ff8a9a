"""Lung segmentation: the bundled ``LungSegmenter``, its weights, post-processing,
a classical baseline and overlap metrics.

Masks are ``bool`` ``(B, 2, H, W)``: channel 0 the patient's right lung (image left),
channel 1 the left lung. See ``docs/lung_model_card.md``.
"""

from cxr_curriculum.segmentation.classical import classical_lung_masks
from cxr_curriculum.segmentation.metrics import dice_score, iou_score
from cxr_curriculum.segmentation.model import LungNet, ModelSpec
from cxr_curriculum.segmentation.postprocess import MaskQuality, assess_quality, clean_masks
from cxr_curriculum.segmentation.segmenter import LungPrediction, LungSegmenter
from cxr_curriculum.segmentation.targets import split_lungs
from cxr_curriculum.segmentation.weights import (
    LungSegmenterWeights,
    LungWeights,
    WeightsChecksumError,
    load_state_dict,
)

__all__ = [
    "LungNet",
    "LungPrediction",
    "LungSegmenter",
    "LungSegmenterWeights",
    "LungWeights",
    "MaskQuality",
    "ModelSpec",
    "WeightsChecksumError",
    "assess_quality",
    "classical_lung_masks",
    "clean_masks",
    "dice_score",
    "iou_score",
    "load_state_dict",
    "split_lungs",
]
