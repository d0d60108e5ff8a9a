"""How much of the decision rests inside the lungs? Lung-restricted perturbation.

The lung metrics (:mod:`.metrics`) ask where a *saliency map* puts its mass; this asks
the *model*: remove pixels only inside the lungs, or only outside them, and compare the
drop of the explained class's probability (:class:`~.perturbation.ExplainedProbability`).
The question of the paper's second claim (arXiv 2301.10687: better models put more
attention inside the lungs) then does not depend on any saliency method.

**The area confound.** The lungs cover about a third of a frontal film (0.30-0.35 in
this package's measurements), the outside about two thirds. Removing each region whole
removes twice as many pixels outside, so the outside "matters more" whatever the model
does; dividing a drop by the area assumes the drop grows linearly with the area removed,
which it does not (it saturates). The headline statistic therefore **matches the pixel
count**: in each region the same number ``n = min(|lungs|, |outside|)`` of pixels is
removed, in ``steps`` equal shares, and the statistic is the area under the drop curve:

- ``lung_drop``, ``outside_drop``: mean drop ``p(x) - p(x with k pixels of the region
  replaced by the baseline)`` over ``k = 0, n/steps, ..., n`` (trapezoid rule), the
  pixels taken in a **seeded random order** within the region (no saliency method);
- ``lung_effect = lung_drop - outside_drop``: positive when the same number of removed
  pixels lowers the probability more inside the lungs than outside. This is the
  per-image value for intervals and paired comparisons between models;
- ``lung_drop_salient``, ``outside_drop_salient``, ``lung_effect_salient``: the same with
  the pixels of each region taken in the map's order (most salient first; NaN for a map
  without positive mass): the lung-restricted deletion curves;
- ``lung_drop_whole``, ``outside_drop_whole``: the drop when each region is replaced
  whole at once (not matched in area; shown for reference).

Images whose masks leave one region empty get NaN. The baseline
(:func:`~.perturbation.baseline_images`, a blur by default) is the same in both
regions; where a region is smooth (the lung fields) a blur changes it less than where
it has edges (ribs, borders, text), which is a residual confound of any baseline to keep
in mind when reading small effects.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .perturbation import (
    ExplainedProbability,
    PerturbationSettings,
    curve_area,
    forward_scores,
    region_curves,
    removal_ranks,
)

__all__ = ["LUNG_EFFECT_COLUMNS", "SALIENCY_FREE_COLUMNS", "lung_effect"]

#: Per-image columns of the lung-restricted effect (``faithfulness=("lungs",)``).
LUNG_EFFECT_COLUMNS = (
    "lung_effect",
    "lung_drop",
    "outside_drop",
    "lung_effect_salient",
    "lung_drop_salient",
    "outside_drop_salient",
    "lung_drop_whole",
    "outside_drop_whole",
)
#: Columns that need no saliency map (defined also for maps without positive mass).
SALIENCY_FREE_COLUMNS = frozenset(
    {"lung_effect", "lung_drop", "outside_drop", "lung_drop_whole", "outside_drop_whole"}
)


def lung_effect(
    model: nn.Module,
    images: Tensor,
    baseline: Tensor,
    lungs: Tensor,
    saliency: Tensor | None,
    score: ExplainedProbability,
    clean: Tensor,
    settings: PerturbationSettings,
    batch_size: int,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Lung-restricted and outside-restricted perturbation, matched in pixel count.

    Args:
        model: The classifier.
        images: ``(B, C, H, W)``.
        baseline: ``(B, C, H, W)`` what removed pixels become.
        lungs: ``(B, H, W)`` bool, both lungs, at the image size.
        saliency: ``(B, H * W)`` positive part of the maps, or ``None`` (no salient
            columns).
        score: The explained probability.
        clean: ``(B,)`` float64 scores of the clean images.
        settings: Steps and seed.
        batch_size: Copies per forward pass.

    Returns:
        The columns of :data:`LUNG_EFFECT_COLUMNS` (``(B,)`` float64, NaN where a
        region is empty) and the ``(B, steps + 1)`` score curves by region and order.
    """
    n_img = images.shape[0]
    inside = lungs.flatten(1).to(images.device)
    area = inside.sum(1).cpu()
    matched = torch.minimum(area, inside.shape[1] - area)
    values: dict[str, Tensor] = {}
    curves: dict[str, Tensor] = {}
    rows = torch.arange(n_img)
    neg = torch.tensor(float("-inf"), device=images.device)
    orders = {"": torch.zeros_like(inside, dtype=torch.float32)}
    if saliency is not None:
        orders["_salient"] = saliency.float()
    for salt, (name, region) in enumerate((("lung", inside), ("outside", ~inside))):
        for j, (suffix, keys) in enumerate(orders.items()):
            ranks = removal_ranks(torch.where(region, keys, neg), settings.seed, 1 + 2 * salt + j)
            curve = region_curves(model, images, baseline, ranks, matched, clean, score,
                                  settings.steps, batch_size)  # fmt: skip
            curves[f"{name}{suffix}"] = curve
            values[f"{name}_drop{suffix}"] = curve_area(clean[:, None] - curve)
        whole = torch.where(region.view(n_img, 1, *images.shape[-2:]), baseline, images)
        values[f"{name}_drop_whole"] = clean - forward_scores(model, whole, rows, score, batch_size)
    for suffix in orders:
        values[f"lung_effect{suffix}"] = (
            values[f"lung_drop{suffix}"] - values[f"outside_drop{suffix}"]
        )
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    empty = matched == 0
    out = {
        k: torch.where(empty, nan, values[k].double()) for k in LUNG_EFFECT_COLUMNS if k in values
    }
    return out, curves
