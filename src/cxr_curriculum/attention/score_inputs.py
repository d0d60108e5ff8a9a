"""The pieces of one scoring call, checked and made: the rows' identity columns, the
saliency maps (computed in batches, with what the report should know about them) and
the lung masks (predicted, or supplied and brought to the images' size).

:class:`~.scorer.LungAttentionScorer` calls these in :meth:`~.scorer.LungAttentionScorer.score`
and :meth:`~.scorer.LungAttentionScorer.score_dataset`; warnings name the caller of those
methods.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import SaliencyMethod, check_saliency
from .masks import supplied_masks
from .resolution import CoarseSaliencyWarning, coarse_map_message
from .targets import TargetsLike, slice_targets

__all__ = ["identity_columns", "image_size", "lung_masks", "saliency_in_batches"]

#: Predicted masks with per-image quality flags and reasons (``LungAttentionScorer.predict_masks``).
MaskPredictor = Callable[[Tensor], tuple[Tensor, list[bool | None], list[str]]]


def image_size(images: Tensor) -> tuple[int, int]:
    """``(H, W)`` of a ``(B, C, H, W)`` batch."""
    return int(images.shape[-2]), int(images.shape[-1])


def identity_columns(
    n: int,
    image_ids: Sequence[str] | None,
    patient_ids: Sequence[str] | None,
    labels: Sequence[int] | None,
) -> dict[str, list[Any]]:
    """The rows' ``image_id`` (default: the index), ``patient_id`` (default ``None``) and,
    with ``labels``, ``label`` columns for ``n`` images.

    Raises:
        ValueError: A sequence whose length is not ``n`` (named).
    """
    for name, seq in (("patient_ids", patient_ids), ("image_ids", image_ids), ("labels", labels)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{len(seq)} {name} for {n} images")
    columns: dict[str, list[Any]] = {
        "image_id": list(image_ids) if image_ids is not None else [str(i) for i in range(n)],
        "patient_id": list(patient_ids) if patient_ids is not None else [None] * n,
    }
    if labels is not None:
        columns["label"] = [int(y) for y in labels]
    return columns


def saliency_in_batches(
    explain: SaliencyMethod,
    model: nn.Module,
    images: Tensor,
    targets: TargetsLike,
    batch_size: int,
    method: str,
) -> tuple[Tensor, dict[str, Any]]:
    """``(B, H, W)`` maps of ``explain``, ``batch_size`` images at a time, checked, and what
    the report should know about them: ``warnings`` (the method's own, and a
    :class:`~.resolution.CoarseSaliencyWarning` for a CAM map too coarse for lung masks,
    each also warned), ``target_layer`` and ``map_size`` for layer methods."""
    chunks = []
    for start in range(0, images.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        chunks.append(explain(images[sl], slice_targets(targets, sl)))
    info: dict[str, Any] = {"warnings": list(getattr(explain, "warnings", []))}
    for message in info["warnings"]:
        warnings.warn(message, UserWarning, stacklevel=3)
    map_size = getattr(explain, "map_size", None)
    layer = getattr(explain, "layer_name", None)
    if map_size is not None and layer is not None:
        info.update(target_layer=layer, map_size=list(map_size))
        message = coarse_map_message(model, layer, map_size, images)
        if message is not None:
            warnings.warn(message, CoarseSaliencyWarning, stacklevel=3)
            info["warnings"].append(message)
    maps = check_saliency(torch.cat(chunks), images.shape[0], image_size(images), method)
    return maps, info


def lung_masks(
    masks: Any, images: Tensor, predict: MaskPredictor, info: dict[str, Any]
) -> tuple[Tensor, list[bool | None], list[str]]:
    """``(B, 2, H, W)`` lung masks with quality flags and reasons: ``predict(images)`` for
    ``masks=None``, else the supplied masks (:func:`~.masks.supplied_masks`).

    Records ``mask_source`` and ``lung_split`` in ``info``; masks resized to the images
    are warned about and the warning added to ``info["warnings"]``.
    """
    if masks is None:
        lungs, quality, reasons = predict(images)
        info.update(mask_source="predicted", lung_split="channels")
        return lungs, quality, reasons
    lungs, quality, reasons, about = supplied_masks(masks, images.shape[0], image_size(images))
    info.update(mask_source=about["mask_source"], lung_split=about["lung_split"])
    if about["warning"] is not None:
        warnings.warn(about["warning"], UserWarning, stacklevel=3)
        info["warnings"].append(about["warning"])
    return lungs, quality, reasons
