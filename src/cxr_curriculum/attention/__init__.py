"""Where does a chest X-ray classifier look? Saliency, lung-attention metrics, statistics.

Saliency methods (batched, in torch; maps ``(B, H, W)`` at the input resolution):
:class:`GradCAM`, :class:`GradCAMPlusPlus`, :class:`HiResCAM`, :class:`Gradients`,
:class:`SmoothGrad`, :class:`IntegratedGradients`. Metrics (pure functions,
``(B, H, W)`` saliency and bool mask -> ``(B,)``): :func:`energy_in_mask`, :func:`lift`,
:func:`area_fraction`, :func:`pointing_game`, :func:`rank_accuracy`. The
:class:`LungAttentionScorer` ties them to lung masks, bootstrap CIs by patient, paired
comparisons, the cascading-randomisation sanity check and pictures.
"""

from .base import SaliencyMethod, eval_mode
from .cam import CAM, GradCAM, GradCAMPlusPlus, HiResCAM, capture_activation, find_layer
from .gradients import Gradients, IntegratedGradients, SmoothGrad
from .masks import as_lung_masks, split_midline
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
from .plots import overlay, saliency_grid, save_grid, save_overlay
from .registry import SALIENCY_METHODS, make_saliency
from .report import AttentionReport, SanityReport
from .sanity import cascading_randomization, parameter_layers, spearman
from .scorer import LungAttentionScorer
from .stats import BootstrapCI, PairedComparison, bootstrap_ci, paired_bootstrap
from .targets import (
    BinaryLogitTarget,
    ClassTarget,
    Target,
    TargetsLike,
    predicted_target,
    resolve_target,
)

__all__ = [
    "CAM",
    "METRIC_COLUMNS",
    "SALIENCY_METHODS",
    "AttentionReport",
    "BinaryLogitTarget",
    "BootstrapCI",
    "ClassTarget",
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
    "bootstrap_ci",
    "capture_activation",
    "cascading_randomization",
    "empty_saliency",
    "energy_in_mask",
    "eval_mode",
    "find_layer",
    "lift",
    "lung_metrics",
    "make_saliency",
    "overlay",
    "paired_bootstrap",
    "parameter_layers",
    "pointing_game",
    "predicted_target",
    "rank_accuracy",
    "resize_saliency",
    "resolve_target",
    "saliency_grid",
    "save_grid",
    "save_overlay",
    "spearman",
    "split_midline",
]
