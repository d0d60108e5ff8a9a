"""Curricular SSL pretraining: stages, the curriculum engine, checkpoints, monitors.

Public names::

    Stage, Curriculum, StageResult            # compose and run curricula
    Keep, KEEP                                # what a finished run keeps on disk
    KNNMonitor, StageMonitor, KNNEvaluator    # downstream scores logged during a stage
    TensorBoardLogger, MetricLogger           # metrics to TensorBoard or any callable
    LARS, WarmupCosine, build_optimizer       # optimisers and the learning-rate schedule
    CurriculumError, NonFiniteLossError, CollapseError   # why a stage stopped
    DivergenceRule, DivergenceError           # divergence measured against the run itself
    ResumeError                               # a folder that cannot resume these stages
    ArtefactIntegrityError, ArtefactWriteError           # a damaged file, a failed write
    load_checkpoint, data_fingerprint, embedding_std, METRIC_FIELDS

Choosing a stage order is a small study: ``cxr_curriculum.study.rank_orders``. This
package imports nothing from ``cxr_curriculum.evaluation`` (a monitor takes its
evaluator as an argument).
"""

from __future__ import annotations

from cxr_curriculum._artefacts import ArtefactIntegrityError, ArtefactWriteError
from cxr_curriculum.curriculum.changes import ResumeError
from cxr_curriculum.curriculum.checkpoint import load_checkpoint
from cxr_curriculum.curriculum.curriculum import Curriculum, StageResult
from cxr_curriculum.curriculum.divergence import DivergenceRule
from cxr_curriculum.curriculum.loggers import MetricLogger, TensorBoardLogger
from cxr_curriculum.curriculum.metrics_log import (
    METRIC_FIELDS,
    CollapseError,
    CurriculumError,
    DivergenceError,
    NonFiniteLossError,
    embedding_std,
)
from cxr_curriculum.curriculum.monitor import KNNEvaluator, KNNMonitor, StageMonitor
from cxr_curriculum.curriculum.optim import LARS, WarmupCosine, build_optimizer
from cxr_curriculum.curriculum.outputs import KEEP, Keep
from cxr_curriculum.curriculum.sampling import data_fingerprint
from cxr_curriculum.curriculum.stage import Stage

__all__ = [
    "KEEP",
    "LARS",
    "METRIC_FIELDS",
    "ArtefactIntegrityError",
    "ArtefactWriteError",
    "CollapseError",
    "Curriculum",
    "CurriculumError",
    "DivergenceError",
    "DivergenceRule",
    "KNNEvaluator",
    "KNNMonitor",
    "Keep",
    "MetricLogger",
    "NonFiniteLossError",
    "ResumeError",
    "Stage",
    "StageMonitor",
    "StageResult",
    "TensorBoardLogger",
    "WarmupCosine",
    "build_optimizer",
    "data_fingerprint",
    "embedding_std",
    "load_checkpoint",
]
