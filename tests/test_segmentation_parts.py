"""Unit tests of the segmentation parts that need no model: metrics, targets,
post-processing, quality checks and the classical baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, jaccard_score

from cxr_curriculum.segmentation import (
    assess_quality,
    classical_lung_masks,
    clean_masks,
    dice_score,
    iou_score,
    split_lungs,
)


def _two_lungs(h: int = 64, w: int = 64) -> torch.Tensor:
    """Both-lungs mask (1, H, W) with a larger lung on the image's left."""
    m = torch.zeros(1, h, w, dtype=torch.uint8)
    m[0, 10:54, 6:28] = 1
    m[0, 14:50, 38:56] = 1
    return m


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_dice_iou_match_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(12, 10, generator=g) > 0.5
    t = torch.rand(12, 10, generator=g) > 0.4
    if not (p.any() or t.any()):
        return
    want_dice = f1_score(t.flatten().numpy(), p.flatten().numpy(), zero_division=1.0)
    want_iou = jaccard_score(t.flatten().numpy(), p.flatten().numpy(), zero_division=1.0)
    assert float(dice_score(p, t)) == pytest.approx(want_dice)
    assert float(iou_score(p, t)) == pytest.approx(want_iou)
    d, i = float(dice_score(p, t)), float(iou_score(p, t))
    assert d == pytest.approx(2 * i / (1 + i))


def test_metrics_batched_ignore_and_empty() -> None:
    p = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    t = torch.zeros_like(p)
    p[0, 0, :2] = True
    t[0, 0, :1] = True
    valid = torch.ones(4, 4, dtype=torch.bool)
    valid[1] = False  # the disagreeing row is ignored
    assert dice_score(p, t).shape == (2, 3)
    assert float(dice_score(p, t)[0, 0]) == pytest.approx(2 * 4 / (8 + 4))
    assert float(dice_score(p, t, valid)[0, 0]) == 1.0
    assert float(dice_score(p, t)[1, 2]) == 1.0  # both empty
    with pytest.raises(ValueError, match="same shape"):
        dice_score(p, t[:1])


def test_split_lungs_sides_and_ignore() -> None:
    m = _two_lungs()
    m[0, 0, :] = 255
    t = split_lungs(m)
    assert t.dtype == torch.uint8 and t.shape == (64, 64)
    assert (t[10:54, 6:28] == 1).all()  # image left = patient's right lung
    assert (t[14:50, 38:56] == 2).all()
    assert (t[0] == 255).all()
    assert set(t.unique().tolist()) == {0, 1, 2, 255}


def test_split_lungs_cuts_touching_lungs_at_the_narrowest_column() -> None:
    m = _two_lungs()
    m[0, 30:34, 28:38] = 1  # a bridge joins the lungs into one component
    t = split_lungs(m)
    assert (t[10:54, 6:28] == 1).all() and (t[14:50, 38:56] == 2).all()


def test_split_lungs_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="values"):
        split_lungs(torch.full((1, 8, 8), 7, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        split_lungs(torch.zeros(2, 8, 8, dtype=torch.uint8))


def test_clean_masks_keeps_largest_component_and_fills_holes() -> None:
    t = split_lungs(_two_lungs())
    masks = torch.stack([t == 1, t == 2])[None].clone()
    masks[0, 0, 30, 15] = False  # hole
    masks[0, 1, 2:4, 60:62] = True  # speck
    out = clean_masks(masks)
    assert out.dtype == torch.bool and out.shape == masks.shape
    assert out[0, 0, 30, 15] and not out[0, 1, 2:4, 60:62].any()
    assert torch.equal(out[0, 0], t == 1) and torch.equal(out[0, 1], t == 2)


def test_quality_flags() -> None:
    t = split_lungs(_two_lungs())
    good = torch.stack([t == 1, t == 2])[None]
    swapped = good.flip(1)
    one_lung = good.clone()
    one_lung[0, 1] = False
    ragged = good.clone()
    for row in range(12, 52, 4):
        ragged[0, 0, row : row + 3, 8:26] = False  # a comb: thin teeth, solidity ~0.45
    q = assess_quality(torch.cat([good, swapped, one_lung, ragged]))
    assert q[0].ok and q[0].reasons == ()
    assert q[0].lung_fraction == pytest.approx(float(good.sum()) / 64**2)
    assert not q[1].ok and "right lung is not on the image's left" in q[1].reasons
    assert not q[2].ok and "left lung missing" in q[2].reasons
    assert not q[3].ok and q[3].reasons[0].startswith("right lung ragged")


def _phantom(size: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Dark air, bright body, two dark lung ellipses; returns image and lung target."""
    yy, xx = np.mgrid[:size, :size] / size
    body = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.48) ** 2 < 1
    right = ((xx - 0.32) / 0.12) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1
    left = ((xx - 0.68) / 0.11) ** 2 + ((yy - 0.52) / 0.27) ** 2 < 1
    img = np.where(body, 0.8, 0.05) - 0.55 * (right | left)
    img = img + np.random.default_rng(0).normal(0, 0.02, img.shape)
    image = torch.from_numpy(np.clip(img, 0, 1)).float()[None, None]
    return image, torch.from_numpy(np.stack([right, left]))[None]


def test_classical_baseline_on_a_phantom() -> None:
    image, want = _phantom()
    out = classical_lung_masks(image)
    assert out.shape == (1, 2, 96, 96) and out.dtype == torch.bool
    assert float(dice_score(out, want).min()) > 0.85


def test_classical_baseline_validates_input() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        classical_lung_masks(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="float"):
        classical_lung_masks(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.3, 0.6))
def test_clean_masks_matches_skimage_and_scipy_reference(seed: int, density: float) -> None:
    """Largest 4-connected component (skimage) + ``ndi.binary_fill_holes`` per lung."""
    from scipy import ndimage as ndi
    from skimage.measure import label

    rng = np.random.default_rng(seed)
    masks = torch.from_numpy(rng.random((1, 2, 40, 36)) < density)
    got = clean_masks(masks)
    for c in range(2):
        m = masks[0, c].numpy()
        comps = label(m, connectivity=1)
        if comps.max() == 0:
            want = m
        else:
            sizes = np.bincount(comps.ravel())
            sizes[0] = 0
            want = ndi.binary_fill_holes(comps == sizes.argmax())
        overlap = torch.from_numpy(np.asarray(want)) & got[0, 1 - c]
        # Pixels claimed by both lungs after filling go to the larger one.
        assert torch.equal(got[0, c] | overlap, torch.from_numpy(np.asarray(want)))
