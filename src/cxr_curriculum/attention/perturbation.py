"""Shared parts of the perturbation metrics: settings, baselines, orders and scores.

Faithfulness (:mod:`.faithfulness`) and the lung-restricted effect (:mod:`.lung_effect`)
both replace pixels of an X-ray and watch the explained class's probability. This module
holds what they share:

- :class:`PerturbationSettings`: steps, baseline, output, ROAD percentiles and noise, seed;
- :func:`baseline_images`: what a removed pixel becomes (a Gaussian blur of the image by
  default, as RISE's insertion substrate; or the image mean, or black);
- :func:`removal_ranks`: each pixel's place in a removal order (most salient first; ties,
  including every pixel without positive saliency, in a seeded random order);
- :class:`ExplainedProbability`: the explained class's probability for perturbed copies
  of each image (softmax for class targets of multi-class models, sigmoid of the logit
  otherwise), and :func:`forward_scores`, which runs the copies through the model;
- :func:`region_curves`: the score as ranked pixels are swapped in ``steps`` equal
  shares, and :func:`curve_area`, the trapezoid area under such a curve.

References:
    Petsiuk, Das & Saenko, "RISE: randomized input sampling for explanation of black-box
    models", BMVC 2018 (deletion and insertion, blurred substrate).
    Rong et al., "A consistent and efficient evaluation strategy for attribution
    methods", ICML 2022 (ROAD).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from .base import eval_mode
from .targets import BinaryLogitTarget, ClassTarget, Target

__all__ = [
    "BASELINES",
    "OUTPUTS",
    "ExplainedProbability",
    "PerturbationSettings",
    "baseline_images",
    "curve_area",
    "forward_scores",
    "image_generator",
    "region_curves",
    "removal_ranks",
]

#: What removed pixels become.
BASELINES = ("blur", "mean", "zero")
#: How the explained class's score is read from the model's outputs.
OUTPUTS = ("auto", "softmax", "sigmoid", "logit")


@dataclass(frozen=True)
class PerturbationSettings:
    """Settings of the perturbation metrics (deletion, insertion, ROAD, lung effect).

    Attributes:
        steps: Points of each curve after the start (deletion/insertion: the share of
            pixels removed or inserted goes 0, 1/steps, ..., 1; lung effect: the same
            over the matched pixel count). Each step is one forward pass per image.
        baseline: What a removed pixel becomes: ``"blur"`` (the image blurred with a
            Gaussian of ``blur_sigma`` times its shorter side; RISE's insertion
            substrate), ``"mean"`` (the image's mean) or ``"zero"`` (black).
        blur_sigma: Gaussian sigma as a fraction of the shorter image side (0.05: 3.2
            px at 64 px, 11 px at 224 px; kernel truncated at 3 sigma, reflected edges).
        output: The explained score: ``"auto"`` (softmax probability of the class for
            class targets of models with several outputs, sigmoid of the logit
            otherwise), ``"softmax"``, ``"sigmoid"`` (multi-label models) or ``"logit"``.
        road_percentiles: ROAD's percentiles ``p``: at each, the pixels above the
            ``p``-th percentile of the map (MoRF) or below the ``(100 - p)``-th (LeRF)
            are imputed, as in pytorch-grad-cam's ``ROADCombined``.
        road_noise: Standard deviation of the noise added to imputed pixels (ROAD's
            noisy linear imputation; 0.01 as in the paper's code).
        seed: Seed of the tie-breaking orders, the random orders and the ROAD noise
            (each image draws from its own generator, so results do not depend on the
            batch size).
    """

    steps: int = 16
    baseline: str = "blur"
    blur_sigma: float = 0.05
    output: str = "auto"
    road_percentiles: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    road_noise: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {self.steps!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if not 0 < self.blur_sigma <= 1:
            raise ValueError(f"blur_sigma must be in (0, 1] (of the side), got {self.blur_sigma}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        percentiles = tuple(self.road_percentiles)
        if not percentiles or any(not 0 < p < 100 for p in percentiles):
            raise ValueError(
                f"road_percentiles must be numbers strictly between 0 and 100, got {percentiles}"
            )
        object.__setattr__(self, "road_percentiles", percentiles)
        if not self.road_noise >= 0:
            raise ValueError(f"road_noise must be >= 0, got {self.road_noise}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        out = asdict(self)
        out["road_percentiles"] = list(self.road_percentiles)
        return out


def baseline_images(images: Tensor, settings: PerturbationSettings) -> Tensor:
    """What removed pixels become: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
    if settings.baseline == "zero":
        return torch.zeros_like(images)
    if settings.baseline == "mean":
        return images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images).clone()
    sigma = settings.blur_sigma * min(images.shape[-2:])
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, min(images.shape[-2:]) - 1)  # reflect padding needs pad < side
    if radius < 1:
        return images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images).clone()
    size = 2 * radius + 1
    return gaussian_blur(images, [size, size], [sigma, sigma])


