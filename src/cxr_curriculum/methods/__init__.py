"""Self-supervised methods: the :class:`SSLMethod` base, heads, momentum utilities and
one file per method. Every method is constructible with no arguments (paper defaults).

Pretext tasks: :class:`Rotation`, :class:`Jigsaw`, :class:`RelativePatchLocation`.
Joint-embedding: :class:`SimCLR`, :class:`MoCoV2`, :class:`BYOL`, :class:`SimSiam`,
:class:`BarlowTwins`, :class:`VICReg`, :class:`DINO` (multi-crop). Masked image
modelling (ViT backbones only): :class:`MAE`. See ``docs/methods.md``.
"""

from cxr_curriculum.methods.barlow_twins import BarlowTwins
from cxr_curriculum.methods.base import OptimizerHint, SSLMethod
from cxr_curriculum.methods.byol import BYOL
from cxr_curriculum.methods.dino import DINO
from cxr_curriculum.methods.heads import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    ClassificationHead,
    DINOProjectionHead,
    JigsawHead,
    MoCoV2ProjectionHead,
    ProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
    VICRegProjectionHead,
)
from cxr_curriculum.methods.jigsaw import Jigsaw
from cxr_curriculum.methods.mae import MAE
from cxr_curriculum.methods.mae_decoder import MAEDecoder, sincos_2d
from cxr_curriculum.methods.masking import (
    gather_tokens,
    mask_from_noise,
    random_patch_mask,
    scatter_tokens,
)
from cxr_curriculum.methods.moco import MoCoV2
from cxr_curriculum.methods.momentum import cosine_schedule, make_momentum_copy, update_momentum
from cxr_curriculum.methods.relative_patch import RelativePatchLocation
from cxr_curriculum.methods.rotation import Rotation
from cxr_curriculum.methods.simclr import SimCLR
from cxr_curriculum.methods.simsiam import SimSiam
from cxr_curriculum.methods.teacher import TeacherStudentMethod
from cxr_curriculum.methods.two_view import TwoViewMethod
from cxr_curriculum.methods.vicreg import VICReg

#: Every method by its ``name`` (for configs and logs).
METHODS: dict[str, type[SSLMethod]] = {
    m.name: m
    for m in (
        Rotation,
        Jigsaw,
        RelativePatchLocation,
        SimCLR,
        MoCoV2,
        BYOL,
        SimSiam,
        BarlowTwins,
        VICReg,
        DINO,
        MAE,
    )
}

__all__ = [
    "BYOL",
    "DINO",
    "MAE",
    "METHODS",
    "BYOLPredictionHead",
    "BYOLProjectionHead",
    "BarlowTwins",
    "BarlowTwinsProjectionHead",
    "ClassificationHead",
    "DINOProjectionHead",
    "Jigsaw",
    "JigsawHead",
    "MAEDecoder",
    "MoCoV2",
    "MoCoV2ProjectionHead",
    "OptimizerHint",
    "ProjectionHead",
    "RelativePatchLocation",
    "Rotation",
    "SSLMethod",
    "SimCLR",
    "SimCLRProjectionHead",
    "SimSiam",
    "SimSiamPredictionHead",
    "SimSiamProjectionHead",
    "TeacherStudentMethod",
    "TwoViewMethod",
    "VICReg",
    "VICRegProjectionHead",
    "cosine_schedule",
    "gather_tokens",
    "make_momentum_copy",
    "mask_from_noise",
    "random_patch_mask",
    "scatter_tokens",
    "sincos_2d",
    "update_momentum",
]
