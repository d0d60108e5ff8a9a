"""Is the map faithful to the model? Deletion, insertion and ROAD, per image.

A map can sit inside the lungs and still not be what the model uses. These metrics
perturb the image in the map's order and watch the explained class's probability
(:class:`~.perturbation.ExplainedProbability`):

- **deletion** (Petsiuk et al., BMVC 2018): pixels are replaced by the baseline (a
  blurred copy by default, :func:`~.perturbation.baseline_images`) most salient first,
  ``steps`` equal shares at a time; the value is the area under the probability curve
  over the share removed (trapezoid rule on ``[0, 1]``). **Lower is more faithful.**
- **insertion**: the reverse, from the baseline, pixels of the image put back most
  salient first. **Higher is more faithful.**
- **road** (Rong et al., ICML 2022, remove and debias): at each percentile ``p`` the
  pixels above the map's ``p``-th percentile (MoRF) or below its ``(100 - p)``-th (LeRF)
  are filled by noisy linear imputation (:mod:`.imputation`); ``road_morf`` and
  ``road_lerf`` are the mean changes of the probability, and ``road = (road_lerf -
  road_morf) / 2`` as pytorch-grad-cam's ``ROADCombined``. **Higher is more faithful.**
  The count removed at ``p`` is what a threshold at ``numpy.percentile`` removes from a
  map without ties, ``N - ceil((N - 1) p / 100)``; ties are broken in a seeded random
  order (a threshold would remove every tied pixel at once).

Order: the positive part of the map (the package's sign rule), resized bilinearly to the
image; pixels without positive saliency are tied and come last, in a seeded random
order. A map without positive mass has no order: its values are NaN, as for the lung
metrics. ``lungs`` adds the lung-restricted effect of :mod:`.lung_effect`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import eval_mode
from .imputation import noisy_linear_impute
from .lung_effect import LUNG_EFFECT_COLUMNS, SALIENCY_FREE_COLUMNS, lung_effect
from .metrics import resize_saliency
from .perturbation import (
    ExplainedProbability,
    PerturbationSettings,
    baseline_images,
    curve_area,
    forward_scores,
    image_generator,
    region_curves,
    removal_ranks,
)
from .targets import TargetsLike, resolve_target

__all__ = [
    "FAITHFULNESS_COLUMNS",
    "FAITHFULNESS_METRICS",
    "check_faithfulness",
    "deletion_insertion",
    "faithfulness_metrics",
    "road",
]

#: Names accepted by ``LungAttentionScorer(faithfulness=...)``.
FAITHFULNESS_METRICS = ("deletion", "insertion", "road", "lungs")
#: The per-image report columns each name adds.
FAITHFULNESS_COLUMNS: dict[str, tuple[str, ...]] = {
    "deletion": ("deletion",),
    "insertion": ("insertion",),
    "road": ("road", "road_morf", "road_lerf"),
    "lungs": LUNG_EFFECT_COLUMNS,
}
_ROAD_SALT = 11


def check_faithfulness(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validate a list of faithfulness metric names (order kept, duplicates dropped)."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = (names,)
    out = tuple(dict.fromkeys(names))
    unknown = [n for n in out if n not in FAITHFULNESS_METRICS]
    if unknown:
        raise ValueError(
            f"unknown faithfulness metric(s) {unknown}; allowed: {list(FAITHFULNESS_METRICS)}"
        )
    return out


def deletion_insertion(
    model: nn.Module,
    images: Tensor,
    baseline: Tensor,
    saliency: Tensor,
    score: ExplainedProbability,
    clean: Tensor,
    settings: PerturbationSettings,
    batch_size: int,
    kinds: Sequence[str] = ("deletion", "insertion"),
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Deletion and insertion AUCs and curves.

    Args:
        model: The classifier.
        images: ``(B, C, H, W)``.
        baseline: ``(B, C, H, W)`` what removed pixels become.
        saliency: ``(B, H * W)`` positive part of the maps at the image size.
        score: The explained probability.
        clean: ``(B,)`` float64 scores of the clean images.
        settings: Steps and seed.
        batch_size: Copies per forward pass.
        kinds: Which curves: ``"deletion"`` (``steps`` forward passes per image),
            ``"insertion"`` (``steps + 1``: the baseline too).

    Returns:
        ``{"deletion": (B,), "insertion": (B,)}`` and the ``(B, steps + 1)`` curves.
    """
    n_pix = saliency.shape[1]
    ranks = removal_ranks(saliency, settings.seed)
    counts = torch.full((images.shape[0],), n_pix, dtype=torch.long)
    curves = {}
    if "deletion" in kinds:
        curves["deletion"] = region_curves(
            model, images, baseline, ranks, counts, clean, score, settings.steps, batch_size
        )
    if "insertion" in kinds:
        rows = torch.arange(images.shape[0])
        start = forward_scores(model, baseline, rows, score, batch_size)
        curves["insertion"] = region_curves(
            model, baseline, images, ranks, counts, start, score, settings.steps, batch_size
        )
    return {k: curve_area(v) for k, v in curves.items()}, curves


