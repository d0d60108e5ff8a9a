"""Monitors: downstream scores of the backbone logged while a stage trains.

Self-supervised losses say little about how useful the features are. Like lightly's and
solo-learn's kNN callbacks, a :class:`KNNMonitor` scores the backbone every ``every``
steps with a kNN classifier on a small labelled split and the Curriculum writes the
scores into the stage's metrics log (``knn_accuracy``, ``knn_auroc`` columns of
``metrics.csv``). The classifier is passed in as ``evaluator`` (normally
:func:`cxr_curriculum.evaluation.knn_evaluate`, the weighted kNN of Wu et al., CVPR
2018, Sec. 3.4): the curriculum layer sits below evaluation and imports nothing from it.
A monitor does not change training: it runs on frozen features in eval mode (BatchNorm
statistics untouched), under a forked RNG, on rank 0 only, and is left out of the
stage's settings hash.

Any object with ``every``, ``fields`` and ``__call__(backbone, *, image_size, device)``
returning ``{field: value}`` can be a stage's monitor (:class:`StageMonitor`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["KNN_METRICS", "KNNEvaluator", "KNNMonitor", "StageMonitor"]

#: Scores a :class:`KNNMonitor` can log (keys of ``EvalResult.metrics()``).
KNN_METRICS = ("auroc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity")


class _Scores(Protocol):
    def metrics(self) -> Mapping[str, float]: ...


class KNNEvaluator(Protocol):
    """What :class:`KNNMonitor` calls: ``cxr_curriculum.evaluation.knn_evaluate`` fits.

    ``evaluator(backbone, train, val, *, k, temperature, image_size, batch_size, device)``
    returns a result whose ``metrics()`` maps metric names (:data:`KNN_METRICS`) to values.
    """

    def __call__(
        self,
        backbone: nn.Module,
        train_ds: Dataset[Any],
        test_ds: Dataset[Any],
        /,
        *,
        k: int,
        temperature: float,
        image_size: int,
        batch_size: int,
        device: torch.device,
    ) -> _Scores: ...


@runtime_checkable
class StageMonitor(Protocol):
    """What :class:`~cxr_curriculum.curriculum.Stage` accepts as ``monitor=``.

    Attributes:
        every: run after every ``every`` optimiser steps (and after the stage's last).
        fields: the metric columns it fills, e.g. ``("knn_accuracy",)``.
    """

    every: int

    @property
    def fields(self) -> tuple[str, ...]:
        """Column names of the values :meth:`__call__` returns."""
        ...

    def __call__(
        self, backbone: nn.Module, *, image_size: int, device: torch.device
    ) -> dict[str, float]:
        """Score ``backbone`` (in place of its training; must not change its weights)."""
        ...


@dataclass(frozen=True, eq=False)
class KNNMonitor:
    """kNN scores of the backbone on a labelled split, every ``every`` steps of a stage.

    Args:
        train: labelled dataset whose features vote (a few hundred images is plenty);
            items ``(image, label, ...)`` as the ``cxr_curriculum.data`` loaders give.
        val: labelled dataset that is scored; keep it out of the pretraining pool.
        evaluator: the kNN classifier, :func:`cxr_curriculum.evaluation.knn_evaluate`
            or any callable of the same form (:class:`KNNEvaluator`).
        every: optimiser steps between two evaluations (also run after the last step).
        k: neighbours (clipped to the size of ``train``).
        temperature: vote temperature (0.07, Wu et al. 2018).
        image_size: input side for the features; ``None`` uses the stage's ``image_size``.
        batch_size: images per forward pass.
        metrics: which of :data:`KNN_METRICS` to log, as columns ``knn_<metric>``; a
            metric undefined on ``val`` (AUROC with one class present) is logged as NaN.

    Example::

        from cxr_curriculum.evaluation import knn_evaluate

        monitor = KNNMonitor(train_subset, val_subset, knn_evaluate, every=50)
        Stage(SimCLR(), pool, steps=500, monitor=monitor)
    """

    train: Dataset[Any]
    val: Dataset[Any]
    evaluator: KNNEvaluator
    every: int = 100
    k: int = 20
    temperature: float = 0.07
    image_size: int | None = None
    batch_size: int = 64
    metrics: tuple[str, ...] = ("accuracy", "auroc")

    def __post_init__(self) -> None:
        for name in ("train", "val"):
            data = getattr(self, name)
            if not hasattr(data, "__len__") or len(data) == 0:
                raise ValueError(f"KNNMonitor.{name} must be a non-empty labelled dataset")
        if not callable(self.evaluator):
            raise ValueError(
                "KNNMonitor.evaluator must be a callable such as "
                f"cxr_curriculum.evaluation.knn_evaluate; got {self.evaluator!r}"
            )
        for name in ("every", "k", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"KNNMonitor.{name} must be a positive int; got {value!r}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"KNNMonitor.image_size must be >= 1 or None; got {self.image_size}")
        if not self.temperature > 0:
            raise ValueError(f"KNNMonitor.temperature must be > 0; got {self.temperature}")
        unknown = [m for m in self.metrics if m not in KNN_METRICS]
        if not self.metrics or unknown:
            raise ValueError(
                f"KNNMonitor.metrics must be a non-empty subset of {KNN_METRICS}; got "
                f"{self.metrics!r}"
            )

    @property
    def fields(self) -> tuple[str, ...]:
        """``knn_<metric>`` for each logged metric."""
        return tuple(f"knn_{m}" for m in self.metrics)

    def __call__(
        self, backbone: nn.Module, *, image_size: int, device: torch.device
    ) -> dict[str, float]:
        """kNN-classify ``val`` with the features of ``train``; return ``{knn_<metric>: value}``."""
        result = self.evaluator(
            backbone, self.train, self.val, k=min(self.k, len(self.train)),  # type: ignore[arg-type]
            temperature=self.temperature, image_size=self.image_size or image_size,
            batch_size=self.batch_size, device=device,
        )  # fmt: skip
        scores = result.metrics()
        return {f"knn_{m}": float(scores.get(m, math.nan)) for m in self.metrics}
