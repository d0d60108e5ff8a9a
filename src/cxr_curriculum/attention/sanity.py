"""Sanity check for saliency methods: cascading model-parameter randomisation.

Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018: re-initialise the
model's layers one after another from the top (logits) down and watch the maps. A
method that explains the *model* gives maps that decorrelate from the trained model's
(Spearman rank correlation falls towards 0); a method whose maps barely change is
showing image structure (edges), not what the model learned, and its lung-attention
score says little about the model.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cxr_curriculum.stats import mean_ci

from .base import eval_mode
from .masks import as_lung_masks
from .metrics import energy_in_mask
from .report import SanityReport
from .targets import TargetsLike, predicted_target

if TYPE_CHECKING:
    from .scorer import LungAttentionScorer

__all__ = ["cascading_randomization", "parameter_layers", "spearman"]


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Per-row Spearman rank correlation of ``(B, ...)`` maps (ties get average ranks).

    Returns:
        ``(B,)``; NaN where a map is constant.
    """
    ra, rb = _ranks(a.flatten(1)), _ranks(b.flatten(1))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    num = (ra * rb).sum(1)
    den = (ra.pow(2).sum(1) * rb.pow(2).sum(1)).sqrt()
    const = (a.flatten(1).amax(1) == a.flatten(1).amin(1)) | (
        b.flatten(1).amax(1) == b.flatten(1).amin(1)
    )
    return torch.where(const, torch.full_like(num, float("nan")), num / den).float()


def _ranks(x: Tensor) -> Tensor:
    """Average ranks (1-based) per row of ``(B, N)``, as ``scipy.stats.rankdata``."""
    out = torch.empty(x.shape, dtype=torch.float64)
    for i, row in enumerate(x.detach().cpu()):
        _, inverse, counts = torch.unique(row, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        out[i] = (ends - (counts.double() - 1) / 2)[inverse]
    return out


def parameter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules that own parameters, from the output end to the input end."""
    leaves = [
        (name, m)
        for name, m in model.named_modules()
        if not list(m.children()) and any(True for _ in m.parameters(recurse=False))
    ]
    return leaves[::-1]


def _reinitialise(module: nn.Module, gen: torch.Generator) -> None:
    reset = getattr(module, "reset_parameters", None)
    with torch.no_grad():
        if callable(reset):
            # reset_parameters uses the global RNG: fork it so the caller's stream is unchanged.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
                reset()
        else:
            for p in module.parameters(recurse=False):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)


def cascading_randomization(
    scorer: LungAttentionScorer,
    model: nn.Module,
    images: Tensor,
    targets: TargetsLike = None,
    masks: Tensor | None = None,
    max_steps: int = 6,
    seed: int = 0,
) -> SanityReport:
    """Randomise layers top-down on a copy of ``model`` and re-score the maps.

    Targets are fixed from the trained model (the predicted class if ``None``) so every
    step explains the same class. Layers are randomised one at a time, cumulatively;
    the maps are recorded after ``max_steps`` evenly spaced points of the cascade (always
    including the top layer alone and the whole network).

    Args:
        scorer: Gives the saliency method, batch size and bootstrap settings.
        model: The trained model (left unchanged; a deep copy is randomised).
        images: ``(B, 1, H, W)`` float.
        targets: What to explain.
        masks: Lung masks (as for :meth:`LungAttentionScorer.score`); predicted if ``None``.
        max_steps: Number of randomisation checkpoints (>= 1).
        seed: Seed of the re-initialisation.

    Returns:
        A :class:`~.report.SanityReport` whose step 0 is the trained model.
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if targets is None:
        with torch.no_grad(), eval_mode(model):
            outputs = [model(b) for b in images.split(scorer.batch_size)]
        targets = predicted_target(torch.cat(outputs))
    lungs = scorer.predict_masks(images)[0] if masks is None else as_lung_masks(masks)[0]
    both = lungs.any(1)
    randomised = copy.deepcopy(model)
    if isinstance(scorer.target_layer, nn.Module):
        # Map the layer onto the copy by name.
        names = {id(m): n for n, m in model.named_modules()}
        layer_name: Any = names[id(scorer.target_layer)]
    else:
        layer_name = scorer.target_layer
    layers = parameter_layers(randomised)
    if not layers:
        raise ValueError("model has no parameters to randomise")
    n_ckpt = min(max_steps, len(layers))
    checkpoints = {round(i * (len(layers) - 1) / max(n_ckpt - 1, 1)) for i in range(n_ckpt)}
    gen = torch.Generator().manual_seed(seed)

    def run(m: nn.Module) -> Tensor:
        saved = scorer.target_layer
        scorer.target_layer = layer_name
        try:
            return scorer.saliency(m, images, targets)
        finally:
            scorer.target_layer = saved

    reference = run(model)
    rows: list[dict[str, Any]] = [_row(0, "none (trained)", 0, reference, reference, both, scorer)]
    for i, (name, module) in enumerate(layers):
        _reinitialise(module, gen)
        if i in checkpoints:
            maps = run(randomised)
            rows.append(_row(len(rows), name, i + 1, maps, reference, both, scorer))
    meta = {"method": scorer.method, "n_layers": len(layers), "seed": seed, "n_images": len(images)}
    return SanityReport(rows, meta)


def _row(
    step: int, layer: str, n: int, maps: Tensor, ref: Tensor, both: Tensor, scorer: Any
) -> dict[str, Any]:
    boot = {"n_resamples": scorer.n_boot, "confidence": scorer.level, "seed": scorer.seed}
    rho = mean_ci(spearman(maps, ref), **boot)
    energy = mean_ci(energy_in_mask(maps, both), **boot)
    return {
        "step": step,
        "layer": layer,
        "n_randomised": n,
        "spearman": rho.estimate,
        "spearman_low": rho.low,
        "spearman_high": rho.high,
        "energy_in_mask": energy.estimate,
        "energy_low": energy.low,
        "energy_high": energy.high,
    }
