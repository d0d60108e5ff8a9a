"""Where does a chest X-ray classifier look? Saliency, lung-attention metrics, statistics.

Saliency methods (batched, in torch; maps ``(B, H, W)`` at the input resolution):
:class:`GradCAM`, :class:`GradCAMPlusPlus`, :class:`HiResCAM`, :class:`Gradients`,
:class:`SmoothGrad`, :class:`IntegratedGradients`; for ViTs also :class:`AttentionRollout` and
:class:`CLSAttention` (Grad-CAM reshapes a ViT's tokens to the patch grid). Metrics (pure functions,
``(B, H, W)`` saliency and bool mask -> ``(B,)``): :func:`energy_in_mask`, :func:`lift`,
:func:`area_fraction`, :func:`pointing_game`, :func:`rank_accuracy`. The
:class:`LungAttentionScorer` ties them to lung masks, bootstrap CIs by patient, paired
comparisons, the cascading-randomisation sanity check and pictures.
"""

from cxr_curriculum.stats import ConfidenceInterval, PairedComparison

from .base import SaliencyMethod, eval_mode
from .cam import CAM, GradCAM, GradCAMPlusPlus, HiResCAM, capture_activation, find_layer
from .dataset import DatasetSample, load_sample, pick_indices
from .gradients import Gradients, IntegratedGradients, SmoothGrad
from .masks import as_lung_masks, predict_lung_masks, split_midline
from .metrics import (
    METRIC_COLUMNS,
    area_fraction,
    empty_saliency,
    energy_in_mask,
    lift,
    lung_metrics,
    pointing_game,
    rank_accuracy,
    resize_saliency,
)
from .plots import DISPLAY_SIDE, display_scale, overlay, saliency_grid, save_grid, save_overlay
from .registry import SALIENCY_METHODS, make_saliency
from .report import AttentionReport, SanityReport
from .resolution import MIN_CAM_SIDE, CoarseSaliencyWarning, suggest_layer
from .rollout import (
    HEAD_FUSIONS,
    AttentionRollout,
    CLSAttention,
    attention_rollout,
    capture_attention,
    fuse_heads,
)
from .sanity import cascading_randomization, parameter_layers, spearman
from .scorer import LungAttentionScorer
from .targets import (
    BinaryLogitTarget,
    ClassTarget,
    Target,
    TargetsLike,
    predicted_target,
    resolve_target,
    targets_by_name,
)
from .tokens import find_vit, token_reshape

__all__ = [
    "CAM",
    "DISPLAY_SIDE",
    "HEAD_FUSIONS",
    "METRIC_COLUMNS",
    "MIN_CAM_SIDE",
    "SALIENCY_METHODS",
    "AttentionReport",
    "AttentionRollout",
    "BinaryLogitTarget",
    "CLSAttention",
    "ClassTarget",
    "CoarseSaliencyWarning",
    "ConfidenceInterval",
    "DatasetSample",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradients",
    "HiResCAM",
    "IntegratedGradients",
    "LungAttentionScorer",
    "PairedComparison",
    "SaliencyMethod",
    "SanityReport",
    "SmoothGrad",
    "Target",
    "TargetsLike",
    "area_fraction",
    "as_lung_masks",
    "attention_rollout",
    "capture_activation",
    "capture_attention",
    "cascading_randomization",
    "display_scale",
    "empty_saliency",
    "energy_in_mask",
    "eval_mode",
    "find_layer",
    "find_vit",
    "fuse_heads",
    "lift",
    "load_sample",
    "lung_metrics",
    "make_saliency",
    "overlay",
    "parameter_layers",
    "pick_indices",
    "pointing_game",
    "predict_lung_masks",
    "predicted_target",
    "rank_accuracy",
    "resize_saliency",
    "resolve_target",
    "saliency_grid",
    "save_grid",
    "save_overlay",
    "spearman",
    "split_midline",
    "suggest_layer",
    "targets_by_name",
    "token_reshape",
]
