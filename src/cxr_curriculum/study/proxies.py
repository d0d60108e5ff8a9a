"""The cheap proxies that score a stage order, and their metrics under bootstrap weights.

A proxy turns a (briefly) pretrained backbone into a score on a labelled validation
split: a kNN classifier (Wu et al., CVPR 2018) or a linear probe on frozen features
(:mod:`cxr_curriculum.evaluation`), or any ``score_fn(backbone) -> float``. Its metric is
computed here as a function of ``(R, N)`` patient-bootstrap weights
(:func:`proxy_metric`), so that :func:`cxr_curriculum.study.compare_arms` can put the
orders' differences on the study's footing: an interval over seeds and validation
patients. With all-ones weights each metric equals
:func:`cxr_curriculum.evaluation.metric_functions`' (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from cxr_curriculum.evaluation import EvalResult, knn_evaluate, linear_probe
from cxr_curriculum.stats import PairedComparison
from cxr_curriculum.study.resample import weighted_binary_auroc
from cxr_curriculum.study.statistics import compare_arms

__all__ = [
    "ORDER_METRICS",
    "SCRATCH",
    "Proxy",
    "ProxyRuns",
    "proxy_comparer",
    "proxy_metric",
    "proxy_scorer",
    "proxy_values",
]

#: The order of the scratch baseline: no stage.
SCRATCH: tuple[int, ...] = ()

#: Metrics a built-in proxy can be scored by.
ORDER_METRICS = ("auroc", "balanced_accuracy", "accuracy")

#: ``"knn"``, ``"linear"``, or ``score_fn(backbone) -> float`` (higher is better).
Proxy = Literal["knn", "linear"] | Callable[[nn.Module], float]

#: ``metric(scores (N, C), weights (R, N)) -> (R,)``.
WeightedMetric = Callable[[Tensor, Tensor], Tensor]


def proxy_scorer(
    proxy: Proxy, train: Any, val: Any, image_size: int, k: int
) -> Callable[[nn.Module], EvalResult | float]:
    """``backbone -> EvalResult`` for a built-in proxy, ``-> float`` for a callable.

    Raises:
        ValueError: On an unknown proxy, or a built-in one without ``train`` and ``val``.
    """
    if callable(proxy):
        return proxy
    if proxy not in ("knn", "linear"):
        raise ValueError(f"proxy must be 'knn', 'linear' or a callable; got {proxy!r}")
    if train is None or val is None:
        raise ValueError(f"proxy={proxy!r} needs labelled train and val datasets")

    def run(backbone: nn.Module) -> EvalResult:
        if proxy == "knn":
            return knn_evaluate(backbone, train, val, k=min(k, len(train)), image_size=image_size)
        return linear_probe(backbone, train, val, image_size=image_size)

    return run


def _weighted_accuracy(hit: Tensor, weights: Tensor) -> Tensor:
    total = weights.sum(1)
    out = (weights * hit).sum(1) / total
    return torch.where(total > 0, out, torch.full_like(out, math.nan))


def proxy_metric(metric: str, labels: Tensor) -> WeightedMetric:
    """The proxy's metric of ``(N, C)`` class scores under ``(R, N)`` image weights.

    Args:
        metric: ``"auroc"`` (binary: the AUROC of the last column; more classes: the
            mean one-vs-rest AUROC), ``"balanced_accuracy"`` (mean recall of the arg-max
            over the classes present in the resample) or ``"accuracy"``.
        labels: ``(N,)`` class indices of the validation images.

    Returns:
        ``metric(scores (N, C), weights (R, N)) -> (R,)`` float64, NaN where undefined
        (e.g. a class with zero weight for the AUROC).

    Raises:
        ValueError: On an unknown metric.
    """
    if metric not in ORDER_METRICS:
        raise ValueError(f"metric must be one of {ORDER_METRICS}; got {metric!r}")
    y = labels.long().flatten()

    def auroc(scores: Tensor, weights: Tensor) -> Tensor:
        s = scores.double()
        if s.shape[1] == 2:
            return weighted_binary_auroc(s[:, 1], y, weights)
        columns = range(s.shape[1])
        per_class = [weighted_binary_auroc(s[:, c], (y == c).long(), weights) for c in columns]
        return torch.stack(per_class).mean(0)

    def balanced(scores: Tensor, weights: Tensor) -> Tensor:
        pred, w = scores.argmax(1), weights.double()
        recalls = []
        for c in torch.unique(y).tolist():
            in_class = (y == c).double()
            recalls.append(_weighted_accuracy((pred == c).double(), w * in_class))
        return torch.stack(recalls).nanmean(0)

    def accuracy(scores: Tensor, weights: Tensor) -> Tensor:
        return _weighted_accuracy((scores.argmax(1) == y).double(), weights.double())

    table: dict[str, WeightedMetric] = {
        "auroc": auroc,
        "balanced_accuracy": balanced,
        "accuracy": accuracy,
    }
    return table[metric]


@dataclass
class ProxyRuns:
    """Per-seed proxy results of one order (or scratch)."""

    results: list[EvalResult | float]
    seconds: float


def proxy_values(runs: ProxyRuns, metric: str) -> tuple[float, ...]:
    """The proxy's value per seed (the metric of each run on the whole val split)."""
    out = []
    for r in runs.results:
        if isinstance(r, EvalResult):
            if r.multilabel:
                raise ValueError("rank_orders scores a single-label val split (got .targets)")
            ones = torch.ones(1, r.labels.numel(), dtype=torch.float64)
            out.append(float(proxy_metric(metric, r.labels)(r.scores, ones)[0]))
        else:
            out.append(float(r))
    return tuple(out)


def proxy_comparer(
    runs: dict[tuple[int, ...], ProxyRuns],
    values: dict[tuple[int, ...], tuple[float, ...]],
    metric: str,
    seeds: list[int],
    n_resamples: int,
    confidence: float,
) -> Callable[[tuple[int, ...], tuple[int, ...]], PairedComparison]:
    """``(order a, order b) -> a - b`` with :func:`compare_arms` (seeds x val patients)."""
    first = runs[SCRATCH].results[0]
    if not isinstance(first, EvalResult):  # a custom proxy: one number per seed

        def numbers(o: tuple[int, ...]) -> Tensor:
            return torch.tensor(values[o], dtype=torch.float64)[:, None]

        def constant(row: Tensor, w: Tensor) -> Tensor:
            return row[0].expand(w.shape[0])

        def seeds_only(a: tuple[int, ...], b: tuple[int, ...]) -> PairedComparison:
            return compare_arms(
                numbers(a), numbers(b), torch.zeros(1), metric=constant, metric_name="score",
                seeds=seeds, n_resamples=n_resamples, confidence=confidence,
                bounds=(-math.inf, math.inf),
            ).difference  # fmt: skip

        return seeds_only
    labels, groups = first.labels, first.patient_ids
    binary = metric == "auroc" and first.scores.shape[1] == 2

    def scores(o: tuple[int, ...]) -> Tensor:
        rows = [r.scores for r in runs[o].results if isinstance(r, EvalResult)]
        return torch.stack([s[:, 1] for s in rows] if binary else rows).double()

    def paired(a: tuple[int, ...], b: tuple[int, ...]) -> PairedComparison:
        return compare_arms(
            scores(a), scores(b), labels, groups,
            metric=None if binary else proxy_metric(metric, labels), metric_name=metric,
            seeds=seeds, n_resamples=n_resamples, confidence=confidence,
        ).difference  # fmt: skip

    return paired