def road(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    score: ExplainedProbability,
    clean: Tensor,
    settings: PerturbationSettings,
    batch_size: int,
) -> dict[str, Tensor]:
    """ROAD (MoRF, LeRF and combined), averaged over ``settings.road_percentiles``.

    Args:
        model: The classifier.
        images: ``(B, C, H, W)``.
        saliency: ``(B, H * W)`` positive part of the maps at the image size.
        score: The explained probability.
        clean: ``(B,)`` float64 scores of the clean images.
        settings: Percentiles, noise and seed.
        batch_size: Copies per forward pass.

    Returns:
        ``road``, ``road_morf`` and ``road_lerf``, each ``(B,)`` float64.
    """
    n_img, n_pix = saliency.shape
    ranks = removal_ranks(saliency, settings.seed, _ROAD_SALT).cpu()
    copies, rows = [], []
    for i in range(n_img):
        for j, p in enumerate(settings.road_percentiles):
            keep = math.ceil(round((n_pix - 1) * p / 100, 9))
            morf = ranks[i] < n_pix - keep
            for kind, remove in enumerate((morf, ranks[i] >= keep)):
                gen = image_generator(settings.seed, i, 100 + 2 * j + kind)
                mask = remove.view(images.shape[-2:])
                copies.append(noisy_linear_impute(images[i], mask, settings.road_noise, gen))
                rows.append(i)
    scored = forward_scores(model, torch.stack(copies), torch.tensor(rows), score, batch_size).view(
        n_img, len(settings.road_percentiles), 2
    )
    change = scored - clean.cpu()[:, None, None]
    morf, lerf = change[..., 0].mean(1), change[..., 1].mean(1)
    return {"road": (lerf - morf) / 2, "road_morf": morf, "road_lerf": lerf}


def faithfulness_metrics(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    lungs: Tensor,
    targets: TargetsLike,
    names: Sequence[str],
    settings: PerturbationSettings,
    batch_size: int,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
    """Every asked-for faithfulness column, per image.

    Args:
        model: The classifier.
        images: ``(B, C, H, W)`` float in ``[0, 1]`` on the model's device.
        saliency: ``(B, h, w)`` maps (resized bilinearly to the image).
        lungs: ``(B, 2, H, W)`` or ``(B, H, W)`` bool masks at the image size.
        targets: What was explained (``None``: the predicted class, fixed on the clean
            images).
        names: Metrics of :data:`FAITHFULNESS_METRICS`.
        settings: See :class:`~.perturbation.PerturbationSettings`.
        batch_size: Images per forward pass.

    Returns:
        Columns (name -> ``(B,)`` float, NaN where undefined), curves (name ->
        ``(B, steps + 1)``) and a description for the report's ``meta``.
    """
    names = check_faithfulness(names)
    n = images.shape[0]
    with torch.no_grad(), eval_mode(model):
        outputs = torch.cat([model(images[i : i + batch_size]) for i in range(0, n, batch_size)])
    target = resolve_target(targets, outputs)
    score = ExplainedProbability(target, outputs, settings.output)
    clean = score(outputs, torch.arange(n)).cpu()
    base = baseline_images(images, settings)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    sal = resize_saliency(saliency.float(), size).clamp_min(0).flatten(1).to(images.device)
    empty = (sal.sum(1) <= 0).cpu()
    values: dict[str, Tensor] = {}
    curves: dict[str, Tensor] = {}
    kinds = [k for k in ("deletion", "insertion") if k in names]
    if kinds:
        aucs, di_curves = deletion_insertion(
            model, images, base, sal, score, clean, settings, batch_size, kinds
        )
        values.update(aucs)
        curves.update(di_curves)
    if "road" in names:
        values.update(road(model, images, sal, score, clean, settings, batch_size))
    if "lungs" in names:
        both = lungs.any(1) if lungs.ndim == 4 else lungs
        lung_values, lung_curves = lung_effect(
            model, images, base, both.to(images.device), sal, score, clean, settings, batch_size
        )
        values.update(lung_values)
        curves.update(lung_curves)
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    for key in list(values):
        values[key] = values[key].double().cpu()
        if key not in SALIENCY_FREE_COLUMNS:  # a map without positive mass has no order
            values[key] = torch.where(empty, nan, values[key])
    meta = {
        "metrics": list(names),
        "score": score.describe(),
        "settings": settings.to_dict(),
        "n_empty_maps": int(empty.sum()),
    }
    return values, curves, meta
