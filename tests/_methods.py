"""Shared pieces of the SSL-method tests: small method settings, real X-rays, a batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import default_collate

from cxr_curriculum.data import read_image
from cxr_curriculum.methods import (
    BYOL,
    DINO,
    MAE,
    BarlowTwins,
    Jigsaw,
    MoCoV2,
    RelativePatchLocation,
    Rotation,
    SimCLR,
    SimSiam,
    SSLMethod,
    VICReg,
)
from cxr_curriculum.transforms import Resize

#: Small heads so that a CPU step takes well under a second (ResNet-18 or ViT-Tiny).
SMALL: dict[type[SSLMethod], dict[str, Any]] = {
    Rotation: {},
    Jigsaw: {"n_permutations": 10, "tile_dim": 32, "hidden_dim": 64},
    RelativePatchLocation: {"hidden_dim": 64},
    SimCLR: {"hidden_dim": 64, "output_dim": 32},
    MoCoV2: {"queue_size": 64, "hidden_dim": 64, "output_dim": 32},
    BYOL: {"projection_hidden_dim": 64, "projection_dim": 32, "prediction_hidden_dim": 64},
    SimSiam: {"projection_dim": 64, "prediction_hidden_dim": 16},
    BarlowTwins: {"projection_dim": 64},
    VICReg: {"projection_dim": 64},
    DINO: {"output_dim": 64, "hidden_dim": 64, "bottleneck_dim": 16, "n_local_crops": 2},
    MAE: {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
}


def kermany_xrays(data_root: Path, per_class: int) -> list[torch.Tensor]:
    """``per_class`` real Kermany training X-rays of each class (normal first), at 80 px."""
    root = data_root / "kermany-pneumonia" / "train"
    files = (
        sorted((root / "NORMAL").glob("*.jpeg"))[:per_class]
        + sorted((root / "PNEUMONIA").glob("*.jpeg"))[:per_class]
    )
    if len(files) < 2 * per_class:
        pytest.skip(f"Kermany images not found under {root}")
    resize = Resize(80)
    return [resize(read_image(f)) for f in files]


def view_batch(method: SSLMethod, images: list[torch.Tensor], size: int, seed: int = 0) -> Any:
    """A collated batch of ``method``'s per-sample transform of ``images`` (seeded)."""
    tf = method.make_transform(size)
    g = torch.Generator().manual_seed(seed)
    return default_collate([tf(img, generator=g) for img in images])
