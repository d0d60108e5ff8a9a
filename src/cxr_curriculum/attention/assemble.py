"""Turn saliency maps and lung masks into an :class:`~.report.AttentionReport`.

One row per image (identity columns, every metric of :func:`~.metrics.lung_metrics`,
the empty-map flag and the segmenter's quality verdict), the aggregates over the
counted rows (:func:`~.report.aggregate_metrics`) and the metadata that says how the
scores were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from .faithfulness import faithfulness_metrics
from .metrics import empty_saliency, lung_metrics
from .perturbation import PerturbationSettings
from .report import AttentionReport, aggregate_metrics
from .targets import TargetsLike

__all__ = ["FaithfulnessRun", "build_report"]


@dataclass(frozen=True)
class FaithfulnessRun:
    """What :func:`build_report` needs to add faithfulness columns
    (:func:`~.faithfulness.faithfulness_metrics`)."""

    model: nn.Module
    targets: TargetsLike
    names: Sequence[str]
    settings: PerturbationSettings
    batch_size: int


def build_report(
    images: Tensor,
    saliency: Tensor,
    lungs: Tensor,
    quality: list[bool | None],
    reasons: list[str],
    columns: dict[str, list[Any]],
    info: dict[str, Any],
    settings: dict[str, Any],
    keep_maps: bool = True,
    faithfulness: FaithfulnessRun | None = None,
) -> AttentionReport:
    """Score ``saliency`` against ``lungs`` and assemble the report.

    Args:
        images: ``(B, 1, H, W)`` images scored (kept for pictures).
        saliency: ``(B, h, w)`` maps.
        lungs: ``(B, 2, H, W)`` bool masks (right lung, left lung).
        quality: The segmenter's verdict per image (``None`` for supplied masks).
        reasons: Failed quality checks per image.
        columns: Identity columns, each one value per image; must hold ``image_id``
            and ``patient_id`` (``None`` values when unknown).
        info: Metadata of the run (method, target, layer, warnings, mask source, ...).
        settings: ``n_boot``, ``level``, ``seed`` and ``exclude_flagged``.
        keep_maps: Keep maps and masks on the report for plotting.
        faithfulness: Adds the faithfulness columns (aggregated like the lung metrics),
            ``meta["faithfulness"]`` and, with ``keep_maps``, the report's ``curves``.
    """
    extra: dict[str, Tensor] = {}
    curves: dict[str, Tensor] = {}
    if faithfulness is not None:
        f = faithfulness
        extra, curves, info["faithfulness"] = faithfulness_metrics(
            f.model, images, saliency, lungs.to(images.device), f.targets, f.names, f.settings,
            f.batch_size,
        )  # fmt: skip
    saliency = saliency.detach().float().cpu()
    values = {**lung_metrics(saliency, lungs.cpu()), **extra}
    empty = empty_saliency(saliency)
    rows = []
    for i in range(saliency.shape[0]):
        row: dict[str, Any] = {key: col[i] for key, col in columns.items()}
        row.update({k: float(v[i]) for k, v in values.items()})
        row.update(
            saliency_empty=bool(empty[i]),
            seg_quality_ok=quality[i],
            seg_quality_reasons=reasons[i],
            mask_source=info["mask_source"],
        )
        rows.append(row)
    meta = {
        **info,
        "interpolation": "bilinear, align_corners=False (saliency resized to the mask)",
        "sign_rule": "positive part",
        **settings,
        "bootstrap_unit": "image" if rows[0]["patient_id"] is None else "patient",
        "n_flagged_masks": sum(q is False for q in quality),
    }
    report = AttentionReport(rows, {}, meta)
    if keep_maps:
        report.saliency, report.masks, report.images = saliency, lungs.cpu(), images.cpu()
        report.curves = curves
    report.aggregate = aggregate_metrics(rows, list(values), report.counted, meta)
    return report
