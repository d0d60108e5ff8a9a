"""Holm and Benjamini-Hochberg p-values in a study's results.json and report.md, one family
per task; per-seed DeLong shown as "-" (None in JSON) for a macro AUROC; errors name the task.

Synthetic cells (per-image scores in memory): these tests check the bookkeeping of the
statistics, not a claim about X-rays.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.utils.data import Dataset

from cxr_curriculum.stats import benjamini_hochberg, holm
from cxr_curriculum.study import CellKey, StudyResults, Task, weighted_macro_auroc
from cxr_curriculum.study.multiplicity import FAMILY, multiplicity_families
from cxr_curriculum.study.report import markdown_report


class _Split(Dataset[Any]):
    def __init__(self, labels: list[int], patients: list[str]) -> None:
        self.labels, self.patient_ids = labels, patients

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Any:
        raise NotImplementedError  # the statistics never read images


class _Binary(Task):
    """40 test images of 20 patients, both classes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def load(self) -> tuple[Dataset[Any], Dataset[Any]]:
        labels = [i % 2 for i in range(40)]
        test = _Split(labels, [f"p{i // 2}" for i in range(40)])
        return test, test


class _Macro(_Binary):
    """The same images with three findings, scored by the macro AUROC (no DeLong)."""

    metric = "macro_auroc"
    targets = (torch.arange(120).reshape(40, 3) % 2).double()

    def weighted_metric(self, scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return weighted_macro_auroc(scores.reshape(40, 3), self.targets, weights)


def _results(tasks: list[Task]) -> StudyResults:
    """Three arms, five seeds, two fractions: arm "good" separates the classes far better.

    Scores: ``separation * y + x_i + 0.1 e``, with an image effect ``x_i`` shared by
    every model and a small noise ``e`` of each model (the seeds barely matter).
    """
    arms = [SimpleNamespace(name=n) for n in ("scratch", "same", "good")]
    study = SimpleNamespace(
        seeds=[0, 1, 2, 3, 4], tasks=tasks, fractions=[0.1, 1.0], protocols=["knn"], arms=arms
    )
    g = torch.Generator().manual_seed(0)
    cells = {}
    for task in tasks:
        width = 3 if task.metric == "macro_auroc" else 1
        y = torch.arange(40 * width).reshape(40, width) % 2
        shared = torch.randn(40, width, generator=g)
        for seed, arm, f in [(s, a.name, f) for s in study.seeds for a in arms for f in (0.1, 1.0)]:
            separation = 4.0 if arm == "good" else 0.5
            scores = separation * y + shared + 0.1 * torch.randn(40, width, generator=g)
            cells[CellKey(seed, arm, task.name, f, "knn")] = {"scores": scores.flatten().tolist()}
    return StudyResults(study, cells, n_resamples=300)  # type: ignore[arg-type]


def _report(results: StudyResults) -> tuple[list[dict[str, Any]], str]:
    comparisons = results.comparisons()
    data = {
        "command": "python -m cxr_curriculum study x.toml",
        "date": "today",
        "machine": {"cpu": "cpu", "cpu_count": 2},
        "versions": {"torch": torch.__version__},
        "design": {
            "threads_used": [1],
            "cells_done": len(results.cells),
            "cells_total": len(results.cells),
            "seeds": results.study.seeds,
            "budget": {"steps": 1, "images": 8},
            "not_measured": {},
        },
        "arm_metrics": [],
        "comparisons": comparisons,
        "multiplicity": multiplicity_families(comparisons),
        "attention": [],
        "attention_correlation": [],
    }
    return comparisons, markdown_report(json.loads(json.dumps(data)))


def test_holm_and_bh_are_adjusted_within_each_task() -> None:
    results = _results([_Binary("kermany"), _Binary("other")])
    comparisons, report = _report(results)
    assert len(comparisons) == 2 * 2 * 3  # tasks x fractions x arm pairs
    for task in ("kermany", "other"):
        family = [c["difference"] for c in comparisons if c["task"] == task]
        raw = [d["p_value"] for d in family]
        assert [d["p_holm"] for d in family] == pytest.approx(holm(raw))
        assert [d["p_bh"] for d in family] == pytest.approx(benjamini_hochberg(raw))
        assert all(d["p_value"] <= d["p_bh"] <= d["p_holm"] <= 1.0 for d in family)
    # "good" beats the others clearly: Holm keeps all 8, and on the first task every raw
    # p-value lies far below the old bootstrap floor 2 / 2001
    good = [c for c in comparisons if c["arm_a"] == "good"]
    assert all(c["difference"]["p_holm"] < 0.05 for c in good)
    assert all(c["difference"]["p_value"] < 1e-5 for c in good if c["task"] == "kermany")
    assert multiplicity_families(comparisons) == {
        "family": FAMILY,
        "methods": ["holm", "benjamini_hochberg"],
        "tests": {"kermany": 6, "other": 6},
    }
    header = next(line for line in report.splitlines() if "| a - b |" in line)
    assert "| 95% CI | p | p Holm | p BH | excludes 0 |" in header
    assert "tests per family: kermany: 6, other: 6" in report
    row = next(line for line in report.splitlines() if "| good - scratch |" in line)
    pair = ("good", "scratch")
    d = next(c["difference"] for c in comparisons if (c["arm_a"], c["arm_b"]) == pair)
    cells = [cell.strip() for cell in row.split("|")]
    assert cells[7:10] == [f"{d['p_value']:.2g}", f"{d['p_holm']:.2g}", f"{d['p_bh']:.2g}"]


def test_macro_auroc_has_no_delong_and_shows_a_dash() -> None:
    comparisons, report = _report(_results([_Macro("nih")]))
    per_seed = comparisons[0]["per_seed"][0]
    assert per_seed["delong_p_value"] is None and per_seed["delong_z"] is None
    text = json.dumps(comparisons)
    assert "NaN" not in text
    assert "(p=-)" in report and "p=nan" not in report
    binary, _ = _report(_results([_Binary("kermany")]))
    assert isinstance(binary[0]["per_seed"][0]["delong_p_value"], float)


def test_one_seed_has_no_p_value_and_stays_out_of_the_family() -> None:
    results = _results([_Binary("kermany")])
    results.study.seeds = [0]
    comparisons, report = _report(results)
    assert all(math.isnan(c["difference"]["p_value"]) for c in comparisons)
    assert all(math.isnan(c["difference"]["p_holm"]) for c in comparisons)
    assert multiplicity_families(comparisons)["tests"] == {}
    assert "| - | - | - |" in report


def test_an_undefined_comparison_names_the_task() -> None:
    class OneClass(_Binary):
        def load(self) -> tuple[Dataset[Any], Dataset[Any]]:
            test = _Split([1] * 40, [f"p{i // 2}" for i in range(40)])
            return test, test

    with pytest.raises(ValueError, match=r"task 'broken', labels 0\.1, protocol 'knn'"):
        _results([OneClass("broken")]).comparisons()
