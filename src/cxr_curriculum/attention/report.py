"""Reports of lung-attention scores: per-image rows, aggregates, summaries, CSV and JSON."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.stats import ConfidenceInterval, mean_ci

from .dataset import take_in_turn
from .report_io import json_safe, write_csv, write_json
from .sanity_report import SanityReport

__all__ = ["AttentionReport", "SanityReport", "aggregate_metrics"]

_LIST_FAILED = 5  # failed images named in a summary
#: Metrics shown by :meth:`AttentionReport.summary`.
SUMMARY_METRICS = ("energy_in_mask", "lift", "pointing_game", "rank_accuracy", "area_fraction")
#: Faithfulness columns shown by :meth:`AttentionReport.summary` when present, with what
#: their direction means.
SUMMARY_FAITHFULNESS = {
    "deletion": "lower = more faithful",
    "insertion": "higher = more faithful",
    "road": "higher = more faithful",
    "lung_drop": "drop, lung pixels removed",
    "outside_drop": "drop, as many outside pixels",
    "lung_effect": "> 0: decision rests more in the lungs",
    "lung_effect_salient": "the same, salient pixels first",
}


def balanced_order(labels: list[Any], n: int) -> list[int]:
    """Indices of ``n`` rows with the classes taking turns (each class's rows in order),
    returned grouped by class: ``n / K`` per class, or all a class has when it has
    fewer (the others fill the gap). Rows without a label count as one class."""
    by_class: dict[Any, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    classes = sorted(by_class, key=lambda k: (k is None, str(k)))
    picked = take_in_turn([by_class[k] for k in classes], n)
    rank = {k: j for j, k in enumerate(classes)}
    return sorted(picked, key=lambda i: (rank[labels[i]], i))


def aggregate_metrics(
    rows: list[dict[str, Any]],
    metrics: list[str] | tuple[str, ...],
    counted: Tensor,
    settings: dict[str, Any],
) -> dict[str, ConfidenceInterval]:
    """Mean and patient-bootstrap CI of each metric over the ``counted`` rows.

    Args:
        rows: Per-image rows holding the metrics and ``patient_id``.
        metrics: Columns to aggregate.
        counted: ``(N,)`` bool; rows left out are treated as NaN (dropped, counted in
            ``n_nan``).
        settings: ``n_boot``, ``level`` and ``seed`` of the bootstrap.
    """
    ids = [r["patient_id"] for r in rows]
    clusters = None if any(i is None for i in ids) else [str(i) for i in ids]
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    out = {}
    for name in metrics:
        values = torch.tensor([float(r[name]) for r in rows], dtype=torch.float64)
        out[name] = mean_ci(
            torch.where(counted, values, nan),
            clusters,
            n_resamples=settings["n_boot"],
            confidence=settings["level"],
            seed=settings.get("seed", 0),
        )
    return out


def _title(row: dict[str, Any]) -> str:
    """Default picture title of a report row."""
    parts = [f"y={row['label']}"] if row.get("label") is not None else []
    parts.append(f"lift {row['lift']:.2f}")
    if row["seg_quality_ok"] is False:
        parts.append("QC failed")
    return f"{row['image_id']}\n{' '.join(parts)}"


@dataclass
class AttentionReport:
    """Result of :meth:`LungAttentionScorer.score`.

    Attributes:
        rows: One dict per image: every metric of :data:`METRIC_COLUMNS`, ``image_id``,
            ``patient_id``, ``saliency_empty`` (the map had no positive mass, metrics NaN),
            ``seg_quality_ok`` (the segmenter's verdict, ``None`` for supplied masks),
            ``seg_quality_reasons`` and ``mask_source`` (``"supplied"`` or ``"predicted"``).
        aggregate: Metric -> mean with bootstrap CI (by patient where ids were given).
        meta: Method, interpolation, lung split, bootstrap settings.
        saliency: ``(B, H, W)`` maps (kept for plots unless ``keep_maps=False``).
        masks: ``(B, 2, H, W)`` bool lung masks used.
        images: ``(B, 1, H, W)`` images scored (kept with the maps), for pictures.
        curves: ``(B, steps + 1)`` score curves of the perturbation metrics (deletion,
            insertion, per region of the lung effect), kept with the maps.
    """

    rows: list[dict[str, Any]]
    aggregate: dict[str, ConfidenceInterval]
    meta: dict[str, Any] = field(default_factory=dict)
    saliency: Tensor | None = None
    masks: Tensor | None = None
    images: Tensor | None = None
    curves: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> Tensor:
        """``(N,)`` float64 tensor of a numeric column (NaN kept)."""
        if not self.rows or name not in self.rows[0]:
            raise ValueError(
                f"unknown column {name!r}; have {list(self.rows[0]) if self.rows else []}"
            )
        return torch.tensor([float(r[name]) for r in self.rows], dtype=torch.float64)

    @property
    def patient_ids(self) -> list[str] | None:
        """Per-image patient ids, or ``None`` if they were not given."""
        ids = [r["patient_id"] for r in self.rows]
        return None if any(i is None for i in ids) else [str(i) for i in ids]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``meta``, ``aggregate`` and ``rows`` (NaN written as ``null``)."""
        agg = {k: v.to_dict() for k, v in self.aggregate.items()}
        return json_safe({"meta": self.meta, "aggregate": agg, "rows": self.rows})

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as strict JSON."""
        write_json(path, self.to_dict())

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the per-image rows as CSV (one line per image)."""
        write_csv(path, self.rows)

    @property
    def counted(self) -> Tensor:
        """``(N,)`` bool: rows that enter the aggregates (all, unless masks that failed
        the quality check are excluded)."""
        exclude = bool(self.meta.get("exclude_flagged", False))
        return torch.tensor([not (exclude and r["seg_quality_ok"] is False) for r in self.rows])

    @property
    def n_failed_qc(self) -> int:
        """Images whose predicted lung mask failed the segmenter's quality check."""
        return sum(r["seg_quality_ok"] is False for r in self.rows)

    def qc_line(self) -> str:
        """One line on the mask quality check: ``"mask QC: 6 of 32 failed (excluded: no)"``."""
        flags = [r["seg_quality_ok"] for r in self.rows]
        if all(f is None for f in flags):
            source = self.meta.get("mask_source", "supplied")
            why = "masks supplied" if source == "supplied" else "the segmenter gives no verdict"
            return f"mask QC: not run ({why})"
        excluded = "yes" if self.meta.get("exclude_flagged") else "no"
        line = f"mask QC: {self.n_failed_qc} of {len(self)} failed (excluded: {excluded})"
        if self.n_failed_qc and excluded == "no":
            line += "; report.exclude_failed_qc() leaves them out"
        return line

    def failed_qc(self) -> list[tuple[str, str]]:
        """``(image_id, reasons)`` of the images whose mask failed the quality check."""
        return [
            (str(r["image_id"]), str(r["seg_quality_reasons"]))
            for r in self.rows
            if r["seg_quality_ok"] is False
        ]

    def exclude_failed_qc(self) -> AttentionReport:
        """A copy whose aggregates leave out images whose mask failed the quality check.

        The rows (with ``seg_quality_ok`` and ``seg_quality_reasons``), maps and masks
        are kept, so the excluded images stay visible; :attr:`counted` marks them and
        :meth:`LungAttentionScorer.compare` leaves them out too.
        """
        meta = {**self.meta, "exclude_flagged": True}
        report = replace(self, rows=list(self.rows), aggregate={}, meta=meta)
        report.aggregate = aggregate_metrics(
            self.rows, list(self.aggregate), report.counted, self.meta
        )
        return report

    def save_grid(
        self,
        path: str | os.PathLike[str],
        n: int | None = 16,
        ncol: int = 4,
        scale: int | None = None,
        titles: list[str] | None = None,
    ) -> None:
        """Write overlays of ``n`` images as one PNG grid, the classes in turn.

        When the rows have labels (``score_dataset``, or ``score(labels=...)``) the
        classes take turns, so each gets ``n / K`` pictures (or all it has), drawn
        grouped by class in report order; without labels, the first ``n`` images.

        Args:
            path: The PNG file.
            n: Number of images (``None``: all).
            ncol: Pictures per row.
            scale: Upscale factor (``None``: pictures about 256 px; see
                :func:`~.plots.overlay`).
            titles: One per picture; default ``image_id``, ``label`` (if known), lift,
                and ``QC failed`` where the mask failed the quality check.
        """
        from .plots import save_grid

        if self.images is None or self.saliency is None or self.masks is None:
            raise ValueError("the report keeps no maps: score with keep_maps=True")
        pick = self.grid_indices(n)
        if titles is None:
            titles = [_title(self.rows[i]) for i in pick]
        elif len(titles) != len(pick):
            raise ValueError(f"{len(titles)} titles for {len(pick)} pictures")
        idx = torch.tensor(pick, dtype=torch.long)
        save_grid(path, self.images[idx], self.saliency[idx], self.masks[idx], ncol, titles, scale)

    def grid_indices(self, n: int | None = 16) -> list[int]:
        """The rows :meth:`save_grid` draws: ``n`` of them, the classes in turn."""
        k = len(self) if n is None else min(n, len(self))
        labels = [r.get("label") for r in self.rows]
        if all(y is None for y in labels):
            return list(range(k))
        return balanced_order(labels, k)

    def summary(self) -> str:
        """Text summary: what was explained, the mask quality check, the main aggregates
        (mean [CI] over counted images with a non-empty map) and any warnings."""
        head = f"{self.meta.get('method', '?')} on {len(self)} images"
        if "target" in self.meta:
            head += f", explaining {self.meta['target']}"
        lines = [head]
        if self.meta.get("map_size"):
            h, w = self.meta["map_size"]
            lines.append(f"  layer {self.meta.get('target_layer')!r}: map {h}x{w}")
        lines.append(f"  {self.qc_line()}")
        failed = self.failed_qc()
        lines += [f"    {name}: {why}" for name, why in failed[:_LIST_FAILED]]
        if len(failed) > _LIST_FAILED:
            lines.append(f"    ... and {len(failed) - _LIST_FAILED} more (see failed_qc())")
        for name in SUMMARY_METRICS:
            ci = self.aggregate.get(name)
            if ci is not None:
                lines.append(
                    f"  {name:<15} {ci.estimate:7.3f}  [{ci.low:.3f}, {ci.high:.3f}]  n={ci.n}"
                )
        faith = self.meta.get("faithfulness")
        if faith:
            settings = faith.get("settings", {})
            lines.append(
                f"  faithfulness ({faith.get('score', '?')}; {settings.get('steps')} steps, "
                f"{settings.get('baseline')} baseline):"
            )
            for name, meaning in SUMMARY_FAITHFULNESS.items():
                ci = self.aggregate.get(name)
                if ci is not None:
                    lines.append(
                        f"  {name:<19} {ci.estimate:7.3f}  [{ci.low:.3f}, {ci.high:.3f}]  "
                        f"n={ci.n}  ({meaning})"
                    )
        lines += [f"  warning: {w}" for w in self.meta.get("warnings", [])]
        return "\n".join(lines)
