"""Results of a study: per-arm metrics, pairwise comparisons and the attention claim.

Built from the finished cells only, so a partial study gives usable statistics for the
seeds it completed (a comparison uses the seeds in which both arms are finished).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from cxr_curriculum._artefacts import atomic_write_bytes
from cxr_curriculum.curriculum.checkpoint import atomic_write_json
from cxr_curriculum.stats import ConfidenceInterval
from cxr_curriculum.study.cells import CellKey
from cxr_curriculum.study.correlation import rank_correlation
from cxr_curriculum.study.findings_table import finding_table
from cxr_curriculum.study.multiplicity import adjust_p_values, multiplicity_families
from cxr_curriculum.study.provenance import command_line, machine_info, versions
from cxr_curriculum.study.resample import weighted_mean
from cxr_curriculum.study.runner import TASK_MASK_PREFIX
from cxr_curriculum.study.statistics import compare_arms, two_level_interval

if TYPE_CHECKING:
    from cxr_curriculum.study.study import Study
    from cxr_curriculum.study.tasks import Task

__all__ = ["StudyResults"]

#: Bootstrap replicates of every interval in a study report.
N_RESAMPLES = 2000
#: Faithfulness columns of the attention record reported per arm when the cells have them
#: (``[evaluation] faithfulness``), in report order.
ATTENTION_FAITHFULNESS = (
    "deletion",
    "insertion",
    "road",
    "lung_drop",
    "outside_drop",
    "lung_effect",
    "lung_effect_salient",
)
#: Range of each attention statistic (its interval is clipped to it).
ATTENTION_BOUNDS: dict[str, tuple[float, float]] = {
    "lift": (0.0, math.inf),
    "energy_in_mask": (0.0, 1.0),
    "deletion": (0.0, 1.0),
    "insertion": (0.0, 1.0),
    "road": (-1.0, 1.0),
    "lung_drop": (-1.0, 1.0),
    "outside_drop": (-1.0, 1.0),
    "lung_effect": (-2.0, 2.0),
    "lung_effect_salient": (-2.0, 2.0),
}


class StudyResults:
    """Statistics of the finished cells of a :class:`~cxr_curriculum.study.Study`.

    Args:
        study: The study (arms, seeds, tasks, fractions, protocols).
        cells: Finished cells by key.
        n_resamples: Bootstrap replicates of every interval.
    """

    def __init__(
        self, study: Study, cells: dict[CellKey, dict[str, Any]], n_resamples: int = N_RESAMPLES
    ) -> None:
        self.study, self.cells, self.n_resamples = study, cells, n_resamples

    def _seeds(self, arms: Sequence[str], task: str, fraction: float, protocol: str) -> list[int]:
        return [
            s
            for s in self.study.seeds
            if all(CellKey(s, a, task, fraction, protocol) in self.cells for a in arms)
        ]

    def _scores(self, arm: str, seeds: list[int], task: str, f: float, p: str) -> Tensor:
        rows = [self.cells[CellKey(s, arm, task, f, p)]["scores"] for s in seeds]
        return torch.tensor(rows, dtype=torch.float64)

    def _grid(self) -> list[tuple[Any, float, str]]:
        return [
            (t, f, p)
            for t in self.study.tasks
            for f in self.study.fractions
            for p in self.study.protocols
        ]

    def arm_metrics(self) -> list[dict[str, Any]]:
        """Per (task, fraction, protocol, arm): the metric per seed and its mean with CI."""
        out = []
        for task, f, p in self._grid():
            for arm in self.study.arms:
                seeds = self._seeds([arm.name], task.name, f, p)
                if not seeds:
                    continue
                scores = self._scores(arm.name, seeds, task.name, f, p)
                interval = two_level_interval(
                    partial(_metric_of, task, scores),
                    len(seeds),
                    task.test_groups,
                    len(task.test_groups),
                    n_resamples=self.n_resamples,
                    bounds=(0.0, 1.0),
                )
                per_seed = [
                    self.cells[CellKey(s, arm.name, task.name, f, p)]["value"] for s in seeds
                ]
                out.append(
                    {
                        "task": task.name,
                        "fraction": f,
                        "protocol": p,
                        "arm": arm.name,
                        "metric": task.metric,
                        "seeds": seeds,
                        "per_seed": per_seed,
                        **interval.to_dict(),
                    }
                )
        return out

    def comparisons(self) -> list[dict[str, Any]]:
        """Every pair of arms (later arm vs earlier arm) in every (task, fraction, protocol).

        Each row's ``difference`` holds the raw ``p_value`` and, beside it, ``p_holm`` and
        ``p_bh``: adjusted over the family of all comparisons of the row's task (every
        fraction x protocol x arm pair; :func:`multiplicity_families`).
        """
        out = []
        for task, f, p in self._grid():
            for b, a in itertools.combinations([x.name for x in self.study.arms], 2):
                seeds = self._seeds([a, b], task.name, f, p)
                if not seeds:
                    continue
                binary = task.metric == "auroc"
                try:
                    cmp = compare_arms(
                        self._scores(a, seeds, task.name, f, p),
                        self._scores(b, seeds, task.name, f, p),
                        task.test_labels,
                        task.test_groups,
                        metric=None if binary else task.weighted_metric,
                        metric_name=task.metric,
                        seeds=seeds,
                        names=(a, b),
                        n_resamples=self.n_resamples,
                    )
                except ValueError as err:
                    raise ValueError(
                        f"task {task.name!r}, labels {f:g}, protocol {p!r}, {a} vs {b}: {err}"
                    ) from err
                out.append({"task": task.name, "fraction": f, "protocol": p, **cmp.to_dict()})
        adjust_p_values(out)
        return out

    def _attention_cells(self) -> list[tuple[CellKey, dict[str, Any]]]:
        return [(k, c) for k, c in self.cells.items() if "attention" in c]

    def attention(self) -> list[dict[str, Any]]:
        """Per (task, fraction, arm, masks): mean lung lift and energy over seeds, with CIs.

        ``masks`` is ``"predicted"`` (the bundled segmenter's) or the task's own
        :attr:`~cxr_curriculum.study.Task.mask_source` (e.g. V7's, drawn by people).
        Faithfulness columns the cells recorded (:data:`ATTENTION_FAITHFULNESS`) are added
        to the rows of the mask sources they were recorded for.
        """
        out = []
        for task in self.study.tasks:
            for f, arm in itertools.product(self.study.fractions, self.study.arms):
                seeds = self._seeds([arm.name], task.name, f, "fine_tune")
                cells = [self.cells[CellKey(s, arm.name, task.name, f, "fine_tune")] for s in seeds]
                if not cells or "attention" not in cells[0]:
                    continue
                groups = [task.test_groups[i] for i in cells[0]["attention"]["image_index"]]
                for masks, prefix in _mask_sources(task, cells):
                    out.append(self._attention_row(task, f, arm.name, masks, prefix, cells, groups))
        return out

    def _attention_row(
        self,
        task: Task,
        f: float,
        arm: str,
        masks: str,
        prefix: str,
        cells: list[dict[str, Any]],
        groups: list[str],
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"task": task.name, "fraction": f, "arm": arm, "masks": masks}
        recorded = set.intersection(*(set(c["attention"]) for c in cells))
        extra = [m for m in ATTENTION_FAITHFULNESS if prefix + m in recorded]
        for metric in ("lift", "energy_in_mask", *extra):
            v = torch.tensor(
                [
                    [math.nan if x is None else x for x in c["attention"][prefix + metric]]
                    for c in cells
                ],
                dtype=torch.float64,
            )
            # A model whose every map is empty (no positive saliency: NaN metrics) has no
            # mean for this seed; the interval covers the seeds that have one.
            defined = ~torch.isnan(v).all(1)
            if bool(defined.any()):
                stat = two_level_interval(
                    partial(_mean_of, v[defined]),
                    int(defined.sum()),
                    groups,
                    v.shape[1],
                    n_resamples=self.n_resamples,
                    bounds=ATTENTION_BOUNDS.get(metric, (-math.inf, math.inf)),
                ).to_dict()
            else:
                stat = ConfidenceInterval(
                    math.nan, math.nan, math.nan, n=v.shape[1], n_seeds=0
                ).to_dict()
            stat["seeds_without_value"] = [
                c.get("seed") for c, ok in zip(cells, defined.tolist(), strict=True) if not ok
            ]
            row[metric] = stat
        return row

    def attention_correlation(self) -> list[dict[str, Any]]:
        """Spearman's rho between AUROC and mean lung attention over fine-tuned models.

        Attention: lung lift and energy (per mask source), and the lung-restricted
        ``lung_effect`` where the study switched ``faithfulness = ["lungs"]`` on.
        Per (task, fraction), and pooled over fractions after centring both values per
        fraction (so that "more labels, higher AUROC" cannot create the correlation).
        """
        out = []
        for task in self.study.tasks:
            items = [(k, c) for k, c in self._attention_cells() if k.task == task.name]
            sources = _mask_sources(task, [c for _, c in items])
            metrics = ("lift", "energy_in_mask", "lung_effect")
            for (masks, prefix), metric in itertools.product(sources, metrics):
                if not items or not all(prefix + metric in c["attention"] for _, c in items):
                    continue  # lung_effect: only where the study switched it on
                pooled: list[tuple[float, float, str]] = []
                for f in self.study.fractions:
                    # a model without a mean (every map empty) or without a metric value
                    # is left out of x and y alike, before the count of models is checked
                    sel = [
                        (k, c["value"], _nanmean(c["attention"][prefix + metric]))
                        for k, c in items
                        if k.fraction == f
                    ]
                    sel = [(k, a, b) for k, a, b in sel if a is not None and a == a and b == b]
                    x, y = [a for _, a, _ in sel], [b for _, _, b in sel]
                    clusters = [f"{k.arm}/{k.seed}" for k, _, _ in sel]
                    if len(sel) >= 3:
                        r = rank_correlation(x, y, clusters, n_resamples=self.n_resamples)
                        out.append(
                            {
                                "task": task.name,
                                "fraction": f,
                                "attention": metric,
                                "masks": masks,
                                **r.to_dict(),
                            }
                        )
                    mx, my = _nanmean(x), _nanmean(y)
                    pooled += [(a - mx, b - my, c) for a, b, c in zip(x, y, clusters, strict=True)]
                if len(pooled) >= 3:
                    xs, ys, cs = zip(*pooled, strict=True)
                    r = rank_correlation(xs, ys, list(cs), n_resamples=self.n_resamples)
                    out.append(
                        {
                            "task": task.name,
                            "fraction": "pooled (centred per fraction)",
                            "attention": metric,
                            "masks": masks,
                            **r.to_dict(),
                        }
                    )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything: settings, every cell, statistics, command, versions and machine."""
        study = self.study
        comparisons = self.comparisons()
        return {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command_line(),
            "versions": versions(),
            "machine": machine_info(),
            "design": {
                "arms": [a.config(study.batch_size, study.image_size) for a in study.arms],
                "seeds": study.seeds,
                "tasks": [t.config() for t in study.tasks],
                "fractions": study.fractions,
                "protocols": study.protocols,
                "budget": {"steps": study.budget[0], "images": study.budget[1]},
                "threads_used": sorted(
                    {c.get("run", {}).get("threads") for c in self.cells.values()} - {None}
                ),
                "not_measured": dict(study.unavailable),
                "test_images_in_pretraining": study.pretraining_overlap(),
                "pretraining_pool": _pool_summary(study),
                "cells_total": len(study.cells()),
                "cells_done": len(self.cells),
            },
            "arm_metrics": self.arm_metrics(),
            "comparisons": comparisons,
            "multiplicity": multiplicity_families(comparisons),
            "attention": self.attention(),
            "attention_correlation": self.attention_correlation(),
            "findings": finding_table(self),
            "cells": [{**k.to_dict(), **_brief(c)} for k, c in sorted(self.cells.items())],
        }

    def write(self, folder: str | os.PathLike[str], figures: bool = True) -> dict[str, Any]:
        """Write ``results.json`` and ``report.md`` (and figures if matplotlib is present)."""
        from cxr_curriculum.study.report import markdown_report, write_figures

        folder = Path(folder)
        data = self.to_dict()
        atomic_write_json(data, folder / "results.json")
        text = markdown_report(data)
        atomic_write_bytes(folder / "report.md", text.encode(), what="study report")
        if figures:
            with contextlib.suppress(ImportError):
                write_figures(data, folder)
        return data


def _metric_of(task: Task, scores: Tensor, j: int, w: Tensor) -> Tensor:
    """Seed ``j``'s metric under weights ``w`` (for :func:`two_level_interval`)."""
    return task.weighted_metric(scores[j], w)


def _mean_of(values: Tensor, j: int, w: Tensor) -> Tensor:
    """Seed ``j``'s weighted mean of per-image values (NaN ignored)."""
    return weighted_mean(values[j], w)


def _mask_sources(task: Task, cells: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(masks label, metric key prefix)`` of the attention the cells hold."""
    sources = [("predicted", "")]
    if cells and TASK_MASK_PREFIX + "lift" in cells[0].get("attention", {}):
        sources.append((task.mask_source or "task", TASK_MASK_PREFIX))
    return sources


def _pool_summary(study: Study) -> dict[str, Any]:
    """Size of the pretraining pool and, per task, the images of its test patients."""
    if study.pool_source is None or not any(a.stages for a in study.arms):
        return {}
    data = study.pretrain_data
    return {
        "images": len(data),  # type: ignore[arg-type]
        "exclude_test_patients": study.exclude_test_patients,
        "test_patients_images": {n: e.to_dict() for n, e in study.pool_exclusion.items()},
    }


def _brief(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell without its per-image arrays (they stay in the cell's own file)."""
    out = {k: v for k, v in cell.items() if k not in ("scores", "attention", "settings")}
    if "attention" in cell:
        out["attention_mean"] = {
            m: _nanmean(v) for m, v in cell["attention"].items() if m != "image_index"
        }
    return out


def _nanmean(values: Sequence[float | None]) -> float:
    ok = [v for v in values if v is not None and v == v]
    return sum(ok) / len(ok) if ok else math.nan