def image_generator(seed: int, index: int, salt: int = 0) -> torch.Generator:
    """A CPU generator for one image (seeded by the settings' seed, the image's index in
    the batch and a salt per use), so that results do not depend on the batch size.

    The generator's seed is a 63-bit BLAKE2b hash of ``(seed, index, salt)``, so no image
    shares a stream with another image's use of another salt, whatever the salts (two
    triples collide only by chance, with probability about ``2**-63``).
    """
    key = f"{int(seed)},{int(index)},{int(salt)}".encode()
    digest = hashlib.blake2b(key, digest_size=8, person=b"cxr-image-gen").digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)


def removal_ranks(scores: Tensor, seed: int, salt: int = 0) -> Tensor:
    """Each pixel's place in the removal order, most salient first.

    Args:
        scores: ``(B, N)`` float; higher is removed earlier. ``-inf`` marks pixels that
            are never to be removed (they come last). Ties are broken by a seeded random
            permutation per image.
        seed: Seed of the tie-breaking (see :func:`image_generator`).
        salt: Distinguishes independent orders drawn with one seed.

    Returns:
        ``(B, N)`` long: 0 for the first pixel removed.
    """
    ranks = torch.empty(scores.shape, dtype=torch.long)
    for i, row in enumerate(scores.detach().cpu()):
        perm = torch.randperm(row.numel(), generator=image_generator(seed, i, salt))
        order = perm[torch.sort(row[perm], descending=True, stable=True).indices]
        ranks[i, order] = torch.arange(row.numel())
    return ranks.to(scores.device)


class ExplainedProbability:
    """The explained class's score for perturbed copies of a batch of images.

    Args:
        target: The resolved target of the clean batch (one class per image, a sign per
            image for a single-logit model, or a callable that works on any batch).
        outputs: The model's outputs ``(B, K)`` or ``(B,)`` for the clean batch.
        mode: One of :data:`OUTPUTS`.

    Raises:
        ValueError: ``"softmax"`` for a callable target (its class is unknown); a class
            target whose class names do not match the model's outputs, or whose index is
            out of range.
    """

    def __init__(self, target: Target, outputs: Tensor, mode: str = "auto") -> None:
        out = outputs[:, None] if outputs.ndim == 1 else outputs
        n = out.shape[0]
        self.target = target
        self.k: Tensor | None = None
        self.sign: Tensor | None = None
        if isinstance(target, ClassTarget):
            target(out)  # its checks: the model's output count (class names), the range
            self.k = target.k.expand(n) if target.k.ndim == 0 else target.k
        elif isinstance(target, BinaryLogitTarget):
            self.sign = target.sign.expand(n) if target.sign.ndim == 0 else target.sign
        if mode == "auto":
            mode = "softmax" if self.k is not None and out.shape[1] > 1 else "sigmoid"
        if mode == "softmax" and self.k is None and self.sign is None:
            raise ValueError(
                "output='softmax' needs class-index targets; for a callable target use "
                "output='sigmoid' or 'logit'"
            )
        self.mode = mode

    def describe(self) -> str:
        """What the score is, for reports."""
        return {
            "softmax": "softmax probability of the explained class",
            "sigmoid": "sigmoid of the explained logit",
            "logit": "the explained logit",
        }[self.mode]

    def __call__(self, outputs: Tensor, rows: Tensor) -> Tensor:
        """Scores ``(M,)`` float64 of outputs ``(M, K)`` of copies of images ``rows (M,)``."""
        out = (outputs[:, None] if outputs.ndim == 1 else outputs).double()
        rows = rows.to(out.device)
        if self.k is not None:
            k = self.k.to(out.device)[rows][:, None]
            if self.mode == "softmax":
                return out.softmax(1).gather(1, k)[:, 0]
            logit = out.gather(1, k)[:, 0]
        elif self.sign is not None:
            logit = out[:, 0] * self.sign.to(out.device, out.dtype)[rows]
            if self.mode == "softmax":  # the class probability of a single-logit model
                return torch.sigmoid(logit)
        else:
            logit = self.target(out).double()
        return torch.sigmoid(logit) if self.mode == "sigmoid" else logit


