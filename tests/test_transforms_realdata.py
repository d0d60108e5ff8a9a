"""Transforms on real chest X-rays (Kermany pediatric, Shenzhen adult with lung masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cxr_curriculum.transforms import (
    BatchAugmentParams,
    BatchedXRayAugment,
    JigsawPretext,
    Resize,
    XRayAugment,
)

pytestmark = pytest.mark.realdata

SHENZHEN = ("CHNCXR_0601_1.png", "CHNCXR_0602_1.png", "CHNCXR_0603_1.png", "CHNCXR_0604_1.png")


def _gray(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).unsqueeze(0)


def _kermany(root: Path, n: int) -> list[torch.Tensor]:
    files = sorted((root / "kermany-pneumonia" / "train" / "NORMAL").glob("*.jpeg"))[:n]
    return [_gray(f) for f in files]


def _shenzhen(root: Path, name: str, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and lung mask (1 = lung), resized to ``size`` to keep the test small."""
    folder = root / "shenzhen-montgomery-tb"
    image = _gray(folder / "images" / name)
    mask = torch.from_numpy(np.asarray(Image.open(folder / "masks" / name).convert("L")) > 127)
    return Resize(size)(image, mask.to(torch.uint8).unsqueeze(0))


def _lung_contrast(view: torch.Tensor, lung: torch.Tensor, ring: int = 4) -> float:
    """Mean intensity of a ``ring``-pixel band around the lungs minus inside them.

    Lungs are dark next to ribs, mediastinum and diaphragm; a band (not the whole
    outside, which holds the dark air around the patient) makes this a local contrast.
    """
    grown = F.max_pool2d(lung[None, None].float(), 2 * ring + 1, 1, ring)[0, 0] > 0
    return float(view[grown & ~lung].mean() - view[lung].mean())


@pytest.mark.parametrize("name", SHENZHEN)
def test_augmented_mask_still_covers_dark_lungs(data_root: Path, name: str) -> None:
    image, mask = _shenzhen(data_root, name)
    aug = XRayAugment(64, rotation=15.0, noise_std=0.02, blur_p=0.5)
    shifts = ((0, 0), (4, 0), (-4, 0), (0, 4), (0, -4))
    contrast = torch.zeros(3, len(shifts))
    for seed in range(3):
        view, mview = aug(image, mask, generator=torch.Generator().manual_seed(seed))
        lung = mview[0] == 1
        assert 0.05 < lung.float().mean() < 0.9
        for j, (dy, dx) in enumerate(shifts):
            shifted = torch.roll(lung, shifts=(dy, dx), dims=(0, 1))
            contrast[seed, j] = _lung_contrast(view[0], shifted)
    assert (contrast[:, 0] > 0.1).all()
    # The augmented mask fits the augmented image better than shifted copies of itself.
    # Averaged over the views: one view's contrast is flat along the diaphragm, and the
    # measure peaks ~0.25 px down-right of the true masks at this scale.
    mean = contrast.mean(0)
    assert (mean[0] > mean[1:]).all(), mean


def test_real_views_seeded_and_plausible(data_root: Path) -> None:
    images = _kermany(data_root, 4)
    aug = XRayAugment(64)
    for i, image in enumerate(images):
        a = aug(image, generator=torch.Generator().manual_seed(i))
        assert torch.equal(a, aug(image, generator=torch.Generator().manual_seed(i)))
        assert a.shape == (1, 64, 64) and a.min() >= 0 and a.max() <= 1
        assert abs(a.mean() - Resize(64)(image).mean()) < 0.2  # a view, not a different image


def test_batched_matches_per_sample_on_real_images(data_root: Path) -> None:
    batch = torch.stack([Resize(80)(x) for x in _kermany(data_root, 6)])
    per_sample = XRayAugment(64, scale=(0.6, 1.0), noise_std=0.0, blur_p=0.5)
    g = torch.Generator().manual_seed(0)
    params = [per_sample.sample_params(80, 80, generator=g) for _ in range(6)]
    ref = torch.stack([per_sample.apply(x, p) for x, p in zip(batch, params, strict=True)])
    batched = BatchedXRayAugment.from_config(per_sample.config)
    out = batched.apply_params(batch, BatchAugmentParams.stack(params))
    assert (out - ref).abs().mean() < 0.01


def test_jigsaw_on_real_image_recovers(data_root: Path) -> None:
    image = Resize(66)(_kermany(data_root, 1)[0])
    jig = JigsawPretext(grid=3, n_permutations=100, tile_fraction=1.0)
    tiles, index = jig(image, generator=torch.Generator().manual_seed(0))
    ordered = torch.empty_like(tiles)
    ordered[jig.permutations[index]] = tiles
    assert torch.equal(ordered[4], image[:, 22:44, 22:44])
