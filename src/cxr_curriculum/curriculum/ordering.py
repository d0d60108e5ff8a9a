"""Choose the order of a curriculum's stages with short runs scored by a cheap proxy.

arXiv 2112.12086 (Sec. 3) orders pretext tasks with a simple method: train each
candidate order briefly and keep the one whose representation scores best on a small
labelled validation split. :func:`rank_orders` does this: every candidate order starts
from a fresh backbone, each stage is cut to a short budget, and the result is scored by
a kNN (Wu et al. 2018, arXiv 1805.01978) or linear-probe classifier on the validation
split, by AUROC (or balanced accuracy: plain accuracy rewards the majority class of an
imbalanced split), repeated over several curriculum seeds.

Short runs differ by little, so the ranking comes with the paired difference between the
best order and each other one (:class:`~cxr_curriculum.stats.PairedComparison`): the
seed-averaged metric of both orders on the same patient-bootstrap resamples of the
validation split. An interval that contains 0 means the proxy cannot tell the orders
apart on this split. The interval covers the sampling of validation patients for these
seeds; seed-to-seed spread is shown separately (``OrderResult.seed_scores``).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from cxr_curriculum.curriculum.curriculum import Curriculum
from cxr_curriculum.curriculum.stage import Stage
from cxr_curriculum.stats import PairedComparison, paired_bootstrap

__all__ = ["OrderRanking", "OrderResult", "rank_orders"]

#: Largest number of orders tried when ``orders`` is not given (all permutations).
MAX_AUTO_ORDERS = 24
#: Metrics a built-in proxy can be scored by.
ORDER_METRICS = ("auroc", "balanced_accuracy", "accuracy")

Proxy = Literal["knn", "linear"] | Callable[[nn.Module], float]


@dataclass(frozen=True)
class OrderResult:
    """One candidate order and its proxy score (higher is better).

    Attributes:
        order: stage indices in training order, e.g. ``(1, 0)``.
        names: the stages' labels in that order.
        score: the proxy's value averaged over the seeds.
        seed_scores: the value for each seed, in the order of ``seeds``.
        seconds: wall time of training and scoring, all seeds.
    """

    order: tuple[int, ...]
    names: tuple[str, ...]
    score: float
    seed_scores: tuple[float, ...]
    seconds: float


@dataclass(frozen=True)
class OrderRanking(Sequence[OrderResult]):
    """Candidate orders best first, with paired comparisons of the best against the rest.

    Iterating or indexing gives the :class:`OrderResult` s, best first.

    Attributes:
        results: every candidate, sorted by ``score`` (best first).
        comparisons: other order -> ``best - other`` on the same validation images
            (empty for a custom ``proxy`` callable, which gives no per-image scores).
        metric: the proxy's metric.
        seeds: the curriculum seeds of the runs.
    """

    results: tuple[OrderResult, ...]
    comparisons: dict[tuple[int, ...], PairedComparison] = field(default_factory=dict)
    metric: str = "auroc"
    seeds: tuple[int, ...] = (0,)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: Any) -> Any:
        return self.results[index]

    def __iter__(self) -> Iterator[OrderResult]:
        return iter(self.results)

    @property
    def best(self) -> OrderResult:
        """The order with the highest score."""
        return self.results[0]

    def summary(self) -> str:
        """A text table: each order's score per seed and its difference from the best."""
        lines = [f"{self.metric} over seeds {list(self.seeds)} (best first)"]
        for r in self.results:
            seeds = ", ".join(f"{s:.3f}" for s in r.seed_scores)
            line = f"  {' -> '.join(r.names)}: {r.score:.3f} [{seeds}]"
            cmp = self.comparisons.get(r.order)
            if cmp is not None:
                pct = round(100 * cmp.confidence)
                line += (
                    f"; best - this = {cmp.difference:+.3f} ({pct}% CI {cmp.low:+.3f} to "
                    f"{cmp.high:+.3f}, p = {cmp.p_value:.3g})"
                )
            lines.append(line)
        return "\n".join(lines)


def _scores(proxy: Proxy, train: Any, val: Any, size: int, k: int) -> Callable[[nn.Module], Any]:
    """``backbone -> EvalResult`` for a built-in proxy, ``-> float`` for a callable."""
    if callable(proxy):
        return proxy
    if proxy not in ("knn", "linear"):
        raise ValueError(f"proxy must be 'knn', 'linear' or a callable; got {proxy!r}")
    if train is None or val is None:
        raise ValueError(f"proxy={proxy!r} needs labelled train and val datasets")
    from cxr_curriculum.evaluation import knn_evaluate, linear_probe

    def run(backbone: nn.Module) -> Any:
        if proxy == "knn":
            return knn_evaluate(backbone, train, val, k=min(k, len(train)), image_size=size)
        return linear_probe(backbone, train, val, image_size=size)

    return run


def _seed_mean(metric_fn: Callable[[Tensor, Tensor], float]) -> Callable[..., float]:
    """Statistic of ``(scores (n, S, C), labels (n,))``: the metric averaged over seeds."""

    def stat(scores: Tensor, labels: Tensor) -> float:
        n_seeds = scores.shape[1]
        return sum(metric_fn(scores[:, s], labels) for s in range(n_seeds)) / n_seeds

    return stat