@torch.no_grad()
def forward_scores(
    model: nn.Module, images: Tensor, rows: Tensor, score: ExplainedProbability, batch_size: int
) -> Tensor:
    """``score`` of ``model(images)``, ``batch_size`` copies at a time: ``(M,)`` float64.

    Args:
        model: The classifier (run in eval mode without gradients).
        images: ``(M, C, H, W)`` perturbed copies.
        rows: ``(M,)`` long: the batch image each copy comes from.
        score: Reads the explained score from the outputs.
        batch_size: Copies per forward pass.
    """
    parts = []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            parts.append(score(model(images[sl]), rows[sl]).cpu())
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def region_curves(
    model: nn.Module,
    start: Tensor,
    fill: Tensor,
    ranks: Tensor,
    counts: Tensor,
    start_score: Tensor,
    score: ExplainedProbability,
    steps: int,
    batch_size: int,
) -> Tensor:
    """Scores as the first ranked pixels of ``start`` are replaced by ``fill``'s.

    At step ``t`` (``1..steps``) the pixels ranked below ``round(t * counts / steps)``
    (half rounded up) come from ``fill``, the others from ``start``. Deletion is
    ``start = image, fill = baseline``; insertion is the reverse.

    Args:
        model: The classifier.
        start: ``(B, C, H, W)`` images at step 0.
        fill: ``(B, C, H, W)`` what the swapped pixels become.
        ranks: ``(B, H * W)`` long, from :func:`removal_ranks`.
        counts: ``(B,)`` long: pixels swapped at the last step.
        start_score: ``(B,)`` scores of ``start`` (step 0, not recomputed).
        score: The explained probability.
        steps: Steps after the start.
        batch_size: Images per chunk (each gives ``steps`` copies).

    Returns:
        ``(B, steps + 1)`` float64 on the CPU.
    """
    n, height, width = start.shape[0], start.shape[-2], start.shape[-1]
    curve = torch.empty(n, steps + 1, dtype=torch.float64)
    curve[:, 0] = start_score.cpu()
    t = torch.arange(1, steps + 1, device=start.device)
    for lo in range(0, n, batch_size):
        sl = slice(lo, lo + batch_size)
        b = start[sl].shape[0]
        swapped = (t[None, :] * counts[sl, None].to(start.device) * 2 + steps) // (2 * steps)
        chosen = ranks[sl].to(start.device).view(b, 1, 1, height, width) < swapped.view(
            b, steps, 1, 1, 1
        )
        copies = torch.where(chosen, fill[sl, None], start[sl, None]).flatten(0, 1)
        rows = torch.arange(lo, lo + b).repeat_interleave(steps)
        curve[sl, 1:] = forward_scores(model, copies, rows, score, batch_size).view(b, steps)
    return curve


def curve_area(curve: Tensor) -> Tensor:
    """Trapezoid area of ``(B, T + 1)`` curves over ``[0, 1]`` (equal steps): ``(B,)``."""
    steps = curve.shape[1] - 1
    return (curve.sum(1) - (curve[:, 0] + curve[:, -1]) / 2) / steps
