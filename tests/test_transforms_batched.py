"""Batched on-device augmentation agrees with the per-sample path and its references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from skimage import exposure
from torch import nn

from cxr_curriculum.transforms import (
    AugmentParams,
    BatchAugmentParams,
    BatchedXRayAugment,
    XRayAugment,
)
from cxr_curriculum.transforms import photometric as P

NO_NOISE = {"noise_std": 0.0}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth_batch(b: int = 6, h: int = 44, w: int = 40) -> torch.Tensor:
    y = torch.linspace(0, 1, h).view(1, 1, -1, 1)
    x = torch.linspace(0, 1, w).view(1, 1, 1, -1)
    phase = torch.linspace(0, 2, b).view(-1, 1, 1, 1)
    return (0.35 + 0.3 * y * x + 0.2 * torch.sin(5 * x + phase) * torch.cos(3 * y)).clamp(0, 1)


def test_identity_params_give_identity_output() -> None:
    batch = torch.rand(3, 1, 32, 32)
    mask = (torch.rand(3, 1, 32, 32) > 0.5).to(torch.uint8) * 255
    params = BatchAugmentParams.stack([AugmentParams.identity(32, 32)] * 3)
    views, mviews = BatchedXRayAugment(32).apply_params(batch, params, mask)
    torch.testing.assert_close(views, batch, atol=1e-6, rtol=0)
    assert torch.equal(mviews, mask)


def test_strength_zero_is_identity_on_same_size() -> None:
    batch = torch.rand(4, 1, 24, 24)
    out = BatchedXRayAugment(24, strength=0.0)(batch, generator=_gen(0))
    torch.testing.assert_close(out, batch, atol=1e-5, rtol=0)


def test_known_crops_match_per_sample_path() -> None:
    """Per-sample = torchvision rotate + resized_crop; batched = one grid_sample."""
    batch = _smooth_batch()
    crops = [
        (0, 0, 44, 40, 0.0, False),
        (4, 6, 30, 28, 0.0, False),
        (2, 3, 36, 30, 12.0, False),
        (5, 1, 34, 34, -8.0, True),
        (7, 5, 30, 30, 20.0, False),  # rotated corners stay inside the image
        (0, 4, 40, 36, 0.0, True),
    ]
    params = [
        AugmentParams((44, 40), t, left, h, w, angle=a, hflip=f) for t, left, h, w, a, f in crops
    ]
    ref = torch.stack([XRayAugment(32).apply(x, p) for x, p in zip(batch, params, strict=True)])
    out = BatchedXRayAugment(32).apply_params(batch, BatchAugmentParams.stack(params))
    diff = (out - ref).abs()
    assert diff.mean() < 2e-3 and diff[..., 2:-2, 2:-2].max() < 2e-2


@pytest.mark.parametrize("seed", range(3))
def test_random_params_match_per_sample_path(seed: int) -> None:
    """Sampled params (photometry, blur, equalisation included) agree across the two paths."""
    kwargs = {"scale": (0.6, 1.0), "blur_p": 0.5, "equalize_p": 0.3, **NO_NOISE}
    batch = _smooth_batch(8, 36, 36)
    per_sample = XRayAugment(32, **kwargs)
    params = [per_sample.sample_params(36, 36, generator=_gen(100 * seed + i)) for i in range(8)]
    ref = torch.stack([per_sample.apply(x, p) for x, p in zip(batch, params, strict=True)])
    out = BatchedXRayAugment(32, **kwargs).apply_params(batch, BatchAugmentParams.stack(params))
    diff = (out - ref).abs()
    assert diff.mean() < 1e-2, diff.mean()


def test_parameter_distribution_matches_per_sample() -> None:
    kwargs = {"hflip_p": 0.3, "equalize_p": 0.4, "blur_p": 0.5}
    single = XRayAugment(32, **kwargs)
    per = BatchAugmentParams.stack(
        [single.sample_params(50, 60, generator=_gen(s)) for s in range(400)]
    )
    bat = BatchedXRayAugment(32, **kwargs).sample_params(400, 50, 60, generator=_gen(7))
    for name, tol in [("angle", 1.2), ("gamma", 0.03), ("brightness", 0.02), ("contrast", 0.02)]:
        a, b = getattr(per, name), getattr(bat, name)
        assert abs(a.mean() - b.mean()) < tol and abs(a.std() - b.std()) < tol, name
    area_a, area_b = per.height * per.width / 3000, bat.height * bat.width / 3000
    assert abs(area_a.mean() - area_b.mean()) < 0.04
    for name, p in [("hflip", 0.3), ("equalize", 0.4)]:
        assert abs(getattr(bat, name).float().mean() - p) < 0.08
    assert abs((bat.blur_sigma > 0).float().mean() - 0.5) < 0.08


def test_seeded_and_cpu_generator_reproducible() -> None:
    aug, batch = BatchedXRayAugment(24), torch.rand(5, 1, 30, 30)
    a = aug(batch, generator=_gen(1))
    assert torch.equal(a, aug(batch, generator=_gen(1)))
    assert not torch.allclose(a, aug(batch, generator=_gen(2)))
    assert a.shape == (5, 1, 24, 24) and a.min() >= 0 and a.max() <= 1


def test_batched_mask_geometry_agrees() -> None:
    mask = torch.zeros(4, 1, 48, 48, dtype=torch.uint8)
    mask[:, :, 8:40, 6:18] = 1
    mask[:, :, 30:40, 6:36] = 1
    image = mask.float()
    aug = BatchedXRayAugment(40, rotation=25.0, hflip_p=0.5, brightness=0.0, contrast=0.0,
                             gamma=(1.0, 1.0), blur_p=0.0, noise_std=0.0)  # fmt: skip
    views, mviews = aug(image, mask, generator=_gen(3))
    assert ((views > 0.5) != (mviews == 1)).float().mean() < 0.03


def test_blur_matches_torchvision() -> None:
    x = torch.rand(3, 1, 32, 32)
    sigma = torch.tensor([0.0, 0.7, 1.5])
    out = P.gaussian_blur(x, sigma, P.blur_radius(1.5))
    torch.testing.assert_close(out[0], x[0])
    for i in (1, 2):
        k = 2 * P.blur_radius(float(sigma[i])) + 1
        ref = TF.gaussian_blur(x[i], [k, k], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=2e-3, rtol=0)


def test_equalize_matches_skimage() -> None:
    x = torch.rand(2, 1, 20, 24) ** 3
    out = P.equalize_hist(x)
    for i in range(2):
        ref = exposure.equalize_hist(x[i, 0].double().numpy())
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-5)


def test_module_behaviour_and_validation() -> None:
    aug = BatchedXRayAugment(16)
    nn.Sequential(aug).apply(lambda m: None)  # nn.Module.apply still works
    assert BatchedXRayAugment.from_config(XRayAugment(16, rotation=5.0).config).config.rotation == 5
    with pytest.raises(ValueError, match="hist"):
        BatchedXRayAugment(16, equalize="clahe")
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        aug(torch.rand(2, 3, 16, 16))
    params = aug.sample_params(2, 16, 16, generator=_gen(0))
    with pytest.raises(ValueError, match="params are for"):
        aug.apply_params(torch.rand(3, 1, 16, 16), params)
    with pytest.raises(ValueError, match="uint8"):
        aug.apply_params(torch.rand(2, 1, 16, 16), params, torch.zeros(2, 1, 16, 16))
    assert dataclasses.is_dataclass(params[0]) and len(params) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_stays_on_device_and_matches_cpu() -> None:
    aug, batch = BatchedXRayAugment(32, **NO_NOISE), torch.rand(8, 1, 40, 40)
    cpu = aug(batch, generator=_gen(0))
    gpu = aug(batch.cuda(), generator=_gen(0))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
    g = torch.Generator(device="cuda").manual_seed(0)
    assert aug(batch.cuda(), generator=g).device.type == "cuda"


def test_fused_brightness_contrast_equals_sequential() -> None:
    x = torch.rand(4, 1, 8, 8)
    b, c = torch.tensor([0.8, 1.0, 1.2, 0.9]), torch.tensor([1.1, 0.85, 1.0, 1.2])
    ref = P.adjust_contrast(P.adjust_brightness(x, b), c)
    torch.testing.assert_close(P.adjust_brightness_contrast(x, b, c), ref)
