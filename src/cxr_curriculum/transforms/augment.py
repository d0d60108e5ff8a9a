"""Per-sample X-ray view augmentation with shared image/mask geometry."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import overload

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from . import photometric as P
from ._checks import check_image, check_mask
from .config import AugmentConfig
from .params import AugmentParams, sample_batch_params

__all__ = ["XRayAugment"]


class XRayAugment:
    """X-ray-safe random view of one image ``(1, H, W)`` (and optionally its mask).

    Random resized crop with bounded area (Szegedy et al. 2015; SimCLR, Chen et al.
    2020), small rotation about the crop centre, gamma, brightness, contrast, optional
    histogram equalisation, Gaussian blur and noise. No colour jitter, no vertical flip;
    horizontal flip is off by default (it moves the heart). Settings are described in
    :class:`~cxr_curriculum.transforms.AugmentConfig`; ``strength=0`` is a plain resize.

    Sampling and applying are separate (:meth:`sample_params`, :meth:`apply`), so a
    mask gets exactly the image's geometry (pixel-centred nearest, values such as
    255 = ignore kept, padding filled with 0) and a seeded generator reproduces views.

    Example:
        >>> aug = XRayAugment(image_size=32)
        >>> g = torch.Generator().manual_seed(0)
        >>> aug(torch.rand(1, 48, 40), generator=g).shape
        torch.Size([1, 32, 32])
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
        self.config = AugmentConfig(
            image_size=image_size,  # type: ignore[arg-type]  # normalised by AugmentConfig
            scale=scale,
            rotation=rotation,
            brightness=brightness,
            contrast=contrast,
            gamma=gamma,
            blur_p=blur_p,
            noise_std=noise_std,
            equalize_p=equalize_p,
            hflip_p=hflip_p,
            strength=strength,
            ratio=ratio,
            blur_sigma=blur_sigma,
            equalize=equalize,
        )

    @classmethod
    def from_config(cls, config: AugmentConfig) -> XRayAugment:
        """Build from an :class:`AugmentConfig`."""
        kwargs = asdict(config)
        return cls(**kwargs)

    @property
    def image_size(self) -> tuple[int, int]:
        """Output ``(height, width)``."""
        return self.config.image_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def sample_params(
        self, height: int, width: int, generator: torch.Generator | None = None
    ) -> AugmentParams:
        """Draw the parameters of one view of a ``(height, width)`` image.

        Args:
            height: Source image height.
            width: Source image width.
            generator: A CPU ``torch.Generator``; ``None`` uses torch's default generator.

        Returns:
            Frozen :class:`AugmentParams`.
        """
        return sample_batch_params(self.config, 1, height, width, generator=generator)[0]

    @overload
    def apply(
        self, image: torch.Tensor, params: AugmentParams, mask: None = None
    ) -> torch.Tensor: ...

    @overload
    def apply(
        self, image: torch.Tensor, params: AugmentParams, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def apply(
        self, image: torch.Tensor, params: AugmentParams, mask: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Apply ``params`` deterministically.

        Args:
            image: Float image ``(1, H, W)`` in ``[0, 1]``.
            params: Parameters sampled for ``(H, W)``.
            mask: Optional ``uint8`` mask ``(1, H, W)``; gets the geometry only.

        Returns:
            The view ``(1, h, w)`` in ``[0, 1]`` with ``(h, w) = image_size``, and the mask
            view ``(1, h, w)`` ``uint8`` when a mask is given.
        """
        check_image(image)
        if tuple(image.shape[-2:]) != tuple(params.source_size):
            raise ValueError(
                f"params were sampled for size {params.source_size}, image has "
                f"{tuple(image.shape[-2:])}"
            )
        view = self._geometry(image, params, InterpolationMode.BILINEAR).clamp(0.0, 1.0)
        view = self._photometry(view, params)
        if mask is None:
            return view
        check_mask(mask, image)
        return view, self._geometry(mask, params, InterpolationMode.NEAREST_EXACT)

    @overload
    def __call__(
        self, image: torch.Tensor, mask: None = None, *, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...

    @overload
    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def __call__(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Sample parameters with ``generator`` and apply them to ``image`` (and ``mask``)."""
        check_image(image)
        params = self.sample_params(image.shape[-2], image.shape[-1], generator=generator)
        return self.apply(image, params, mask)

    def _geometry(self, x: torch.Tensor, p: AugmentParams, mode: InterpolationMode) -> torch.Tensor:
        """Rotate about the crop centre (zeros outside), crop, resize, flip."""
        if p.angle != 0.0:
            center = [p.left + p.width / 2.0, p.top + p.height / 2.0]
            # grid_sample's "nearest" is already pixel-centred; "nearest-exact" is for resizing.
            exact = mode == InterpolationMode.NEAREST_EXACT
            rotate_mode = InterpolationMode.NEAREST if exact else mode
            x = TF.rotate(x, p.angle, interpolation=rotate_mode, center=center, fill=[0.0])
        size = list(self.config.image_size)
        antialias = mode == InterpolationMode.BILINEAR
        x = TF.resized_crop(x, p.top, p.left, p.height, p.width, size, mode, antialias=antialias)
        return TF.horizontal_flip(x) if p.hflip else x

    def _photometry(self, view: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Equalise, gamma, brightness, contrast, clamp, blur, noise, clamp."""
        if p.equalize:
            view = self._equalize(view)
        batch = view.unsqueeze(0)
        one = torch.ones(1)
        if p.gamma != 1.0:
            batch = P.adjust_gamma(batch, one * p.gamma)
        if p.brightness != 1.0 or p.contrast != 1.0:
            batch = P.adjust_brightness_contrast(batch, one * p.brightness, one * p.contrast)
        view = batch[0].clamp(0.0, 1.0)
        if p.blur_sigma > 0.0:
            k = 2 * math.ceil(3.0 * p.blur_sigma) + 1
            k = min(k, 2 * (min(view.shape[-2:]) - 1) + 1)
            view = TF.gaussian_blur(view, [k, k], [p.blur_sigma, p.blur_sigma])
        if p.noise_std > 0.0:
            g = torch.Generator(device=view.device).manual_seed(p.noise_seed)
            view = P.add_noise(view.unsqueeze(0), one * p.noise_std, g)[0]
        return view.clamp(0.0, 1.0)

    def _equalize(self, view: torch.Tensor) -> torch.Tensor:
        array = view[0].detach().cpu().double().numpy()
        from skimage import exposure  # lazy: scikit-image costs seconds to import

        if self.config.equalize == "clahe":
            out = exposure.equalize_adapthist(np.clip(array, 0.0, 1.0))
        else:
            out = exposure.equalize_hist(array)
        return torch.as_tensor(out, dtype=view.dtype, device=view.device).unsqueeze(0)
