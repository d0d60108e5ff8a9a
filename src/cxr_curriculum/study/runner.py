"""The work of a study: pretrain one arm with one seed, evaluate one cell.

Pretraining goes through the public :class:`~cxr_curriculum.Curriculum` (its own
checkpoints make an interrupted pretraining resume at the step it reached); a cell is
one protocol of :mod:`cxr_curriculum.evaluation` at one label fraction, plus, for
fine-tuned models, the lung-attention score of :class:`~cxr_curriculum.LungAttentionScorer`
(Grad-CAM on the backbone's finer layer, explaining the true class, as
``benchmarks/bench_curriculum.py`` did): against the bundled segmenter's masks
(``energy_in_mask``, ``lift``, ``pointing_game``) and, for a task with lung masks of its
own (:attr:`~cxr_curriculum.study.Task.mask_source`), against those too, from the same
saliency maps (the same metrics prefixed with :data:`TASK_MASK_PREFIX`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from cxr_curriculum.backbones import Backbone, WeightsNotAvailableError
from cxr_curriculum.curriculum import Curriculum, Keep, MetricLogger
from cxr_curriculum.evaluation import FrozenFeatures, fine_tune, knn_evaluate, linear_probe
from cxr_curriculum.study.arms import Arm
from cxr_curriculum.study.starts import start_backbone
from cxr_curriculum.study.tasks import Task

if TYPE_CHECKING:
    from cxr_curriculum.attention import LungAttentionScorer

__all__ = [
    "ATTENTION_METRICS",
    "PROTOCOLS",
    "TASK_MASK_PREFIX",
    "AttentionInputs",
    "Protocols",
    "pretrain",
    "run_cell",
]

#: Downstream protocols a study can run.
PROTOCOLS = ("knn", "linear_probe", "fine_tune")
#: Pretraining writes a resumable checkpoint every this many optimiser steps.
CHECKPOINT_EVERY = 50
#: Lung-attention metrics stored per image for fine-tuned models.
ATTENTION_METRICS = ("energy_in_mask", "lift", "pointing_game")
#: Prefix of the attention metrics scored against a task's own lung masks (``task_mask.lift``).
TASK_MASK_PREFIX = "task_mask."


@dataclass(frozen=True)
class Protocols:
    """Settings of the downstream protocols (the paper's downstream table, arXiv 2301.10687).

    Attributes:
        finetune_steps: AdamW steps of fine-tuning (the same at every label fraction).
        finetune_batch_size: Fine-tuning batch size.
        finetune_lr: Fine-tuning peak learning rate.
        knn_k: Neighbours of the kNN protocol.
        probe_l2: L2 penalty of the linear probe.
        attention_images: Test images scored for lung attention (0: none).
        faithfulness: Perturbation metrics added to the attention record of fine-tuned
            models (any of ``"deletion"``, ``"insertion"``, ``"road"`` and ``"lungs"``,
            the lung-restricted effect; see :mod:`cxr_curriculum.attention.faithfulness`).
            Off by default: with the default settings (16 steps, 9 ROAD percentiles)
            together they cost 118 forward passes and 18 small sparse solves per scored
            image (docs/attention.md).
    """

    finetune_steps: int = 100
    finetune_batch_size: int = 32
    finetune_lr: float = 1e-3
    knn_k: int = 20
    probe_l2: float = 1e-3
    attention_images: int = 48
    faithfulness: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from cxr_curriculum.attention.faithfulness import check_faithfulness

        object.__setattr__(self, "faithfulness", check_faithfulness(self.faithfulness))

    @property
    def attention_columns(self) -> tuple[str, ...]:
        """Per-image columns of a fine-tuned cell's attention record."""
        from cxr_curriculum.attention import FAITHFULNESS_COLUMNS

        extra = [c for name in self.faithfulness for c in FAITHFULNESS_COLUMNS[name]]
        return ATTENTION_METRICS + tuple(extra)

    def config(self, protocol: str) -> dict[str, Any]:
        """The settings that change ``protocol``'s result."""
        if protocol == "knn":
            return {"name": protocol, "k": self.knn_k}
        if protocol == "linear_probe":
            return {"name": protocol, "l2": self.probe_l2}
        out: dict[str, Any] = {
            "name": protocol,
            "steps": self.finetune_steps,
            "batch_size": self.finetune_batch_size,
            "lr": self.finetune_lr,
            "attention_images": self.attention_images,
        }
        if self.faithfulness:  # absent when off, so cells of earlier studies stay valid
            out["faithfulness"] = list(self.faithfulness)
        return out


def pretrain(
    arm: Arm,
    seed: int,
    *,
    arch: str,
    data: Dataset[Any] | None,
    batch_size: int,
    image_size: int,
    checkpoint_dir: str | os.PathLike[str],
    device: str | torch.device | None = None,
    workers: int = 0,
    keep: Keep = "all",
    loggers: Sequence[MetricLogger] = (),
) -> tuple[Backbone, dict[str, Any]]:
    """Build the arm's start (random, ImageNet or its file) and run its stages with ``seed``.

    ``keep`` and ``loggers`` are the Curriculum's (what stays in ``checkpoint_dir`` once it
    is done; where its metric rows go besides ``metrics.csv``).

    Returns:
        The backbone and a record: seconds (a stage finished in an earlier run counts
        the training time its log recorded then), final loss per stage.

    Raises:
        WeightsNotAvailableError: ImageNet start without the weights (offline).
    """
    torch.manual_seed(seed)
    backbone = start_backbone(arm, arch)
    record: dict[str, Any] = {"seconds": 0.0, "stages": []}
    if not arm.stages:
        return backbone, record
    if data is None:
        raise ValueError(f"arm {arm.name!r} has stages but the study has no pretraining data")
    stages = [
        s.build(data, batch_size, image_size).replace(num_workers=workers) for s in arm.stages
    ]
    cur = Curriculum(
        stages,
        checkpoint_dir=Path(checkpoint_dir),
        seed=seed,
        progress=False,
        device=device,
        checkpoint_every=CHECKPOINT_EVERY,
        keep=keep,
        loggers=loggers,
    )
    for r in cur.iter_stages(backbone):
        seconds = float(r.metrics[-1]["time_s"]) if r.skipped and r.metrics else r.seconds
        record["seconds"] += seconds
        record["stages"].append(
            {"name": r.name, "steps": r.steps, "seconds": seconds, "final_loss": r.final_loss}
        )
    return backbone, record


def imagenet_status(arm: Arm, arch: str) -> str | None:
    """``None`` if the arm can be built, else why not (for an ImageNet start offline)."""
    if arm.start != "imagenet":
        return None
    try:
        Backbone(arch, weights="imagenet")
    except WeightsNotAvailableError as err:
        return f"not measured: {type(err).__name__}: {str(err).splitlines()[0]}"
    return None


@dataclass(frozen=True)
class AttentionInputs:
    """Test images scored for lung attention: ``(M, 1, S, S)`` images, masks, targets.

    Attributes:
        task_masks: ``(M, S, S)`` bool: the task's own lung masks, or None without them.
    """

    index: list[int]
    images: Tensor
    masks: Tensor
    targets: list[int]
    patient_ids: list[str]
    task_masks: Tensor | None = None

    @classmethod
    def build(cls, task: Task, n: int, image_size: int, segmenter: Any) -> AttentionInputs:
        """``n`` evenly spaced test images at ``image_size`` with predicted lung masks.

        For a task with lung masks of its own, the images are drawn from the test
        images that have one, and both kinds of masks are kept.
        """
        test = task.datasets[1]
        mask_files = task.test_mask_files()
        if mask_files is None:
            candidates = list(range(len(test)))  # type: ignore[arg-type]
        else:
            candidates = [i for i, m in enumerate(mask_files) if m is not None]
        step = max(1, len(candidates) // n)
        index = [candidates[k] for k in range(0, len(candidates), step)][:n]
        size = (image_size, image_size)  # each on its own: test images may differ in size
        images = torch.cat(
            [F.interpolate(test[i][0][None], size=size, mode="bilinear", align_corners=False)
             for i in index]
        )  # fmt: skip
        masks = segmenter.predict(images).any(dim=1)
        labels = task.test_labels
        groups = task.test_groups
        own = None if mask_files is None else task.test_lung_masks(index, image_size)
        return cls(
            index,
            images,
            masks,
            [int(labels[i]) for i in index],
            [groups[i] for i in index],
            own,
        )


def run_cell(
    protocol: str,
    backbone: nn.Module,
    task: Task,
    *,
    fraction: float,
    seed: int,
    image_size: int,
    settings: Protocols,
    frozen: FrozenFeatures | None,
    attention: AttentionInputs | None,
    scorer: LungAttentionScorer | None,
) -> dict[str, Any]:
    """Evaluate one cell; returns its record (scores rounded to float32 precision)."""
    train, test = task.datasets
    t0 = time.perf_counter()
    kw: dict[str, Any] = {"fraction": fraction, "seed": seed, "image_size": image_size}
    if protocol == "knn":
        res = knn_evaluate(backbone, train, test, k=settings.knn_k, features=frozen, **kw)
    elif protocol == "linear_probe":
        res = linear_probe(backbone, train, test, l2=settings.probe_l2, features=frozen, **kw)
    elif protocol == "fine_tune":
        res = fine_tune(
            backbone,
            train,
            test,
            steps=settings.finetune_steps,
            batch_size=settings.finetune_batch_size,
            lr=settings.finetune_lr,
            **kw,
        )
    else:
        raise ValueError(f"unknown protocol {protocol!r}; allowed: {PROTOCOLS}")
    scores = [float(f"{v:.9g}") for v in task.cell_scores(res).flatten().tolist()]
    stored = torch.tensor(scores, dtype=torch.float64).reshape(task.cell_scores(res).shape)
    record: dict[str, Any] = {
        "metric": task.metric,
        "value": task.metric_value(stored),
        "scores": scores,
        "n_train": res.n_train,
    }
    if protocol == "fine_tune" and attention is not None and scorer is not None:
        model = res.model
        if model is None:
            raise RuntimeError("fine_tune returned no model to score")
        record["attention"] = score_attention(model, attention, scorer, settings)
    record["seconds"] = round(time.perf_counter() - t0, 2)
    return record


def score_attention(
    model: nn.Module,
    attention: AttentionInputs,
    scorer: LungAttentionScorer,
    settings: Protocols | None = None,
) -> dict[str, Any]:
    """Per-image lung attention of a fine-tuned model: ``{metric: [value or None, ...]}``.

    Scored against the predicted masks (:attr:`Protocols.attention_columns`: the lung
    metrics plus any faithfulness metrics switched on) and, where the inputs carry the
    task's own masks, against those from the same saliency maps (lung metrics only, keys
    prefixed with :data:`TASK_MASK_PREFIX`); ``image_index`` lists the test images.
    """
    settings = settings or Protocols()
    layer = getattr(getattr(model, "backbone", None), "fine_target_layer", None)
    scorer.target_layer = layer if isinstance(layer, nn.Module) else None
    scorer.faithfulness = settings.faithfulness
    device = next(model.parameters()).device
    own = attention.task_masks is not None
    rep = scorer.score(
        model.eval(),
        attention.images.to(device),
        targets=attention.targets,
        masks=attention.masks,
        patient_ids=attention.patient_ids,
        keep_maps=own,
    )
    out: dict[str, Any] = {
        "image_index": attention.index,
        **_columns(rep, "", settings.attention_columns),
    }
    if own and rep.saliency is not None:
        scorer.faithfulness = ()  # needs the model; the perturbations do not use the masks
        task_rep = scorer.score(
            None,
            attention.images,
            masks=attention.task_masks,
            patient_ids=attention.patient_ids,
            saliency=rep.saliency.cpu(),
            keep_maps=False,
        )
        scorer.faithfulness = settings.faithfulness
        out.update(_columns(task_rep, TASK_MASK_PREFIX, ATTENTION_METRICS))
    return out


def _columns(report: Any, prefix: str, metrics: Sequence[str]) -> dict[str, list[float | None]]:
    return {
        prefix + m: [None if v != v else round(v, 6) for v in report.column(m).tolist()]
        for m in metrics
    }