def rank_orders(
    stages: Sequence[Stage],
    backbone_fn: Callable[[], nn.Module],
    *,
    proxy: Proxy = "knn",
    metric: Literal["auroc", "balanced_accuracy", "accuracy"] = "auroc",
    train: Dataset[Any] | None = None,
    val: Dataset[Any] | None = None,
    orders: Sequence[Sequence[int]] | None = None,
    steps_per_stage: int | None = 20,
    image_size: int | None = None,
    k: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    **curriculum_kwargs: Any,
) -> OrderRanking:
    """Train candidate stage orders briefly, score them by a proxy, rank them best first.

    Args:
        stages: the stages to order (their methods are deep-copied per run).
        backbone_fn: returns a fresh starting backbone (same weights each call, e.g.
            ``lambda: Backbone("resnet18", weights=None, seed=0)`` or a loaded file).
        proxy: ``"knn"`` or ``"linear"`` (a classifier on frozen features of ``train``,
            scored on ``val``), or ``score_fn(backbone) -> float`` (higher is better;
            no interval then).
        metric: what a built-in proxy is scored by: ``"auroc"`` (one-vs-rest macro for
            more than two classes), ``"balanced_accuracy"`` or ``"accuracy"``.
        train: labelled dataset whose features form the kNN bank / probe training set.
        val: labelled validation dataset that is scored (``.patient_ids`` are used to
            resample whole patients).
        orders: candidate orders as index tuples; ``None`` tries every permutation
            (at most 24, i.e. up to four stages).
        steps_per_stage: short budget replacing each stage's own (``None`` keeps them).
        image_size: input size for the proxy; defaults to the last stage's size.
        k: kNN neighbours.
        seeds: curriculum seeds; every order is trained once per seed (the same seeds
            for every order) and its score is the mean over them.
        n_resamples: bootstrap resamples of the paired comparisons.
        confidence: coverage of their intervals.
        **curriculum_kwargs: passed to :class:`Curriculum` (e.g. ``device``); no
            ``checkpoint_dir`` is used.

    Returns:
        An :class:`OrderRanking`: the :class:`OrderResult` s sorted by score (best
        first; ties keep the candidates' order) and the paired comparisons of the best
        order with each other one.

    Raises:
        ValueError: on an empty stage list or seed list, an invalid order, too many
            permutations, an unknown metric, or ``seed=`` (use ``seeds=``).
    """
    if not stages:
        raise ValueError("rank_orders needs at least one stage")
    if not seeds:
        raise ValueError("seeds must hold at least one seed, e.g. seeds=(0, 1, 2)")
    if metric not in ORDER_METRICS:
        raise ValueError(f"metric must be one of {ORDER_METRICS}; got {metric!r}")
    if "seed" in curriculum_kwargs:
        raise ValueError("rank_orders takes seeds=(...) (one run per seed), not seed=")
    if "checkpoint_dir" in curriculum_kwargs:
        raise ValueError("rank_orders runs without checkpoints; do not pass checkpoint_dir")
    n = len(stages)
    if orders is None:
        if math.factorial(n) > MAX_AUTO_ORDERS:
            raise ValueError(f"{n} stages have {math.factorial(n)} orders; pass orders=[...]")
        orders = list(itertools.permutations(range(n)))
    candidates = [tuple(int(i) for i in o) for o in orders]
    for o in candidates:
        if not o or any(not 0 <= i < n for i in o) or len(set(o)) != len(o):
            raise ValueError(f"order {o} must list distinct stage indices in [0, {n})")
    size = image_size if image_size is not None else stages[-1].image_size
    score_fn = _scores(proxy, train, val, size, k)
    curriculum_kwargs.setdefault("progress", False)
    results, per_image = [], {}
    for o in candidates:
        t0 = time.perf_counter()
        runs = []
        for seed in seeds:
            chosen = []
            for i in o:
                st = stages[i].replace(method=copy.deepcopy(stages[i].method))
                chosen.append(st.replace(steps=steps_per_stage) if steps_per_stage else st)
            backbone = backbone_fn()
            Curriculum(chosen, seed=int(seed), **curriculum_kwargs).fit(backbone)
            runs.append(score_fn(backbone))
        if callable(proxy):
            seed_scores = tuple(float(r) for r in runs)
        else:
            if runs[0].multilabel:
                raise ValueError("rank_orders scores a single-label val split (got .targets)")
            table = _metric_table(runs[0].scores.shape[1], metric)
            seed_scores = tuple(float(table(r.scores, r.labels)) for r in runs)
            per_image[o] = (torch.stack([r.scores for r in runs], 1), runs[0])
        score = sum(seed_scores) / len(seed_scores)
        names = tuple(stages[i].label for i in o)
        results.append(OrderResult(o, names, score, seed_scores, time.perf_counter() - t0))
    results.sort(key=lambda r: -r.score if math.isfinite(r.score) else math.inf)
    comparisons: dict[tuple[int, ...], PairedComparison] = {}
    if per_image:
        best_scores, ref = per_image[results[0].order]
        stat = _seed_mean(_metric_table(best_scores.shape[2], metric))
        for r in results[1:]:
            comparisons[r.order] = paired_bootstrap(
                stat, best_scores, per_image[r.order][0], ref.labels, groups=ref.patient_ids,
                metric=metric, n_resamples=n_resamples, confidence=confidence,
            )  # fmt: skip
    return OrderRanking(tuple(results), comparisons, metric, tuple(int(s) for s in seeds))


def _metric_table(n_classes: int, metric: str) -> Callable[[Tensor, Tensor], float]:
    from cxr_curriculum.evaluation import metric_functions

    fn: Callable[[Tensor, Tensor], float] = metric_functions(n_classes)[metric]
    return fn
