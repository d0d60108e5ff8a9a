"""Per-stage metrics (loss, learning rate, throughput, embedding std) and the stop rules.

A stage logs one row every ``log_every`` optimiser steps to ``metrics.csv`` and, at each
checkpoint and at the end, the whole table to ``metrics.json``. Training stops with a
clear error when the loss is not finite (:class:`NonFiniteLossError`), when the run
diverges by its own measure (:class:`DivergenceError`) or when the
embeddings collapse to a point (:class:`CollapseError`): the standard deviation of the
L2-normalised embeddings, scaled by ``sqrt(D)``, stays below a threshold. The scaled std
is about 1 for well-spread embeddings and 0 for a collapse (the monitor of SimSiam,
Chen & He 2021, arXiv 2011.10566, Sec. 4.1, and lightly's ``std_of_l2_normalized``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum._artefacts import atomic_write_bytes
from cxr_curriculum.curriculum.checkpoint import atomic_write_json
from cxr_curriculum.curriculum.loggers import MetricLogger, send

__all__ = [
    "METRIC_FIELDS",
    "CollapseError",
    "CollapseMonitor",
    "CurriculumError",
    "DivergenceError",
    "MetricsLog",
    "NonFiniteLossError",
    "embedding_std",
]

#: Columns of ``metrics.csv``.
METRIC_FIELDS = ("stage", "step", "epoch", "loss", "lr", "images_per_s", "embedding_std", "time_s")


class CurriculumError(RuntimeError):
    """A stage stopped; the message names the stage, the step and what was kept.

    The backbone passed to the Curriculum is left as it was at the stage's last good
    checkpoint (or at the start of the stage when none had been written).
    """


class NonFiniteLossError(CurriculumError):
    """The loss, or the model's weights or running statistics, became NaN or infinite."""


class DivergenceError(NonFiniteLossError):
    """The run diverged by its own measure before anything became NaN: its loss rose far
    above its early level or its method's chance level, or its feature scale far above
    the stage's start (:class:`~cxr_curriculum.curriculum.DivergenceRule`).

    A subclass of :class:`NonFiniteLossError`, so ``except NonFiniteLossError`` catches
    every divergence stop.
    """


class CollapseError(CurriculumError):
    """The embeddings collapsed (their std stayed below the threshold)."""


def embedding_std(z: Tensor) -> float:
    """Scaled standard deviation of L2-normalised embeddings: ``sqrt(D) * mean_d std_d``.

    Args:
        z: embeddings ``(B, D)`` with ``B >= 2``.

    Returns:
        About 1 for embeddings spread over the sphere, 0 when all rows are equal.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"embedding_std needs (B >= 2, D) embeddings; got shape {tuple(z.shape)}")
    zn = torch.nn.functional.normalize(z.detach().float(), dim=1)
    return float(zn.std(dim=0).mean() * math.sqrt(z.shape[1]))


@dataclass
class CollapseMonitor:
    """Counts consecutive checks with the embedding std below ``threshold``.

    Args:
        threshold: the scaled std below which a check counts as collapsed (``None``: off).
        patience: consecutive collapsed checks that stop the stage.
    """

    threshold: float | None
    patience: int = 3
    low: int = 0

    def update(self, std: float) -> bool:
        """Record one check; return True when the stage must stop."""
        if self.threshold is None:
            return False
        self.low = self.low + 1 if (std < self.threshold or not math.isfinite(std)) else 0
        return self.low >= self.patience


@dataclass
class MetricsLog:
    """A stage's metric rows, mirrored to ``<folder>/metrics.csv`` and ``metrics.json``
    and handed to metric loggers (:mod:`~cxr_curriculum.curriculum.loggers`).

    Args:
        folder: where the files go (``None``: keep rows in memory only).
        rows: rows so far (restored from a checkpoint when resuming).
        fields: the columns: :data:`METRIC_FIELDS` plus a monitor's (e.g. ``knn_accuracy``).
        loggers: called as ``logger(group, metrics, step_offset + row["step"])`` with the
            row's numeric values for every new row (rank 0 only).
        group: the series name the loggers get (the stage's folder name).
        step_offset: optimiser steps of the curriculum's earlier stages.
    """

    folder: Path | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    fields: tuple[str, ...] = METRIC_FIELDS
    loggers: list[MetricLogger] = field(default_factory=list)
    group: str = ""
    step_offset: int = 0

    def append(self, row: dict[str, Any]) -> None:
        """Add a row (keys from :attr:`fields`; missing ones are empty), append it to the
        CSV and send it to the loggers."""
        clean = {k: row.get(k) for k in self.fields}
        self.rows.append(clean)
        if self.loggers:
            values = {k: v for k, v in clean.items() if k not in ("stage", "step")}
            send(self.loggers, self.group, values, self.step_offset + int(row["step"]))
        if self.folder is None:
            return
        path = self.folder / "metrics.csv"
        new = not path.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        with path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow(clean)

    def rewrite(self) -> None:
        """Rewrite the CSV from :attr:`rows`, atomically (drops rows logged after the
        resumed checkpoint, and a line cut short by a killed run)."""
        if self.folder is None:
            return
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.folder / "metrics.csv", text.getvalue().encode(), what="log")

    def write_json(self, **summary: Any) -> None:
        """Write ``metrics.json``: ``{"rows": [...], **summary}`` (atomically)."""
        if self.folder is not None:
            atomic_write_json({"rows": self.rows, **summary}, self.folder / "metrics.json")
