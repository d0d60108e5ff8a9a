"""Settings of the X-ray view augmentation, shared by the per-sample and batched paths."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._checks import as_size

__all__ = ["AugmentConfig"]

_EQUALIZE_METHODS = ("hist", "clahe")


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be (lo, hi) with {low} <= lo <= hi <= {high}, got {value!r}")


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Validated settings of :class:`XRayAugment` and :class:`BatchedXRayAugment`.

    Geometry follows a random resized crop (Szegedy et al. 2015, as used by SimCLR,
    Chen et al. 2020) with a bounded area ``scale`` and an aspect ``ratio`` relative to
    the image's own aspect, plus a small rotation; photometry is X-ray safe (one
    channel, no colour jitter, no vertical flip; horizontal flip off by default because
    it moves the heart). ``strength`` multiplies every magnitude (crop area removed,
    log aspect ratio, rotation, brightness and contrast deviation, log gamma, blur
    sigma, noise std) and, capped at 1, every probability; ``strength=0`` is a plain
    resize of the whole image, identical to :class:`Resize`.

    Attributes:
        image_size: Output ``(height, width)``.
        scale: Range of the crop's area as a fraction of the image area.
        rotation: Maximum absolute rotation in degrees (counter-clockwise positive).
        brightness: Multiplicative brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: Contrast factor drawn from ``[1 - c, 1 + c]`` (blend with the mean).
        gamma: Range of the gamma exponent, drawn log-uniformly.
        blur_p: Probability of a Gaussian blur.
        noise_std: Standard deviation of additive Gaussian noise (image units).
        equalize_p: Probability of histogram equalisation.
        hflip_p: Probability of a horizontal flip.
        strength: Global factor on magnitudes (>= 0).
        ratio: Range of the crop's aspect ratio relative to the image's aspect.
        blur_sigma: Range of the blur sigma in output pixels.
        equalize: ``"hist"`` (global, ``skimage.exposure.equalize_hist``) or ``"clahe"``
            (``skimage.exposure.equalize_adapthist``, per-sample path only).
    """

    image_size: tuple[int, int] = (64, 64)
    scale: tuple[float, float] = (0.4, 1.0)
    rotation: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_p: float = 0.2
    noise_std: float = 0.02
    equalize_p: float = 0.0
    hflip_p: float = 0.0
    strength: float = 1.0
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    equalize: str = "hist"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", as_size(self.image_size))
        for name in ("scale", "gamma", "ratio", "blur_sigma"):
            value = getattr(self, name)
            if not isinstance(value, tuple | list) or len(value) != 2:
                raise ValueError(f"{name} must be a pair (lo, hi), got {value!r}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        _check_range("scale", self.scale, 1e-3, 1.0)
        _check_range("ratio", self.ratio, 1e-2, 1e2)
        if not self.ratio[0] <= 1.0 <= self.ratio[1]:
            raise ValueError(f"ratio must contain 1.0, got {self.ratio!r}")
        _check_range("gamma", self.gamma, 1e-2, 1e2)
        if not self.gamma[0] <= 1.0 <= self.gamma[1]:
            raise ValueError(f"gamma must contain 1.0, got {self.gamma!r}")
        _check_range("blur_sigma", self.blur_sigma, 0.0, 50.0)
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation!r}")
        for name in ("brightness", "contrast"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.noise_std < 0.0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std!r}")
        for name in ("blur_p", "equalize_p", "hflip_p"):
            _check_unit(name, getattr(self, name))
        if not (math.isfinite(self.strength) and self.strength >= 0.0):
            raise ValueError(f"strength must be a finite number >= 0, got {self.strength!r}")
        if self.equalize not in _EQUALIZE_METHODS:
            raise ValueError(f"equalize must be one of {_EQUALIZE_METHODS}, got {self.equalize!r}")

    # Effective ranges after ``strength``: what the samplers draw from.

    @property
    def eff_scale(self) -> tuple[float, float]:
        """Crop area range after strength (the removed area scales, floor 1e-3)."""
        s = self.strength
        return (
            max(1e-3, 1.0 - s * (1.0 - self.scale[0])),
            max(1e-3, 1.0 - s * (1.0 - self.scale[1])),
        )

    @property
    def eff_log_ratio(self) -> tuple[float, float]:
        """Log relative aspect ratio range after strength."""
        return (self.strength * math.log(self.ratio[0]), self.strength * math.log(self.ratio[1]))

    @property
    def eff_rotation(self) -> float:
        """Maximum absolute angle in degrees after strength (capped at 180)."""
        return min(180.0, self.strength * self.rotation)

    @property
    def eff_brightness(self) -> float:
        """Brightness deviation after strength (capped below 1)."""
        return min(0.99, self.strength * self.brightness)

    @property
    def eff_contrast(self) -> float:
        """Contrast deviation after strength (capped below 1)."""
        return min(0.99, self.strength * self.contrast)

    @property
    def eff_log_gamma(self) -> tuple[float, float]:
        """Log gamma range after strength."""
        return (self.strength * math.log(self.gamma[0]), self.strength * math.log(self.gamma[1]))

    @property
    def eff_blur_sigma(self) -> tuple[float, float]:
        """Blur sigma range after strength (output pixels)."""
        return (self.strength * self.blur_sigma[0], self.strength * self.blur_sigma[1])

    @property
    def eff_noise_std(self) -> float:
        """Noise standard deviation after strength."""
        return self.strength * self.noise_std

    def eff_p(self, p: float) -> float:
        """A probability after strength: ``p * min(strength, 1)``."""
        return p * min(1.0, self.strength)
