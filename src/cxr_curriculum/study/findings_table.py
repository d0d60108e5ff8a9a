"""Per-finding AUROC of a multi-label study task, beside its macro AUROC.

A macro AUROC can hide that a curriculum helps one finding and hurts another. For every
multi-label task (a :class:`~cxr_curriculum.study.MultiLabelTask`, such as
:class:`~cxr_curriculum.study.NIHFindingsTask`), label fraction, protocol and arm,
each scored finding gets its mean AUROC over seeds with the same two-level interval
(seeds, then test patients) as the arm's macro AUROC.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from cxr_curriculum.study.cells import CellKey
from cxr_curriculum.study.generic_tasks import MultiLabelTask
from cxr_curriculum.study.resample import weighted_binary_auroc
from cxr_curriculum.study.statistics import two_level_interval

if TYPE_CHECKING:
    from cxr_curriculum.study.results import StudyResults

__all__ = ["finding_table"]


def _finding_auroc(scores: Tensor, targets: Tensor, column: int, j: int, w: Tensor) -> Tensor:
    """Seed ``j``'s AUROC of finding ``column`` under ``(R, N)`` weights."""
    s = scores[j].reshape(targets.shape[0], -1)[:, column]
    known = ~targets[:, column].isnan()
    return weighted_binary_auroc(s[known], targets[known, column].long(), w[:, known])


def finding_table(results: StudyResults) -> list[dict[str, Any]]:
    """One row per (multi-label task, fraction, protocol, arm, scored finding).

    Returns:
        Rows with ``task``, ``fraction``, ``protocol``, ``arm``, ``finding``,
        ``positives`` (test images positive for it), ``seeds`` and the
        :class:`~cxr_curriculum.stats.ConfidenceInterval` fields of its mean AUROC.
    """
    study = results.study
    out = []
    for task in study.tasks:
        if not isinstance(task, MultiLabelTask):
            continue
        targets, columns, names = task.test_targets, task.findings, task.finding_names
        for f in study.fractions:
            for p in study.protocols:
                for arm in study.arms:
                    seeds = [
                        s
                        for s in study.seeds
                        if CellKey(s, arm.name, task.name, f, p) in results.cells
                    ]
                    if not seeds:
                        continue
                    rows = [results.cells[CellKey(s, arm.name, task.name, f, p)]["scores"]
                            for s in seeds]  # fmt: skip
                    scores = torch.tensor(rows, dtype=torch.float64)
                    for column, name in zip(columns, names, strict=True):
                        interval = two_level_interval(
                            partial(_finding_auroc, scores, targets, column),
                            len(seeds),
                            task.test_groups,
                            len(task.test_groups),
                            n_resamples=results.n_resamples,
                            bounds=(0.0, 1.0),
                        )
                        out.append(
                            {
                                "task": task.name,
                                "fraction": f,
                                "protocol": p,
                                "arm": arm.name,
                                "finding": name,
                                "positives": int((targets[:, column] == 1).sum()),
                                "seeds": seeds,
                                **interval.to_dict(),
                            }
                        )
    return out
