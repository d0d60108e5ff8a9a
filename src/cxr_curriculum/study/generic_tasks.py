"""Tasks built from any ``(train, test)`` pair: one binary, one multi-label.

Every dataset kind of :func:`~cxr_curriculum.study.build_task` becomes one of these two
classes; they differ only in the metric. :class:`BinaryTask` reports AUROC (and the
study adds DeLong's test per seed); :class:`MultiLabelTask` reports the macro AUROC over
the findings with enough positive and negative test images, plus a per-finding AUROC
table in the study's results (:func:`~cxr_curriculum.study.findings_table.finding_table`).

The data may be given as the pair itself or as a function that returns it (read on
first use, so that building a study reads no table). ``source`` describes where the data
come from (dataset kind, table, split and its seed, ...): it is part of the task's
:meth:`~cxr_curriculum.study.Task.config`, so a study refuses to resume with another split.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from cxr_curriculum.data import patient_split
from cxr_curriculum.evaluation import EvalResult
from cxr_curriculum.evaluation.fractions import class_names_of, targets_of
from cxr_curriculum.study.multilabel_task import finding_selection, weighted_macro_auroc
from cxr_curriculum.study.tasks import Task, check_stride, strided_and_cached

__all__ = ["BinaryTask", "DatasetPair", "MultiLabelTask", "split_by_patient"]

#: ``(train, test)`` labelled datasets.
DatasetPair = tuple[Dataset[Any], Dataset[Any]]


def split_by_patient(dataset: Dataset[Any], test_share: float, seed: int) -> DatasetPair:
    """A patient-level, label-stratified ``(train, test)`` split of one dataset.

    Args:
        dataset: A dataset with ``.patient_ids`` and ``.labels``.
        test_share: Share of the patients (per label stratum) in the test split, in (0, 1).
        seed: Seed of the split (record it: see :class:`BinaryTask`'s ``source``).

    Raises:
        ValueError: ``test_share`` outside (0, 1), or too few patients for two splits.
    """
    if not 0.0 < float(test_share) < 1.0:
        raise ValueError(f"test_share must lie in (0, 1); got {test_share}")
    train, test = patient_split(dataset, (1.0 - test_share, test_share), seed=seed)
    return train, test


class _DatasetTask(Task):
    """Shared part of the generic tasks: data, source description, cache."""

    def __init__(
        self,
        data: DatasetPair | Callable[[], DatasetPair],
        *,
        name: str,
        source: Mapping[str, Any] | None = None,
        mask_source: str | None = None,
        mask_ignore_value: int | None = None,
        stride: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_long_side: int = 512,
        cache_workers: int = 0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string; got {name!r}")
        self.stride = check_stride(stride)
        if not callable(data) and not (isinstance(data, tuple) and len(data) == 2):
            raise ValueError("data must be a (train, test) pair or a function returning one")
        self._data = data
        self.name = name
        self.source = dict(source or {})
        self.mask_source, self.mask_ignore_value = mask_source, mask_ignore_value
        self.cache_dir, self.cache_long_side = cache_dir, cache_long_side
        self.cache_workers = cache_workers

    def load(self) -> DatasetPair:
        """The pair (built on first use), served from a ``DecodedCache`` if one is set."""
        pair = self._data() if callable(self._data) else self._data
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"task {self.name!r}: the data function must return (train, test)")
        train, test = pair
        return strided_and_cached(
            train, test, self.stride, self.cache_dir, self.cache_long_side, self.cache_workers
        )

    def config(self) -> dict[str, Any]:
        """The base description plus ``source`` (dataset kind, split and seed, ...)."""
        out = super().config()
        if self.source:
            out["source"] = dict(self.source)
        if self.mask_source is not None:
            out["mask_source"] = self.mask_source
        return out


class BinaryTask(_DatasetTask):
    """A binary task (AUROC; DeLong's test per seed) from a ``(train, test)`` pair.

    Args:
        data: ``(train, test)`` datasets with ``.labels`` in {0, 1} and ``.patient_ids``,
            or a function returning them (called once, on first use).
        name: Task name (folders, reports).
        source: JSON-able description of the data (kind, table, split, seed); part of
            the task's config, so a changed split is refused on resume.
        mask_source: What the test set's own lung masks are (its ``lung_mask_files``),
            or None when it has none.
        mask_ignore_value: Raw mask value that means "ignore" in those masks.
        stride: Keep every ``stride``-th image of both sets (quick runs; 1 keeps all).
        cache_dir: Serve both sets from a :class:`~cxr_curriculum.data.DecodedCache`
            in this folder (decoded once, shrunk to ``cache_long_side`` pixels).
        cache_long_side: Longer side of the cached images.
        cache_workers: Processes that build the cache.

    Example:
        >>> from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
        >>> from cxr_curriculum.study import BinaryTask
        >>> root = bundled_sample_root()
        >>> task = BinaryTask((KermanyPneumonia(root, "train"), KermanyPneumonia(root, "test")),
        ...                   name="sample")
        >>> task.check()["test_classes"]
        {'NORMAL': 8, 'PNEUMONIA': 8}
    """

    metric = "auroc"
    attention = True


class MultiLabelTask(_DatasetTask):
    """A multi-label task (macro AUROC over findings) from a ``(train, test)`` pair.

    The metric is the unweighted mean over findings of each finding's AUROC on the test
    images whose label for it is known, over the findings with at least
    ``min_positives`` positive and negative test images (as
    :func:`cxr_curriculum.evaluation.multilabel_auroc` reports it). Lung attention is
    not scored (it explains one class).

    Args:
        data: ``(train, test)`` datasets with ``.targets`` ``(N, C)`` (1, 0, NaN
            unknown), ``.labels`` (any finding, for stratified label fractions) and
            ``.patient_ids``, or a function returning them.
        name: Task name.
        min_positives: Findings with fewer positive (or negative) test images are not scored.
        source, stride, cache_dir, cache_long_side, cache_workers: As for :class:`BinaryTask`.
    """

    metric = "macro_auroc"
    attention = False

    def __init__(
        self,
        data: DatasetPair | Callable[[], DatasetPair],
        *,
        name: str,
        min_positives: int = 5,
        source: Mapping[str, Any] | None = None,
        stride: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_long_side: int = 512,
        cache_workers: int = 0,
    ) -> None:
        super().__init__(
            data,
            name=name,
            source=source,
            stride=stride,
            cache_dir=cache_dir,
            cache_long_side=cache_long_side,
            cache_workers=cache_workers,
        )
        if isinstance(min_positives, bool) or not isinstance(min_positives, int):
            raise ValueError(f"min_positives must be an int >= 1; got {min_positives!r}")
        if min_positives < 1:
            raise ValueError(f"min_positives must be an int >= 1; got {min_positives!r}")
        self.min_positives = min_positives

    @cached_property
    def test_targets(self) -> Tensor:
        """``(N, C)`` test targets (NaN: unknown)."""
        targets = targets_of(self.datasets[1])
        if targets is None:
            raise ValueError(f"task {self.name!r}: the test set has no multi-label .targets")
        return targets

    @cached_property
    def findings(self) -> list[int]:
        """Indices of the findings scored (enough positive and negative test images)."""
        return finding_selection(self.test_targets, self.min_positives, self.name)

    @property
    def finding_names(self) -> list[str]:
        """Names of the findings scored (the test set's ``classes``)."""
        names = class_names_of(self.datasets[1], int(self.test_targets.shape[1]))
        return [names[c] if names else str(c) for c in self.findings]

    def config(self) -> dict[str, Any]:
        """The base description plus the findings scored."""
        return {**super().config(), "findings": self.finding_names}

    def check(self) -> dict[str, Any]:
        """As :meth:`Task.check`, plus the findings scored (at least one is needed)."""
        out = super().check()
        out["findings"] = self.finding_names
        return out

    def cell_scores(self, result: EvalResult) -> Tensor:
        """``(N, C)`` per-finding probabilities."""
        return result.scores

    def weighted_metric(self, scores: Tensor, weights: Tensor) -> Tensor:
        """Macro AUROC over :attr:`findings` (``scores`` may be flattened ``(N * C,)``)."""
        s = scores.reshape(self.test_targets.shape[0], -1)[:, self.findings]
        return weighted_macro_auroc(s, self.test_targets[:, self.findings], weights)
