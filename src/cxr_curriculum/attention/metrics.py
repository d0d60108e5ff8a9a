"""Lung-attention metrics: pure functions of a saliency map and a lung mask.

Every metric takes ``saliency`` ``(B, h, w)`` float and ``mask`` ``(B, H, W)`` bool and
returns a ``(B,)`` float tensor. Rules:

- A saliency map whose size differs from the mask's is resized to ``(H, W)`` with
  bilinear interpolation (``align_corners=False``) *before* anything else.
- Only the positive part ``A+ = max(A, 0)`` counts; maps are never min-max normalised
  (that would add a constant mass everywhere and change the answer). All metrics are
  invariant to multiplying ``A`` by a positive number.
- A map with no positive mass (``sum A+ = 0``, see :func:`empty_saliency`) gives NaN,
  never 0 or 1; so does an empty mask where the metric divides by its area.

References:
    Wang et al., "Score-CAM", CVPR-W 2020 (energy-based pointing game).
    Arras, Osman & Samek, "CLEVR-XAI", Information Fusion 2022 (relevance mass and
    relevance rank accuracy).
    Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016
    (pointing game).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "METRIC_COLUMNS",
    "area_fraction",
    "empty_saliency",
    "energy_in_mask",
    "lift",
    "lung_metrics",
    "pointing_game",
    "rank_accuracy",
    "resize_saliency",
]


#: Numeric per-image columns that get a bootstrap CI in the aggregate.
METRIC_COLUMNS: tuple[str, ...] = (
    "energy_in_mask",
    "lift",
    "pointing_game",
    "rank_accuracy",
    "area_fraction",
    "energy_right",
    "energy_left",
    "lift_right",
    "lift_left",
    "pointing_right",
    "pointing_left",
    "rank_accuracy_right",
    "rank_accuracy_left",
    "area_right",
    "area_left",
)


def _check_mask(mask: Tensor) -> Tensor:
    if not isinstance(mask, Tensor) or mask.ndim != 3 or mask.dtype != torch.bool:
        desc = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask)
        raise ValueError(f"mask must be a (B, H, W) bool tensor, got {desc}")
    return mask


def resize_saliency(saliency: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(B, h, w)`` maps to ``size`` with bilinear interpolation (no-op if equal)."""
    if not isinstance(saliency, Tensor) or saliency.ndim != 3 or not saliency.is_floating_point():
        desc = f"{saliency.dtype} {tuple(saliency.shape)}" if isinstance(saliency, Tensor) else ""
        raise ValueError(f"saliency must be a (B, H, W) float tensor, got {desc or type(saliency)}")
    if tuple(saliency.shape[-2:]) == tuple(size):
        return saliency
    return F.interpolate(saliency[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _prepare(saliency: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Return the flattened positive part ``(B, N)`` (float64) and mask ``(B, N)``."""
    _check_mask(mask)
    s = resize_saliency(saliency, (mask.shape[1], mask.shape[2]))
    if s.shape[0] != mask.shape[0]:
        raise ValueError(f"batch sizes differ: saliency {s.shape[0]}, mask {mask.shape[0]}")
    pos = s.detach().to(torch.float64).clamp_min(0).flatten(1)
    return pos, mask.to(pos.device).flatten(1)


def empty_saliency(saliency: Tensor) -> Tensor:
    """``(B,)`` bool flag: the map has no positive mass (every metric is NaN for it)."""
    if not isinstance(saliency, Tensor) or saliency.ndim != 3:
        raise ValueError("saliency must be a (B, H, W) tensor")
    return saliency.detach().clamp_min(0).flatten(1).sum(1) <= 0


def _nan_where(values: Tensor, bad: Tensor) -> Tensor:
    return torch.where(bad, torch.full_like(values, float("nan")), values).float()


def energy_in_mask(saliency: Tensor, mask: Tensor) -> Tensor:
    """Share of positive saliency inside the mask: ``sum(A+ * M) / sum(A+)``.

    Args:
        saliency: ``(B, h, w)`` float maps.
        mask: ``(B, H, W)`` bool lung mask.

    Returns:
        ``(B,)`` values in ``[0, 1]``; NaN for maps without positive mass.
    """
    pos, m = _prepare(saliency, mask)
    total = pos.sum(1)
    inside = (pos * m).sum(1)
    return _nan_where(inside / total.clamp_min(1e-300), total <= 0)


def area_fraction(mask: Tensor) -> Tensor:
    """Share of the image covered by the mask, ``|M| / N``: ``(B, H, W)`` bool -> ``(B,)``."""
    return _check_mask(mask).flatten(1).float().mean(1)


def lift(saliency: Tensor, mask: Tensor) -> Tensor:
    """Energy in the mask divided by its area fraction (1.0 is chance, a uniform map).

    Returns:
        ``(B,)``; NaN for maps without positive mass or empty masks.
    """
    area = area_fraction(mask).to(torch.float64)
    energy = energy_in_mask(saliency, mask).to(torch.float64)
    return _nan_where(
        energy / area.clamp_min(1e-300).to(energy.device), area.to(energy.device) <= 0
    )


def pointing_game(saliency: Tensor, mask: Tensor) -> Tensor:
    """Pointing-game hit: is the maximum of the map inside the mask?

    Ties at the maximum are shared: the value is the fraction of maximal pixels inside the
    mask (0 or 1 when the maximum is unique; the area fraction for a uniform map).

    Returns:
        ``(B,)`` in ``[0, 1]``; NaN for maps without positive mass.
    """
    pos, m = _prepare(saliency, mask)
    top = pos == pos.amax(1, keepdim=True)
    hits = (top & m).sum(1).double() / top.sum(1).double()
    return _nan_where(hits, pos.sum(1) <= 0)


def rank_accuracy(saliency: Tensor, mask: Tensor) -> Tensor:
    """Relevance rank accuracy: share of the top-``|M|`` pixels of ``A+`` inside ``M``.

    Pixels tied at the ``|M|``-th value are counted in expectation (a uniform map scores
    the area fraction), so the result does not depend on the sort order of ties.

    Returns:
        ``(B,)`` in ``[0, 1]``; NaN for maps without positive mass or empty masks.
    """
    pos, m = _prepare(saliency, mask)
    k = m.sum(1)
    ordered = pos.sort(1, descending=True).values
    thresh = ordered.gather(1, (k - 1).clamp_min(0)[:, None])
    above = pos > thresh
    tied = pos == thresh
    n_above = above.sum(1).double()
    tied_in = (tied & m).sum(1).double()
    share = tied_in / tied.sum(1).double().clamp_min(1)
    hits = (above & m).sum(1).double() + (k.double() - n_above) * share
    return _nan_where(hits / k.double().clamp_min(1), (pos.sum(1) <= 0) | (k == 0))


def lung_metrics(saliency: Tensor, lung_masks: Tensor) -> dict[str, Tensor]:
    """All metrics for both lungs together and for each lung.

    Args:
        saliency: ``(B, h, w)`` float maps (resized bilinearly to the masks).
        lung_masks: ``(B, 2, H, W)`` bool, channel 0 right lung, channel 1 left lung.

    Returns:
        Column name (:data:`METRIC_COLUMNS`) -> ``(B,)`` float tensor.
    """
    both = lung_masks.any(1)
    out = {
        "energy_in_mask": energy_in_mask(saliency, both),
        "lift": lift(saliency, both),
        "pointing_game": pointing_game(saliency, both),
        "rank_accuracy": rank_accuracy(saliency, both),
        "area_fraction": area_fraction(both),
    }
    for side, ch in (("right", 0), ("left", 1)):
        m = lung_masks[:, ch]
        out[f"energy_{side}"] = energy_in_mask(saliency, m)
        out[f"lift_{side}"] = lift(saliency, m)
        out[f"pointing_{side}"] = pointing_game(saliency, m)
        out[f"rank_accuracy_{side}"] = rank_accuracy(saliency, m)
        out[f"area_{side}"] = area_fraction(m)
    return {k: out[k].cpu() for k in METRIC_COLUMNS}
