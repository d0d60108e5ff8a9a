"""Random parameters of one X-ray view: sampled once, applied deterministically.

Following torchvision transforms v2 (``transforms/v2/_transform.py``), sampling and
applying are separate steps, so that an image and its mask share one geometry and a
seed reproduces a view. :func:`sample_batch_params` is the single sampler used by
both :class:`XRayAugment` (``n = 1``) and :class:`BatchedXRayAugment`, so the two
paths draw from the same distribution by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .config import AugmentConfig

__all__ = ["AugmentParams", "BatchAugmentParams", "sample_batch_params"]

_TENSOR_FIELDS = (
    "top", "left", "height", "width", "angle", "hflip", "equalize",
    "gamma", "brightness", "contrast", "blur_sigma", "noise_std",
)  # fmt: skip


@dataclass(frozen=True)
class AugmentParams:
    """The parameters of one view of one image.

    Attributes:
        source_size: ``(H, W)`` of the image they were sampled for.
        top, left, height, width: Crop box in source pixels (inside the image).
        angle: Rotation about the crop centre in degrees, counter-clockwise.
        hflip: Whether the view is flipped left-right.
        equalize: Whether histogram equalisation is applied.
        gamma: Exponent applied to intensities (``x ** gamma``).
        brightness: Multiplicative brightness factor.
        contrast: Contrast factor (blend with the view's mean).
        blur_sigma: Gaussian blur sigma in output pixels; 0 means no blur.
        noise_std: Standard deviation of the additive Gaussian noise.
        noise_seed: Seed of the generator that draws the noise.
    """

    source_size: tuple[int, int]
    top: int
    left: int
    height: int
    width: int
    angle: float = 0.0
    hflip: bool = False
    equalize: bool = False
    gamma: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    noise_seed: int = 0

    @classmethod
    def identity(cls, height: int, width: int) -> AugmentParams:
        """Parameters that only resize the whole ``(height, width)`` image."""
        return cls(source_size=(height, width), top=0, left=0, height=height, width=width)


@dataclass(frozen=True)
class BatchAugmentParams:
    """The parameters of a batch of views, one entry of each ``(B,)`` tensor per sample.

    The fields mean the same as in :class:`AugmentParams`; ``hflip`` and ``equalize``
    are bool tensors, the others float tensors on the batch's device. ``noise_seed``
    is one int for the whole batch.
    """

    source_size: tuple[int, int]
    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    angle: torch.Tensor
    hflip: torch.Tensor
    equalize: torch.Tensor
    gamma: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    blur_sigma: torch.Tensor
    noise_std: torch.Tensor
    noise_seed: int = 0

    def __len__(self) -> int:
        return int(self.top.shape[0])

    def __getitem__(self, index: int) -> AugmentParams:
        """The per-sample :class:`AugmentParams` of sample ``index``."""
        values = {name: getattr(self, name)[index].item() for name in _TENSOR_FIELDS}
        for name in ("top", "left", "height", "width"):
            values[name] = int(values[name])
        for name in ("hflip", "equalize"):
            values[name] = bool(values[name])
        return AugmentParams(source_size=self.source_size, noise_seed=self.noise_seed, **values)

    @classmethod
    def stack(
        cls, params: list[AugmentParams], device: torch.device | str | None = None
    ) -> BatchAugmentParams:
        """Stack per-sample parameters (same ``source_size``) into batch parameters.

        Raises:
            ValueError: if ``params`` is empty or the source sizes differ.
        """
        if not params:
            raise ValueError("params must hold at least one AugmentParams")
        sizes = {p.source_size for p in params}
        if len(sizes) != 1:
            raise ValueError(f"all params must share one source_size, got {sorted(sizes)}")
        columns: dict[str, torch.Tensor] = {}
        for name in _TENSOR_FIELDS:
            dtype = torch.bool if name in ("hflip", "equalize") else torch.float32
            columns[name] = torch.tensor(
                [getattr(p, name) for p in params], dtype=dtype, device=device
            )
        return cls(source_size=params[0].source_size, noise_seed=params[0].noise_seed, **columns)

    def to(self, device: torch.device | str) -> BatchAugmentParams:
        """The same parameters with every tensor moved to ``device``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _TENSOR_FIELDS:
            values[name] = values[name].to(device)
        return BatchAugmentParams(**values)


def sample_batch_params(
    config: AugmentConfig,
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> BatchAugmentParams:
    """Draw the parameters of ``n`` views of ``(height, width)`` images.

    All randomness comes from one ``torch.rand`` call (and one ``torch.randint`` for the
    noise seed) on ``generator``, which must live on ``device`` when given.

    Args:
        config: The augmentation settings (effective ranges after ``strength``).
        n: Number of views.
        height: Source image height in pixels.
        width: Source image width in pixels.
        generator: Source of randomness; ``None`` uses torch's default generator.
        device: Where the parameter tensors live; defaults to the generator's device.

    Returns:
        The batch parameters, tensors of shape ``(n,)``.
    """
    if n < 1 or height < 1 or width < 1:
        raise ValueError(f"n, height and width must be >= 1, got {n}, {height}, {width}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, 12, generator=generator, device=device, dtype=torch.float64)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device).item())

    def between(col: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * u[:, col]

    area = between(0, *config.eff_scale)
    ratio = torch.exp(between(1, *config.eff_log_ratio))
    crop_w = torch.round(torch.sqrt(area * ratio).clamp(max=1.0) * width).clamp(1, width)
    crop_h = torch.round(torch.sqrt(area / ratio).clamp(max=1.0) * height).clamp(1, height)
    top = torch.minimum(torch.floor(u[:, 2] * (height - crop_h + 1)), height - crop_h)
    left = torch.minimum(torch.floor(u[:, 3] * (width - crop_w + 1)), width - crop_w)
    rot, bri, con = config.eff_rotation, config.eff_brightness, config.eff_contrast
    sigma = between(11, *config.eff_blur_sigma) * (u[:, 10] < config.eff_p(config.blur_p))

    def f32(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.float32)

    return BatchAugmentParams(
        source_size=(height, width),
        top=f32(top),
        left=f32(left),
        height=f32(crop_h),
        width=f32(crop_w),
        angle=f32(between(4, -rot, rot)),
        hflip=u[:, 5] < config.eff_p(config.hflip_p),
        equalize=u[:, 6] < config.eff_p(config.equalize_p),
        gamma=f32(torch.exp(between(9, *config.eff_log_gamma))),
        brightness=f32(between(7, 1.0 - bri, 1.0 + bri)),
        contrast=f32(between(8, 1.0 - con, 1.0 + con)),
        blur_sigma=f32(sigma),
        noise_std=torch.full((n,), config.eff_noise_std, dtype=torch.float32, device=device),
        noise_seed=seed,
    )
