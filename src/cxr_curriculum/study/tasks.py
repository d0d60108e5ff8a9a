"""Downstream tasks of a study: a labelled train/test pair, its metric and its scores.

A task tells the study which datasets to evaluate a backbone on, how to turn a
protocol's :class:`~cxr_curriculum.evaluation.EvalResult` into the per-image scores a
cell stores, and how to compute its metric under bootstrap weights. Kermany pneumonia
(binary AUROC, Kermany et al., Cell 2018) is built in; the generic
:class:`~cxr_curriculum.study.BinaryTask` and
:class:`~cxr_curriculum.study.MultiLabelTask` take any ``(train, test)`` pair, and
:func:`~cxr_curriculum.study.build_task` builds one per dataset kind.

The API a task of your own implements (``docs/study.md``, "Custom tasks"):

* :meth:`Task.load` (required): return ``(train, test)`` labelled datasets exposing
  ``.labels`` and ``.patient_ids`` (every loader of :mod:`cxr_curriculum.data` does);
* :attr:`Task.name`, :attr:`Task.metric`, :attr:`Task.attention` (class attributes or
  set in ``__init__``);
* optionally :meth:`Task.config` (add what defines your data, e.g. a split seed),
  :meth:`Task.cell_scores` and :meth:`Task.weighted_metric` (another metric), and
  :attr:`Task.mask_source` with ``lung_mask_files`` on the test set (your own lung masks).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset

from cxr_curriculum.curriculum import data_fingerprint
from cxr_curriculum.data import (
    ImageReadError,
    KermanyPneumonia,
    data_root,
    dataset_patient_ids,
    read_mask,
)
from cxr_curriculum.data.findings import root_and_indices
from cxr_curriculum.data.formats import sniff_file
from cxr_curriculum.evaluation import EvalResult
from cxr_curriculum.evaluation.fractions import labels_of
from cxr_curriculum.study.resample import weighted_binary_auroc

__all__ = ["MASK_SAMPLE", "KermanyTask", "Task", "check_stride", "strided_and_cached"]

#: Test lung masks decoded in full by :meth:`Task.check` (evenly spaced); every one is sniffed.
MASK_SAMPLE = 16


def check_stride(stride: Any) -> int:
    """``stride`` if it is a positive int (every ``stride``-th image is kept)."""
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int; got {stride!r}")
    return stride


def strided_and_cached(
    train: Dataset[Any],
    test: Dataset[Any],
    stride: int,
    cache_dir: str | os.PathLike[str] | None,
    cache_long_side: int,
    cache_workers: int,
) -> tuple[Dataset[Any], Dataset[Any]]:
    """Every ``stride``-th image of both sets, served from a
    :class:`~cxr_curriculum.data.DecodedCache` in ``cache_dir`` when one is set
    (decoded once, shrunk to ``cache_long_side`` pixels by ``cache_workers`` processes)."""
    if stride > 1:
        train = Subset(train, range(0, len(train), stride))  # type: ignore[arg-type]
        test = Subset(test, range(0, len(test), stride))  # type: ignore[arg-type]
    if cache_dir is not None:
        from cxr_curriculum.data import DecodedCache

        train = DecodedCache(train, cache_dir, cache_long_side, num_workers=cache_workers)
        test = DecodedCache(test, cache_dir, cache_long_side, num_workers=cache_workers)
    return train, test


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
    #: What the task's own lung masks are (e.g. ``"V7 Labs lung masks, drawn by people"``),
    #: or None when it has none. With masks, the test set lists them per image in
    #: ``lung_mask_files`` (None for an image without one) and lung attention is scored
    #: against them as well as against the bundled segmenter's masks.
    mask_source: str | None = None
    #: Raw mask value that means "ignore" in the task's own masks (V7: 127).
    mask_ignore_value: int | None = None

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

    def test_mask_files(self) -> list[Path | None] | None:
        """The task's own lung mask file of each test image (None: no mask), or None.

        None when the task has no masks (:attr:`mask_source` is None).
        """
        if self.mask_source is None:
            return None
        base, index = root_and_indices(self.datasets[1])
        files = getattr(base, "lung_mask_files", None)
        if files is None:
            raise ValueError(
                f"task {self.name!r} names a mask source but its test set has no lung_mask_files"
            )
        return [None if files[i] is None else Path(files[i]) for i in index]

    def test_lung_masks(self, index: list[int], size: int) -> Tensor:
        """The task's own lung masks of test images ``index``, at ``size x size`` pixels.

        A mask is resized as :class:`~cxr_curriculum.study.runner.AttentionInputs`
        resizes its image (to a square; nearest neighbour); pixels marked "ignore" are
        not lung.

        Returns:
            ``(M, size, size)`` bool.

        Raises:
            ValueError: The task has no masks, or one of the images has none.
        """
        files = self.test_mask_files()
        if files is None:
            raise ValueError(f"task {self.name!r} has no lung masks of its own")
        out = []
        for i in index:
            path = files[i]
            if path is None:
                raise ValueError(f"task {self.name!r}: test image {i} has no lung mask")
            mask = read_mask(path, ignore_value=self.mask_ignore_value)
            lung = (mask == 1).to(torch.float32)[None]
            out.append(F.interpolate(lung, size=(size, size), mode="nearest")[0, 0] > 0.5)
        return torch.stack(out) if out else torch.zeros(0, size, size, dtype=torch.bool)

    def check(self) -> dict[str, Any]:
        """Load both sets and check that the task can be scored; a summary for the report.

        Binary tasks need both classes in the training and the test set (AUROC is
        undefined otherwise); a task with lung masks needs at least one test image with
        a mask; every mask file must be a PNG or JPEG image (its first bytes are read) and
        :data:`MASK_SAMPLE` of them, evenly spaced, are decoded. Subclasses add their own
        checks (multi-label: findings to score).

        Returns:
            ``{"name", "n_train", "n_test", "test_patients", "test_classes", ...}``.

        Raises:
            ValueError: Naming the task and what is wrong.
        """
        train, test = self.datasets
        out: dict[str, Any] = {
            "name": self.name,
            "n_train": len(train),  # type: ignore[arg-type]
            "n_test": len(test),  # type: ignore[arg-type]
            "test_patients": len(set(self.test_groups)),
        }
        for split, data in (("training", train), ("test", test)):
            if len(data) == 0:  # type: ignore[arg-type]
                raise ValueError(f"task {self.name!r}: its {split} set is empty")
        if self.metric == "auroc":
            classes = getattr(root_and_indices(test)[0], "classes", None)
            for split, data in (("training", train), ("test", test)):
                labels = labels_of(data)
                if labels is None:
                    raise ValueError(f"task {self.name!r}: the {split} set has no .labels")
                counts = Counter(int(v) for v in labels.tolist())
                if len(counts) < 2:
                    (only,) = counts
                    what = classes[only] if classes and 0 <= only < len(classes) else only
                    raise ValueError(
                        f"task {self.name!r}: its {split} set has only class {what!r} "
                        f"({counts[only]} images); a binary task needs both classes (AUROC "
                        "is undefined with one): use more data, another split or split seed"
                    )
            test_counts = Counter(int(v) for v in self.test_labels.tolist())
            out["test_classes"] = {
                (classes[k] if classes and k < len(classes) else str(k)): n
                for k, n in sorted(test_counts.items())
            }
        masks = self.test_mask_files()
        if masks is not None:
            have = [i for i, m in enumerate(masks) if m is not None]
            if not have:
                raise ValueError(
                    f"task {self.name!r}: none of its {len(masks)} test images has a lung mask"
                )
            for i in have:  # every mask file is an image (its first bytes) ...
                path = masks[i]
                assert path is not None
                kind = sniff_file(path, "lung mask")
                if kind not in ("png", "jpeg"):
                    raise ImageReadError(
                        path, f"task {self.name!r}: lung mask is not a PNG or JPEG image ({kind})"
                    )
            step = max(1, len(have) // MASK_SAMPLE)  # ... and a sample decodes in full
            self.test_lung_masks(have[::step][:MASK_SAMPLE], 32)
            out["test_masks"] = len(have)
        return out

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
        self.root = root
        self.name = name
        self.stride = check_stride(stride)
        self.cache_dir, self.cache_long_side = cache_dir, cache_long_side
        self.cache_workers = cache_workers

    def load(self) -> tuple[Dataset[Any], Dataset[Any]]:
        """The published train and test splits (every ``stride``-th image)."""
        root = self.root if self.root is not None else data_root() / "kermany-pneumonia"
        train, test = KermanyPneumonia(root, split="train"), KermanyPneumonia(root, split="test")
        return strided_and_cached(
            train, test, self.stride, self.cache_dir, self.cache_long_side, self.cache_workers
        )
