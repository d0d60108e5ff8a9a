"""Vectorised X-ray intensity operations on a batch ``(B, 1, H, W)``, one parameter per sample.

Both augmentation paths use these for gamma, brightness, contrast and noise; the
batched path also uses :func:`gaussian_blur` and :func:`equalize_hist`, whose
per-sample counterparts are torchvision's ``gaussian_blur`` and scikit-image's
``exposure.equalize_hist`` (the tests compare them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "add_noise",
    "adjust_brightness",
    "adjust_brightness_contrast",
    "adjust_contrast",
    "adjust_gamma",
    "equalize_hist",
    "gaussian_blur",
]


def _per_sample(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def adjust_gamma(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``x ** gamma`` per sample on ``x`` clamped to ``[0, 1]``; ``gamma`` has shape ``(B,)``."""
    return x.clamp(0.0, 1.0) ** _per_sample(gamma, x)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply each sample by its brightness ``factor`` ``(B,)``."""
    return x * _per_sample(factor, x)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each sample with its mean intensity: ``mean + factor * (x - mean)``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + _per_sample(factor, x) * (x - mean)


def adjust_brightness_contrast(
    x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor
) -> torch.Tensor:
    """:func:`adjust_brightness` then :func:`adjust_contrast` in one fused pass.

    With ``m`` the sample mean, ``b`` and ``c`` the factors:
    ``c * (b x - b m) + b m = (b c) x + b m (1 - c)``.
    """
    b, c = _per_sample(brightness, x), _per_sample(contrast, x)
    shift = b * x.mean(dim=(1, 2, 3), keepdim=True) * (1.0 - c)
    return torch.addcmul(shift, x, b * c)


def add_noise(
    x: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Add zero-mean Gaussian noise with per-sample ``std`` ``(B,)``."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + noise.mul_(_per_sample(std, x))


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels ``(B, 2 * radius + 1)``; sigma 0 gives a delta."""
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    s = sigma.to(torch.float32).clamp(min=1e-6).view(-1, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def blur_radius(max_sigma: float) -> int:
    """Kernel radius ``ceil(3 * sigma)`` used for a largest sigma (at least 1)."""
    return max(1, math.ceil(3.0 * max_sigma))


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Blur each sample with its own Gaussian ``sigma`` ``(B,)`` by a separable grouped conv.

    Borders are reflected, as in ``torchvision.transforms.v2.functional.gaussian_blur``.

    Args:
        x: Batch ``(B, 1, H, W)``.
        sigma: Per-sample sigma in pixels ``(B,)``; 0 leaves the sample unchanged.
        radius: Kernel radius (the kernel has ``2 * radius + 1`` taps), at most ``H - 1``
            and ``W - 1``.

    Returns:
        The blurred batch ``(B, 1, H, W)``.
    """
    b, c, h, w = x.shape
    radius = max(0, min(radius, h - 1, w - 1))
    k = gaussian_kernels(sigma.to(x.device), radius).to(x.dtype)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.repeat_interleave(c, 0).view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, k.repeat_interleave(c, 0).view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def equalize_hist(x: torch.Tensor, nbins: int = 256) -> torch.Tensor:
    """Global histogram equalisation per sample, as ``skimage.exposure.equalize_hist``.

    Each sample's histogram spans its own ``[min, max]`` in ``nbins`` bins; a value is
    mapped to the cumulative distribution linearly interpolated between bin centres.

    Args:
        x: Batch ``(B, 1, H, W)``.
        nbins: Number of histogram bins.

    Returns:
        The equalised batch ``(B, 1, H, W)`` with values in ``(0, 1]``.
    """
    b = x.shape[0]
    flat = x.reshape(b, -1).to(torch.float32)
    lo = flat.min(dim=1, keepdim=True).values
    span = (flat.max(dim=1, keepdim=True).values - lo).clamp(min=1e-12)
    pos = (flat - lo) / span * nbins  # in bin units, bin i covers [i, i + 1)
    idx = pos.floor().clamp(0, nbins - 1).long()
    hist = torch.zeros(b, nbins, device=x.device, dtype=torch.float32)
    hist.scatter_add_(1, idx, torch.ones_like(flat))
    cdf = hist.cumsum(dim=1)
    cdf = cdf / cdf[:, -1:]
    t = (pos - 0.5).clamp(0, nbins - 1)  # position between bin centres
    i0 = t.floor().long().clamp(max=nbins - 2) if nbins > 1 else t.floor().long()
    frac = t - i0
    c0 = cdf.gather(1, i0)
    c1 = cdf.gather(1, (i0 + 1).clamp(max=nbins - 1))
    return (c0 + frac * (c1 - c0)).view_as(x).to(x.dtype)
