"""Reports of lung-attention scores: per-image rows, aggregates, CSV and JSON output."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .stats import BootstrapCI

__all__ = ["AttentionReport", "SanityReport"]


def _write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    if not rows:
        raise ValueError("nothing to write: the report has no rows")
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf by ``None`` (strict JSON) recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


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
    """

    rows: list[dict[str, Any]]
    aggregate: dict[str, BootstrapCI]
    meta: dict[str, Any] = field(default_factory=dict)
    saliency: Tensor | None = None
    masks: Tensor | None = None

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
        return _json_safe({"meta": self.meta, "aggregate": agg, "rows": self.rows})

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as strict JSON."""
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2, allow_nan=False)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the per-image rows as CSV (one line per image)."""
        _write_csv(path, self.rows)

    def summary(self) -> str:
        """Aligned text table of the main aggregates."""
        lines = [f"{self.meta.get('method', '?')} on {len(self)} images"]
        for name in ("energy_in_mask", "lift", "pointing_game", "rank_accuracy", "area_fraction"):
            ci = self.aggregate.get(name)
            if ci is not None:
                lines.append(
                    f"  {name:<15} {ci.mean:7.3f}  [{ci.low:.3f}, {ci.high:.3f}]  n={ci.n}"
                )
        return "\n".join(lines)


@dataclass
class SanityReport:
    """Result of the cascading-randomisation sanity check (Adebayo et al. 2018).

    Attributes:
        rows: One dict per step: ``step`` (0 = trained model), ``layer`` (the last layer
            randomised), ``n_randomised``, ``spearman`` (mean rank correlation of the maps
            with the trained model's), ``spearman_low``/``spearman_high`` (bootstrap CI),
            ``energy_in_mask`` with its CI.
        meta: Method and settings.
    """

    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _json_safe({"meta": self.meta, "rows": self.rows})

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as strict JSON."""
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2, allow_nan=False)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one CSV line per randomisation step."""
        _write_csv(path, self.rows)
