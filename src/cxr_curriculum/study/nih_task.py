"""NIH ChestX-ray14 findings as a study task: multi-label, macro AUROC over findings.

The 14 findings of Wang et al. (CVPR 2017) are scored per image (sigmoid outputs of the
multi-label protocols of :mod:`cxr_curriculum.evaluation`); the task's metric is the
unweighted mean over findings of each finding's AUROC on the images whose label for it
is known, over the findings with at least ``min_positives`` positive and negative test
images (as :func:`cxr_curriculum.evaluation.multilabel_auroc` reports it). The test set
is a patient-level split of the folder given, since the shared subset has no official
split. Its images must not be in the pretraining pool for a clean comparison.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from cxr_curriculum.data import NIH_FINDINGS, NIHChestXray14, data_root, patient_split
from cxr_curriculum.evaluation import EvalResult
from cxr_curriculum.evaluation.fractions import targets_of
from cxr_curriculum.study.resample import weighted_binary_auroc
from cxr_curriculum.study.tasks import Task

__all__ = ["NIHFindingsTask", "weighted_macro_auroc"]


def weighted_macro_auroc(scores: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Macro AUROC over findings under ``(R, N)`` image weights.

    Args:
        scores: ``(N, C)`` per-finding scores.
        targets: ``(N, C)`` labels in ``{0, 1}``, NaN where unknown (left out per finding).
        weights: ``(R, N)`` non-negative weights.

    Returns:
        ``(R,)`` mean of the ``C`` findings' AUROCs; NaN where one of them is undefined.
    """
    if scores.shape != targets.shape or weights.shape[1] != scores.shape[0]:
        raise ValueError(
            f"scores and targets must both be (N, C) and weights (R, N); got "
            f"{tuple(scores.shape)}, {tuple(targets.shape)}, {tuple(weights.shape)}"
        )
    per_finding = []
    for c in range(scores.shape[1]):
        known = ~torch.isnan(targets[:, c])
        per_finding.append(
            weighted_binary_auroc(scores[known, c], targets[known, c].long(), weights[:, known])
        )
    return torch.stack(per_finding, 1).mean(1)


class NIHFindingsTask(Task):
    """Multi-label findings of NIH ChestX-ray14 (macro AUROC).

    Args:
        root: Image folder; default ``data_root()/nih-chestxray14-subset``.
        csv_file: The label table; default
            ``data_root()/label-tables/Data_Entry_2017_v2020.csv.gz``.
        test_share: Share of patients in the test split.
        split_seed: Seed of the patient split (fixed across the study's seeds).
        min_positives: Findings with fewer positive (or negative) test images are left out.
        name: Task name.
    """

    metric = "macro_auroc"
    attention = False

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        csv_file: str | os.PathLike[str] | None = None,
        *,
        test_share: float = 0.3,
        split_seed: int = 0,
        min_positives: int = 5,
        name: str = "nih",
    ) -> None:
        if not 0.0 < test_share < 1.0:
            raise ValueError(f"test_share must lie in (0, 1); got {test_share}")
        self.root, self.csv_file, self.name = root, csv_file, name
        self.test_share, self.split_seed, self.min_positives = test_share, split_seed, min_positives

    def load(self) -> tuple[Dataset[Any], Dataset[Any]]:
        """A patient-level train/test split of the multi-label dataset."""
        csv = self.csv_file or data_root() / "label-tables" / "Data_Entry_2017_v2020.csv.gz"
        full = NIHChestXray14(self.root, csv_file=csv)
        share = self.test_share
        train, test = patient_split(full, (1.0 - share, share), seed=self.split_seed)
        return train, test

    @cached_property
    def test_targets(self) -> Tensor:
        """``(N, 14)`` test targets (NaN: unknown)."""
        targets = targets_of(self.datasets[1])
        if targets is None:
            raise ValueError(f"task {self.name!r}: the test set has no multi-label .targets")
        return targets

    @cached_property
    def findings(self) -> list[int]:
        """Indices of the findings scored (enough positive and negative test images)."""
        t = self.test_targets
        pos, neg = (t == 1).sum(0), (t == 0).sum(0)
        keep = [c for c in range(t.shape[1]) if min(pos[c], neg[c]) >= self.min_positives]
        if not keep:
            raise ValueError(
                f"task {self.name!r}: no finding has {self.min_positives} positive and negative "
                "test images; lower min_positives or use a larger test split"
            )
        return keep

    def config(self) -> dict[str, Any]:
        """The base description plus the split and the findings scored."""
        return {
            **super().config(),
            "split": [self.test_share, self.split_seed],
            "findings": [NIH_FINDINGS[c] for c in self.findings],
        }

    def cell_scores(self, result: EvalResult) -> Tensor:
        """``(N, C)`` per-finding probabilities."""
        return result.scores

    def weighted_metric(self, scores: Tensor, weights: Tensor) -> Tensor:
        """Macro AUROC over :attr:`findings` (``scores`` may be flattened ``(N * C,)``)."""
        s = scores.reshape(self.test_targets.shape[0], -1)[:, self.findings]
        return weighted_macro_auroc(s, self.test_targets[:, self.findings], weights)
