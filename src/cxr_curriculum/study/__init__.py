"""Studies: multi-seed, budget-matched comparisons of pretraining arms, resumable per cell.

Public names::

    Study, StudyResults                       # run a study, read its statistics
    Arm, ArmStage, check_budgets              # what is compared, at equal cost
    Task, KermanyTask, NIHFindingsTask        # downstream tasks (binary, multi-label)
    BinaryTask, MultiLabelTask                # any (train, test) pair
    build_task, TASK_KINDS                    # one builder per dataset kind
    Protocols                                 # downstream protocol settings
    CellKey, CellStore                        # the cell files on disk
    Unit, UnitStatus                          # units of work: one per (arm, seed)
    ClaimBoard, Claim, ClaimInfo              # claims on units, renewed by a heartbeat
    StudyFolder, StudyFolderError             # the shared output folder, its lock, its errors
    check_design, without_provenance          # one study per folder; comparing two reports
    compare_arms, two_level_interval          # statistics across seeds and patients
    ArmComparison, SeedDifference             # (intervals: stats.ConfidenceInterval,
                                              #  differences: stats.PairedComparison)
    rank_correlation, spearman, RankCorrelation   # AUROC vs lung attention
    rank_orders, OrderRanking, OrderResult    # stage-order search: a small study with
                                              # a scratch baseline

See ``docs/study.md``.
"""

from cxr_curriculum.study.arms import Arm, ArmStage, check_budgets
from cxr_curriculum.study.cells import CellKey, CellStore
from cxr_curriculum.study.claim_info import ClaimInfo
from cxr_curriculum.study.claims import DEFAULT_CLAIM_TIMEOUT, ClaimBoard
from cxr_curriculum.study.correlation import RankCorrelation, rank_correlation, spearman
from cxr_curriculum.study.design import check_design
from cxr_curriculum.study.folder import StudyFolder, StudyFolderError
from cxr_curriculum.study.generic_tasks import BinaryTask, MultiLabelTask, split_by_patient
from cxr_curriculum.study.heartbeat import Claim
from cxr_curriculum.study.nih_task import NIHFindingsTask, weighted_macro_auroc
from cxr_curriculum.study.order_ranking import OrderRanking, OrderResult
from cxr_curriculum.study.ordering import rank_orders
from cxr_curriculum.study.provenance import without_provenance
from cxr_curriculum.study.results import StudyResults
from cxr_curriculum.study.runner import PROTOCOLS, Protocols
from cxr_curriculum.study.statistics import (
    ArmComparison,
    SeedDifference,
    compare_arms,
    two_level_interval,
)
from cxr_curriculum.study.study import Study
from cxr_curriculum.study.task_kinds import TASK_KINDS, build_task
from cxr_curriculum.study.tasks import KermanyTask, Task
from cxr_curriculum.study.units import Unit, UnitStatus

__all__ = [
    "DEFAULT_CLAIM_TIMEOUT",
    "PROTOCOLS",
    "TASK_KINDS",
    "Arm",
    "ArmComparison",
    "ArmStage",
    "BinaryTask",
    "CellKey",
    "CellStore",
    "Claim",
    "ClaimBoard",
    "ClaimInfo",
    "KermanyTask",
    "MultiLabelTask",
    "NIHFindingsTask",
    "OrderRanking",
    "OrderResult",
    "Protocols",
    "RankCorrelation",
    "SeedDifference",
    "Study",
    "StudyFolder",
    "StudyFolderError",
    "StudyResults",
    "Task",
    "Unit",
    "UnitStatus",
    "build_task",
    "check_budgets",
    "check_design",
    "compare_arms",
    "rank_correlation",
    "rank_orders",
    "spearman",
    "split_by_patient",
    "two_level_interval",
    "weighted_macro_auroc",
    "without_provenance",
]
