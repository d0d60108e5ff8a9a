"""Input-gradient saliency: plain gradients, SmoothGrad and Integrated Gradients.

All three are batched in torch and differentiate the target score with respect to the
input with :func:`torch.autograd.grad` (parameter ``.grad`` fields are never touched).
Targets given as ``None`` are resolved once, on the clean images, so that noisy or
interpolated copies explain the same class.

Sign rule: :class:`Gradients` and :class:`SmoothGrad` return the absolute gradient
(maximum over channels), as in Simonyan et al.; :class:`IntegratedGradients` returns the
signed attribution summed over channels, whose positive part is what the mass metrics
count.

References:
    Simonyan, Vedaldi & Zisserman, "Deep inside convolutional networks", ICLR-W 2014.
    Smilkov et al., "SmoothGrad: removing noise by adding noise", arXiv 1706.03825, 2017.
    Sundararajan, Taly & Yan, "Axiomatic attribution for deep networks", ICML 2017.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import SaliencyMethod
from .targets import Target, TargetsLike, resolve_target

__all__ = ["Gradients", "IntegratedGradients", "SmoothGrad"]


class Gradients(SaliencyMethod):
    """Absolute input gradient of the target score, max over channels: ``(B, H, W)``.

    Args:
        model: Any ``nn.Module`` returning logits.
    """

    name = "gradients"

    def _fixed_target(self, images: Tensor, targets: TargetsLike) -> Target:
        with torch.no_grad():
            outputs = self.model(images)
        return resolve_target(targets, outputs)

    def _input_grad(self, x: Tensor, target: Target) -> Tensor:
        x = x.detach().requires_grad_(True)
        scores = self._score(self.model(x), target)
        (grad,) = torch.autograd.grad(scores.sum(), x)
        return grad

    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """``max_c |d score / d x_c|``."""
        target = self._fixed_target(images, targets)
        return self._input_grad(images, target).abs().amax(1)


class SmoothGrad(Gradients):
    """Mean absolute gradient over noisy copies of each image (Smilkov et al. 2017).

    Args:
        model: Any ``nn.Module`` returning logits.
        n_samples: Noisy copies per image (paper: 50; default 16 for speed).
        noise_level: Noise std as a fraction of each image's value range (paper: 0.1-0.2).
        seed: Seed of the generator that draws the noise (maps are reproducible).
    """

    name = "smoothgrad"

    def __init__(
        self, model: nn.Module, n_samples: int = 16, noise_level: float = 0.15, seed: int = 0
    ) -> None:
        super().__init__(model)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        if not noise_level >= 0:
            raise ValueError(f"noise_level must be >= 0, got {noise_level}")
        self.n_samples = n_samples
        self.noise_level = noise_level
        self.seed = seed

    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """``mean_n max_c |grad(x + eps_n)|`` with ``eps_n ~ N(0, (level * range)^2)``."""
        target = self._fixed_target(images, targets)
        gen = torch.Generator(device=images.device).manual_seed(self.seed)
        flat = images.flatten(1)
        std = self.noise_level * (flat.amax(1) - flat.amin(1)).view(-1, 1, 1, 1)
        total = torch.zeros(images.shape[0], *images.shape[-2:], device=images.device)
        for _ in range(self.n_samples):
            noise = torch.randn(images.shape, generator=gen, device=images.device) * std
            total += self._input_grad(images + noise, target).abs().amax(1)
        return total / self.n_samples


class IntegratedGradients(Gradients):
    """Integrated Gradients with a constant baseline and the midpoint Riemann rule.

    ``IG(x) = (x - x0) * mean_k grad(x0 + (k + 1/2)/m * (x - x0))``, summed over channels.

    Args:
        model: Any ``nn.Module`` returning logits.
        steps: Riemann steps ``m`` (paper: 20-300; default 32).
        baseline: Constant baseline value ``x0`` (default 0, a black image).
    """

    name = "integrated_gradients"

    def __init__(self, model: nn.Module, steps: int = 32, baseline: float = 0.0) -> None:
        super().__init__(model)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = steps
        self.baseline = float(baseline)

    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """Signed attribution ``(B, H, W)``; its sum approximates ``f(x) - f(x0)``."""
        target = self._fixed_target(images, targets)
        base = torch.full_like(images, self.baseline)
        delta = images - base
        total = torch.zeros_like(images)
        for k in range(self.steps):
            alpha = (k + 0.5) / self.steps
            total += self._input_grad(base + alpha * delta, target)
        return (delta * total / self.steps).sum(1)
