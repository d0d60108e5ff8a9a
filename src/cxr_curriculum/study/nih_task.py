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
from typing import Any

from torch.utils.data import Dataset

from cxr_curriculum.data import NIHChestXray14, data_root
from cxr_curriculum.study.generic_tasks import MultiLabelTask, split_by_patient
from cxr_curriculum.study.multilabel_task import weighted_macro_auroc

__all__ = ["NIHFindingsTask", "weighted_macro_auroc"]


class NIHFindingsTask(MultiLabelTask):
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
        super().__init__(self._split, name=name, min_positives=min_positives)
        self.root, self.csv_file = root, csv_file
        self.test_share, self.split_seed = test_share, split_seed

    def _split(self) -> tuple[Dataset[Any], Dataset[Any]]:
        """A patient-level train/test split of the multi-label dataset."""
        csv = self.csv_file or data_root() / "label-tables" / "Data_Entry_2017_v2020.csv.gz"
        full = NIHChestXray14(self.root, csv_file=csv)
        return split_by_patient(full, self.test_share, self.split_seed)

    def config(self) -> dict[str, Any]:
        """The base description plus the split and the findings scored."""
        return {**super().config(), "split": [self.test_share, self.split_seed]}
