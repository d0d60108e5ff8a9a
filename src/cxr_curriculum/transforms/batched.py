"""Batched on-device X-ray view augmentation: a whole ``(B, 1, H, W)`` batch at once."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import overload

import torch
import torch.nn.functional as F
from torch import nn

from . import photometric as P
from .augment import XRayAugment
from .config import AugmentConfig
from .params import BatchAugmentParams, sample_batch_params

__all__ = ["BatchedXRayAugment", "crop_rotate_theta"]


def crop_rotate_theta(params: BatchAugmentParams) -> torch.Tensor:
    """Affine matrices ``(B, 2, 3)`` for ``F.affine_grid`` (``align_corners=False``).

    An output pixel at normalised offset ``u`` from the view centre samples the source
    at ``c + R(angle) (f u_x w / 2, u_y h / 2)`` (pixels), with ``c`` the crop centre,
    ``(h, w)`` the crop size, ``f = -1`` for a horizontal flip and ``R`` the rotation
    that turns the content counter-clockwise (torchvision's ``rotate`` convention).
    """
    src_h, src_w = params.source_size
    rad = params.angle * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    flip = 1.0 - 2.0 * params.hflip.to(cos.dtype)
    half_w, half_h = params.width / 2.0, params.height / 2.0
    cx, cy = params.left + half_w, params.top + half_h
    theta = torch.stack(
        [
            torch.stack([cos * half_w * flip, -sin * half_h, cx - src_w / 2.0], dim=1)
            / (src_w / 2.0),
            torch.stack([sin * half_w * flip, cos * half_h, cy - src_h / 2.0], dim=1)
            / (src_h / 2.0),
        ],
        dim=1,
    )
    return theta


class BatchedXRayAugment(nn.Module):
    """:class:`XRayAugment` for a whole batch ``(B, 1, H, W)`` on the batch's device.

    Same settings and parameter distribution as :class:`XRayAugment` (both draw from
    :func:`sample_batch_params`); per-sample crop, rotation and flip are one
    ``affine_grid`` / ``grid_sample`` call, photometric operations are vectorised and
    the blur is a grouped separable convolution. Histogram equalisation is the global
    one (``equalize="hist"``); CLAHE has no batched form.

    Differences from the per-sample path, by design: one bilinear resampling without
    antialiasing (feed images already resized to about ``image_size``, as
    ``make_transform(..., batched=True)`` does, so crops are not strongly downscaled),
    and noise drawn from one seed for the whole batch. Each call synchronises with
    the device a few times (noise seed, blur radius); the cost is small next to a
    training step. The deterministic step is :meth:`apply_params` (``nn.Module``
    already owns ``apply``).

    Example:
        >>> aug = BatchedXRayAugment(image_size=32)
        >>> aug(torch.rand(4, 1, 40, 40), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 32, 32])
    """

    def __init__(
        self,
        image_size: int | tuple[int, int] = 64,
        scale: tuple[float, float] = (0.4, 1.0),
        rotation: float = 10.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        gamma: tuple[float, float] = (0.8, 1.25),
        blur_p: float = 0.2,
        noise_std: float = 0.02,
        equalize_p: float = 0.0,
        hflip_p: float = 0.0,
        strength: float = 1.0,
        *,
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        blur_sigma: tuple[float, float] = (0.1, 1.0),
        equalize: str = "hist",
    ) -> None:
        super().__init__()
        if equalize != "hist":
            raise ValueError(f"BatchedXRayAugment supports equalize='hist' only, got {equalize!r}")
        self.config = XRayAugment(
            image_size, scale, rotation, brightness, contrast, gamma, blur_p, noise_std,
            equalize_p, hflip_p, strength, ratio=ratio, blur_sigma=blur_sigma, equalize=equalize,
        ).config  # fmt: skip

    @classmethod
    def from_config(cls, config: AugmentConfig) -> BatchedXRayAugment:
        """Build from an :class:`AugmentConfig` (e.g. ``XRayAugment(...).config``)."""
        return cls(**asdict(config))

    def extra_repr(self) -> str:
        return str(self.config)

    def sample_params(
        self,
        batch_size: int,
        height: int,
        width: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> BatchAugmentParams:
        """Draw parameters for ``batch_size`` views of ``(height, width)`` images.

        The draw happens on the generator's device (CPU when ``generator`` is None and
        ``device`` is None); the tensors are then moved to ``device`` when given, so a
        CPU generator reproduces the same views on any device.
        """
        params = sample_batch_params(self.config, batch_size, height, width, generator=generator)
        return params if device is None else params.to(device)

    @overload
    def apply_params(
        self, batch: torch.Tensor, params: BatchAugmentParams, mask: None = None
    ) -> torch.Tensor: ...

    @overload
    def apply_params(
        self, batch: torch.Tensor, params: BatchAugmentParams, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def apply_params(
        self, batch: torch.Tensor, params: BatchAugmentParams, mask: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Apply ``params`` to ``batch`` ``(B, 1, H, W)`` (and a ``uint8`` ``mask``).

        Returns:
            Views ``(B, 1, h, w)`` in ``[0, 1]``, and mask views ``(B, 1, h, w)`` ``uint8``
            (nearest; padding 0) when a mask is given.
        """
        _check_batch(batch, params)
        if mask is not None and (mask.dtype != torch.uint8 or mask.shape != batch.shape):
            raise ValueError(
                f"mask must be uint8 with the batch's shape {tuple(batch.shape)}, got "
                f"{mask.dtype} {tuple(mask.shape)}"
            )
        params = params.to(batch.device)
        out_h, out_w = self.config.image_size
        theta = crop_rotate_theta(params).to(batch.dtype)
        grid = F.affine_grid(theta, [batch.shape[0], 1, out_h, out_w], align_corners=False)
        views = F.grid_sample(
            batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        views = self._photometry(views, params)  # bilinear on [0, 1] stays in [0, 1]
        if mask is None:
            return views
        m = F.grid_sample(mask.to(grid.dtype), grid, mode="nearest", align_corners=False)
        return views, m.round().to(torch.uint8)

    @overload
    def forward(
        self, batch: torch.Tensor, mask: None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...

    @overload
    def forward(
        self, batch: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(
        self,
        batch: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Sample parameters with ``generator`` and apply them to the batch (and mask)."""
        _check_batch(batch)
        b, _, h, w = batch.shape
        params = self.sample_params(b, h, w, generator=generator, device=batch.device)
        return self.apply_params(batch, params, mask)

    def _photometry(self, x: torch.Tensor, p: BatchAugmentParams) -> torch.Tensor:
        """Equalise, gamma, brightness, contrast, clamp, blur, noise, clamp (as XRayAugment)."""
        equalized = torch.nonzero(p.equalize).flatten()
        if equalized.numel() > 0:
            x = x.index_copy(0, equalized, P.equalize_hist(x[equalized]))
        x = P.adjust_gamma(x, p.gamma)
        x = P.adjust_brightness_contrast(x, p.brightness, p.contrast).clamp_(0.0, 1.0)
        blurred = torch.nonzero(p.blur_sigma > 0).flatten()  # blur only the samples drawn
        if blurred.numel() > 0:
            sigma = p.blur_sigma[blurred]
            radius = P.blur_radius(float(sigma.max()))
            x = x.index_copy(0, blurred, P.gaussian_blur(x[blurred], sigma, radius))
        if bool((p.noise_std > 0).any()):
            g = torch.Generator(device=x.device).manual_seed(p.noise_seed)
            x = P.add_noise(x, p.noise_std, g)
        return x.clamp_(0.0, 1.0)


def _check_batch(batch: torch.Tensor, params: BatchAugmentParams | None = None) -> None:
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 1:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"batch must be a tensor (B, 1, H, W), got {shape}")
    if not batch.is_floating_point():
        raise ValueError(f"batch must be a float tensor in [0, 1], got dtype {batch.dtype}")
    if params is not None and (
        len(params) != batch.shape[0] or tuple(params.source_size) != tuple(batch.shape[-2:])
    ):
        raise ValueError(
            f"params are for {len(params)} images of {params.source_size}, batch is "
            f"{tuple(batch.shape)}"
        )
