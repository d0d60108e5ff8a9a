"""Computing one unit, i.e. the cells of one (arm, seed): pretrain once, then every cell.

The frozen-feature protocols (kNN, linear probe) of one task share one pass of the
backbone over the training and test sets (:class:`~cxr_curriculum.evaluation.FrozenFeatures`);
fine-tuning trains a copy, so one pretrained backbone serves every cell. Under
``torchrun`` every process pretrains (data-parallel) and only rank 0 evaluates and
writes; the others wait at a barrier. With a :class:`~cxr_curriculum.study.claims.Claim`
the worker reports what it is doing into the claim (the heartbeat writes it) and stops at
the next cell if the claim was lost to another worker.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from cxr_curriculum.curriculum.loggers import prefixed
from cxr_curriculum.evaluation import FrozenFeatures
from cxr_curriculum.study.arms import Arm
from cxr_curriculum.study.cells import CellKey
from cxr_curriculum.study.heartbeat import Claim
from cxr_curriculum.study.runner import AttentionInputs, pretrain, run_cell
from cxr_curriculum.study.tasks import Task
from cxr_curriculum.study.units import pretraining_progress

if TYPE_CHECKING:
    from cxr_curriculum.study.study import Study

__all__ = ["ArmSeedWorker", "ClaimLostError", "OnCell", "is_main"]

logger = logging.getLogger("cxr_curriculum.study")
#: Called as ``on_cell(key, record)`` after each cell is written.
OnCell = Callable[[CellKey, dict[str, Any]], None]


class ClaimLostError(RuntimeError):
    """Another worker took this worker's unit over (it was stopped past the timeout)."""


def is_main() -> bool:
    """Whether this process evaluates and writes (rank 0, or no torchrun at all).

    Read from torchrun's ``RANK`` before the process group exists (an arm without
    stages never creates one), so that only one process ever writes a cell.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


class ArmSeedWorker:
    """Computes units of a study, one (arm, seed) at a time.

    Args:
        study: The study (settings, store, tasks).
        bar: A tqdm bar advanced once per cell.
        on_cell: Optional callback after each written cell.
    """

    def __init__(self, study: Study, bar: Any, on_cell: OnCell | None) -> None:
        self.study, self.bar, self.on_cell = study, bar, on_cell
        self.computed = 0
        self._segmenter: Any = None
        self._attention: dict[str, AttentionInputs] = {}

    def run(
        self,
        arm: Arm,
        seed: int,
        todo: list[CellKey],
        budget: int | None,
        claim: Claim | None = None,
    ) -> int:
        """Pretrain ``arm`` with ``seed`` and compute ``todo`` (at most ``budget`` cells).

        Returns:
            The number of cells computed.

        Raises:
            ClaimLostError: ``claim`` was taken over by another worker.
        """
        study = self.study
        checkpoint_dir = study.pretrain_dir / arm.folder / f"seed{seed}"
        if claim is not None:
            claim.status = {"phase": "pretraining", "stage": f"0/{len(arm.stages)}"}
            claim.progress = lambda: pretraining_progress(checkpoint_dir, arm)
        backbone, record = pretrain(
            arm, seed, arch=study.arch, data=study.pretrain_data, batch_size=study.batch_size,
            image_size=study.image_size, device=study.device, workers=study.workers,
            checkpoint_dir=checkpoint_dir, keep=study.keep,
            loggers=prefixed(study.loggers, f"pretrain/{arm.name}/seed{seed}"),
        )  # fmt: skip
        count = 0
        if claim is not None:
            claim.progress = None
        if is_main():
            backbone.eval()
            for task in study.tasks:
                keys = [k for k in todo if k.task == task.name]
                frozen = None
                if any(k.protocol != "fine_tune" for k in keys):
                    frozen = FrozenFeatures.compute(
                        backbone, *task.datasets, image_size=study.image_size
                    )
                for key in keys:
                    if budget is not None and count >= budget:
                        break
                    if claim is not None:
                        if claim.lost.is_set():
                            raise ClaimLostError(f"{claim.path} was taken over by another worker")
                        claim.status = {"phase": "cells", "cell": key.relpath, "cells_done": count}
                    cell = self._cell(key, backbone, task, frozen)
                    cell.update(pretrain=record, settings=study.settings(key))
                    written = study.store.write(key, cell)
                    count += 1
                    self._log(key, cell, written is None)
                    if self.on_cell is not None:
                        self.on_cell(key, cell)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        return count

    def _log(self, key: CellKey, cell: dict[str, Any], kept: bool) -> None:
        self.bar.update(1)
        self.computed += 1
        logger.info(
            "computed cell %s: %s %.4f (%.1f s)%s",
            key.relpath, cell["metric"], cell["value"], cell["seconds"],
            "; another worker had recorded it first: its file is kept" if kept else "",
        )  # fmt: skip

    def _cell(self, key: CellKey, backbone: nn.Module, task: Task, frozen: Any) -> dict[str, Any]:
        study = self.study
        attention, scorer = None, None
        n_attention = study.protocol_settings.attention_images
        if key.protocol == "fine_tune" and n_attention > 0 and task.attention:
            from cxr_curriculum.attention import LungAttentionScorer

            attention = self._attention_inputs(task, n_attention)
            scorer = LungAttentionScorer(segmenter=self._lung_segmenter(), n_boot=100)
        record = run_cell(
            key.protocol, backbone, task, fraction=key.fraction, seed=key.seed,
            image_size=study.image_size, settings=study.protocol_settings, frozen=frozen,
            attention=attention, scorer=scorer,
        )  # fmt: skip
        record["run"] = {
            "threads": torch.get_num_threads(),
            "device": str(next(backbone.parameters()).device),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return record

    def _lung_segmenter(self) -> Any:
        if self._segmenter is None:
            from cxr_curriculum.segmentation import LungSegmenter

            self._segmenter = LungSegmenter()
        return self._segmenter

    def _attention_inputs(self, task: Task, n: int) -> AttentionInputs:
        if task.name not in self._attention:
            self._attention[task.name] = AttentionInputs.build(
                task, n, self.study.image_size, self._lung_segmenter()
            )
        return self._attention[task.name]
