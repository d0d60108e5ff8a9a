"""Self-supervised losses as plain ``nn.Module``s with ``forward(z0, z1)`` (MAE's:
``forward(pred, target)`` on patches).

Sub-terms are pure functions. Every loss with ``gather_distributed=True`` gathers
negatives or batch statistics across processes with gradients and is a no-op without an
initialised process group.
"""

from cxr_curriculum.losses.barlow_twins import BarlowTwinsLoss, cross_correlation, off_diagonal
from cxr_curriculum.losses.dino import DINOLoss, dino_cross_entropy
from cxr_curriculum.losses.mae import MAELoss, normalize_pixels, patchify
from cxr_curriculum.losses.memory_queue import MemoryQueue
from cxr_curriculum.losses.negative_cosine import (
    NegativeCosineSimilarity,
    byol_regression,
    negative_cosine_similarity,
)
from cxr_curriculum.losses.ntxent import NTXentLoss, info_nce_with_negatives, nt_xent
from cxr_curriculum.losses.vicreg import (
    VICRegLoss,
    covariance_loss,
    invariance_loss,
    variance_loss,
)

__all__ = [
    "BarlowTwinsLoss",
    "DINOLoss",
    "MAELoss",
    "MemoryQueue",
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "VICRegLoss",
    "byol_regression",
    "covariance_loss",
    "cross_correlation",
    "dino_cross_entropy",
    "info_nce_with_negatives",
    "invariance_loss",
    "negative_cosine_similarity",
    "normalize_pixels",
    "nt_xent",
    "off_diagonal",
    "patchify",
    "variance_loss",
]
