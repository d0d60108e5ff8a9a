"""Downstream tasks of a study: a labelled train/test pair, its metric and its scores.

A task tells the study which datasets to evaluate a backbone on, how to turn a
protocol's :class:`~cxr_curriculum.evaluation.EvalResult` into the per-image scores a
cell stores, and how to compute its metric under bootstrap weights. Kermany pneumonia
(binary AUROC, Kermany et al., Cell 2018) is built in; a multi-label task (macro
AUROC) subclasses :class:`Task` and overrides :meth:`Task.cell_scores` and
:meth:`Task.weighted_metric`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from cxr_curriculum.curriculum import data_fingerprint
from cxr_curriculum.data import KermanyPneumonia, data_root, dataset_patient_ids
from cxr_curriculum.evaluation import EvalResult
from cxr_curriculum.evaluation.fractions import labels_of
from cxr_curriculum.study.resample import weighted_binary_auroc

__all__ = ["KermanyTask", "Task"]


class Task(ABC):
    """A labelled downstream task: name, training and test sets, metric.

    Subclasses implement :meth:`load`; the datasets are loaded once, on first use.
    """

    #: Name used in folders and reports.
    name: str = "task"
    #: Name of the metric :meth:`weighted_metric` computes (``"auroc"``: binary, so
    #: comparisons add DeLong's test per seed).
    metric: str = "auroc"
    #: Score fine-tuned models' lung attention (Grad-CAM explaining the true class).
    attention: bool = True

    @abstractmethod
    def load(self) -> tuple[Dataset[Any], Dataset[Any]]:
        """Return ``(train, test)`` labelled datasets (``.labels``, ``.patient_ids``)."""

    @cached_property
    def datasets(self) -> tuple[Dataset[Any], Dataset[Any]]:
        """``(train, test)``, loaded once."""
        return self.load()

    @cached_property
    def test_labels(self) -> Tensor:
        """``(N,)`` test labels (image order of the test set)."""
        labels = labels_of(self.datasets[1])
        if labels is None:
            raise ValueError(f"task {self.name!r}: the test set has no .labels")
        return labels

    @cached_property
    def test_groups(self) -> list[str]:
        """Patient id per test image (the bootstrap resamples patients)."""
        return [str(p) for p in dataset_patient_ids(self.datasets[1])]

    def config(self) -> dict[str, Any]:
        """JSON-able description: name, metric and fingerprints of both sets."""
        train, test = self.datasets
        return {
            "name": self.name,
            "class": type(self).__name__,
            "metric": self.metric,
            "train": data_fingerprint(train),
            "test": data_fingerprint(test),
            "n_train": len(train),  # type: ignore[arg-type]
            "n_test": len(test),  # type: ignore[arg-type]
        }

    def cell_scores(self, result: EvalResult) -> Tensor:
        """The per-image scores a cell stores: ``(N,)`` positive-class probabilities."""
        return result.positive_scores

    def weighted_metric(self, scores: Tensor, weights: Tensor) -> Tensor:
        """``(R,)`` metric of stored ``scores`` under ``(R, N)`` image weights."""
        return weighted_binary_auroc(scores, self.test_labels, weights)

    def metric_value(self, scores: Tensor) -> float:
        """The metric on the full test set."""
        ones = torch.ones(1, self.test_labels.shape[0], dtype=torch.float64)
        return float(self.weighted_metric(scores, ones)[0])


class KermanyTask(Task):
    """Pneumonia vs normal on Kermany et al. (Cell 2018), binary AUROC.

    Args:
        root: The ``kermany-pneumonia`` folder; default ``data_root()/kermany-pneumonia``
            (pass :func:`cxr_curriculum.data.bundled_sample_root` for the bundled sample).
        name: Task name.
        stride: Keep every ``stride``-th image of both splits (quick runs; 1 keeps all).
        cache_dir: Serve both splits decoded once and shrunk to ``cache_long_side``
            pixels (:class:`~cxr_curriculum.data.DecodedCache`); ``None`` reads the files.
        cache_long_side: Longer side of the cached images.
        cache_workers: Processes that build the cache.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        name: str = "kermany",
        stride: int = 1,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_long_side: int = 512,
        cache_workers: int = 0,
    ) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int; got {stride!r}")
        self.root = root
        self.name = name
        self.stride = stride
        self.cache_dir, self.cache_long_side = cache_dir, cache_long_side
        self.cache_workers = cache_workers

    def load(self) -> tuple[Dataset[Any], Dataset[Any]]:
        """The published train and test splits (every ``stride``-th image)."""
        root = self.root if self.root is not None else data_root() / "kermany-pneumonia"
        train: Dataset[Any] = KermanyPneumonia(root, split="train")
        test: Dataset[Any] = KermanyPneumonia(root, split="test")
        if self.stride > 1:
            train = Subset(train, range(0, len(train), self.stride))  # type: ignore[arg-type]
            test = Subset(test, range(0, len(test), self.stride))  # type: ignore[arg-type]
        if self.cache_dir is not None:
            from cxr_curriculum.data import DecodedCache

            side, workers = self.cache_long_side, self.cache_workers
            train = DecodedCache(train, self.cache_dir, side, num_workers=workers)
            test = DecodedCache(test, self.cache_dir, side, num_workers=workers)
        return train, test
