"""Where does a chest X-ray classifier look? Saliency, lung-attention metrics, statistics.

Saliency methods (batched, in torch; maps ``(B, H, W)`` at the input resolution):
:class:`GradCAM`, :class:`GradCAMPlusPlus`, :class:`HiResCAM`, :class:`Gradients`,
:class:`SmoothGrad`, :class:`IntegratedGradients`; for ViTs also :class:`AttentionRollout`
and :class:`CLSAttention` (Grad-CAM reshapes a ViT's tokens to the patch grid); and any
method of pytorch-grad-cam or captum by name (:class:`PytorchGradCAM`,
:class:`CaptumAttribution`; extra ``saliency``). Metrics (pure functions, ``(B, H, W)``
saliency and bool mask -> ``(B,)``): :func:`energy_in_mask`, :func:`lift`,
:func:`area_fraction`, :func:`pointing_game`, :func:`rank_accuracy`. Faithfulness
(perturbation, per image): deletion, insertion, ROAD and the lung-restricted effect
(:func:`faithfulness_metrics`, :class:`PerturbationSettings`). The
:class:`LungAttentionScorer` ties them to lung masks, bootstrap CIs by patient, paired
comparisons, the cascading-randomisation sanity check and pictures.
"""

from cxr_curriculum.stats import ConfidenceInterval, PairedComparison

from .adapter_captum import CaptumAttribution
from .adapter_gradcam import PytorchGradCAM
from .adapters import SALIENCY_EXTRA_HINT
from .base import SaliencyMethod, eval_mode
from .cam import (
    CAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    backbone_modules,
    capture_activation,
    find_layer,
)
from .dataset import DatasetSample, load_sample, pick_indices
from .faithfulness import FAITHFULNESS_COLUMNS, FAITHFULNESS_METRICS, faithfulness_metrics
from .gradients import Gradients, IntegratedGradients, SmoothGrad
from .imputation import noisy_linear_impute
from .lung_effect import LUNG_EFFECT_COLUMNS
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
from .perturbation import PerturbationSettings
from .plots import DISPLAY_SIDE, display_scale, overlay, saliency_grid, save_grid, save_overlay
from .registry import SALIENCY_METHODS, check_method, make_saliency
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
    "FAITHFULNESS_COLUMNS",
    "FAITHFULNESS_METRICS",
    "HEAD_FUSIONS",
    "LUNG_EFFECT_COLUMNS",
    "METRIC_COLUMNS",
    "MIN_CAM_SIDE",
    "SALIENCY_EXTRA_HINT",
    "SALIENCY_METHODS",
    "AttentionReport",
    "AttentionRollout",
    "BinaryLogitTarget",
    "CLSAttention",
    "CaptumAttribution",
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
    "PerturbationSettings",
    "PytorchGradCAM",
    "SaliencyMethod",
    "SanityReport",
    "SmoothGrad",
    "Target",
    "TargetsLike",
    "area_fraction",
    "as_lung_masks",
    "attention_rollout",
    "backbone_modules",
    "capture_activation",
    "capture_attention",
    "cascading_randomization",
    "check_method",
    "display_scale",
    "empty_saliency",
    "energy_in_mask",
    "eval_mode",
    "faithfulness_metrics",
    "find_layer",
    "find_vit",
    "fuse_heads",
    "lift",
    "load_sample",
    "lung_metrics",
    "make_saliency",
    "noisy_linear_impute",
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
