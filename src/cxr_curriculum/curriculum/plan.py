"""What a stage's loop is given besides the stage: seed, metric log, resume state, callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_curriculum.curriculum.metrics_log import MetricsLog

__all__ = ["StagePlan"]


@dataclass
class StagePlan:
    """Everything a stage's loop needs besides the stage itself.

    Attributes:
        index: the stage's position in the curriculum.
        seed: the stage's seed, ``mix_seed(curriculum seed, index)``.
        metrics: the stage's metric log (rows restored when resuming).
        resume: a partial checkpoint to continue from, or ``None``.
        save: called as ``save(state)`` with a partial checkpoint every
            ``checkpoint_every`` steps (rank 0 only), or ``None``.
        fail: called with the error before it is raised (to record it in the manifest).
        checkpoint: the file ``save`` writes (for messages), or ``None``; set on every
            rank (the other ranks keep the state rank 0 writes as their last good one).
        settings_changed: ``resume`` was written with other optimiser settings
            (``resume="continue"``): its optimiser hyper-parameters and schedule are
            replaced by the stage's current ones.
    """

    index: int
    seed: int
    metrics: MetricsLog
    resume: dict[str, Any] | None = None
    save: Callable[[dict[str, Any]], None] | None = None
    fail: Callable[[Exception], None] | None = None
    checkpoint: Path | None = None
    settings_changed: bool = False
