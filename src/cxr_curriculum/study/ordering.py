"""Choose the order of a curriculum's stages: a small study scored by a cheap proxy.

arXiv 2112.12086 (Sec. 3) orders pretext tasks with a simple method: train each
candidate order briefly and keep the one whose representation scores best on a small
labelled validation split. :func:`rank_orders` does this as a small study: every
candidate order starts from a fresh backbone, each stage is cut to a short budget, and
the result is scored by a proxy (a kNN or linear-probe classifier on the validation
split, :mod:`cxr_curriculum.study.proxies`), once per curriculum seed. The same proxy
scores the **scratch** baseline (the starting backbone, no pretraining) with the same
seeds, so the answer says whether any order beats not pretraining at all.

Short runs differ by little and by seed, so each order's difference to scratch and the
best order's difference to each other order come with the study's statistics
(:func:`cxr_curriculum.study.compare_arms`): the mean over seeds, paired by seed and by
validation patient, with an interval that covers both the seeds and the validation
patients (:func:`cxr_curriculum.stats.seed_comparison`). The orders' differences to
scratch form one family whose Holm-adjusted p-values decide
:attr:`OrderRanking.beats_scratch`.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from cxr_curriculum.curriculum import Curriculum, Stage
from cxr_curriculum.stats import holm
from cxr_curriculum.study.order_ranking import OrderRanking, OrderResult
from cxr_curriculum.study.proxies import (
    ORDER_METRICS,
    SCRATCH,
    Proxy,
    ProxyRuns,
    proxy_comparer,
    proxy_scorer,
    proxy_values,
)

__all__ = ["OrderRanking", "OrderResult", "rank_orders"]

#: Largest number of orders tried when ``orders`` is not given (all permutations).
MAX_AUTO_ORDERS = 24


def _check(
    stages: Sequence[Stage],
    orders: Sequence[Sequence[int]] | None,
    seeds: Sequence[int],
    metric: str,
    curriculum_kwargs: dict[str, Any],
) -> list[tuple[int, ...]]:
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
    twice = sorted({o for o in candidates if candidates.count(o) > 1})
    if twice:  # a repeated order would count twice in Holm's family
        raise ValueError(f"orders lists {twice[0]} more than once; give each order once")
    return candidates


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
    """Train candidate stage orders briefly, score them and scratch by a proxy, compare them.

    Args:
        stages: the stages to order (their methods are deep-copied per run).
        backbone_fn: returns a fresh starting backbone. Each run of seed ``s`` (and the
            scratch baseline of seed ``s``) calls it right after ``torch.manual_seed(s)``,
            as a study's arms do: ``lambda: Backbone("resnet18")`` starts every seed from
            its own random weights, ``lambda: Backbone("resnet18", seed=0)`` (or a loaded
            file) from the same ones.
        proxy: ``"knn"`` or ``"linear"`` (a classifier on frozen features of ``train``,
            scored on ``val``), or ``score_fn(backbone) -> float`` (higher is better;
            its comparisons then cover the seeds only).
        metric: what a built-in proxy is scored by: ``"auroc"`` (one-vs-rest macro for
            more than two classes), ``"balanced_accuracy"`` or ``"accuracy"``.
        train: labelled dataset whose features form the kNN bank / probe training set.
        val: labelled validation dataset that is scored; its ``.patient_ids`` (if any)
            make the intervals resample whole patients.
        orders: candidate orders as index tuples; ``None`` tries every permutation
            (at most 24, i.e. up to four stages).
        steps_per_stage: short budget replacing each stage's own (``None`` keeps them).
        image_size: input size for the proxy; defaults to the last stage's size.
        k: kNN neighbours.
        seeds: curriculum seeds; every order and the scratch baseline are run once per
            seed (the same seeds for all) and scored by the mean over them. Use five or
            more: with one seed there is no interval.
        n_resamples: patient resamples of the intervals' test-set component.
        confidence: coverage of the intervals (and ``1 - confidence`` is the level of
            :attr:`OrderRanking.beats_scratch`).
        **curriculum_kwargs: passed to :class:`~cxr_curriculum.curriculum.Curriculum`
            (e.g. ``device``); no ``checkpoint_dir`` is used.

    Returns:
        An :class:`OrderRanking`: the candidates sorted by score (best first; ties keep
        the candidates' order), the scratch baseline, each order minus scratch (with
        Holm-adjusted p-values) and the best order minus each other one.

    Raises:
        ValueError: on an empty stage list or seed list, an invalid order, too many
            permutations, an unknown metric, a multi-label ``val``, or ``seed=`` (use
            ``seeds=``).
    """
    candidates = _check(stages, orders, seeds, metric, curriculum_kwargs)
    size = image_size if image_size is not None else stages[-1].image_size
    score_fn = proxy_scorer(proxy, train, val, size, k)
    curriculum_kwargs.setdefault("progress", False)

    def run(order: tuple[int, ...]) -> ProxyRuns:
        t0 = time.perf_counter()
        results = []
        for seed in seeds:
            chosen = []
            for i in order:
                st = stages[i].replace(method=copy.deepcopy(stages[i].method))
                chosen.append(st.replace(steps=steps_per_stage) if steps_per_stage else st)
            torch.manual_seed(int(seed))
            backbone = backbone_fn()
            if chosen:
                Curriculum(chosen, seed=int(seed), **curriculum_kwargs).fit(backbone)
            results.append(score_fn(backbone))
        return ProxyRuns(results, time.perf_counter() - t0)

    runs = {o: run(o) for o in [SCRATCH, *candidates]}
    values = {o: proxy_values(r, metric) for o, r in runs.items()}

    def result(o: tuple[int, ...]) -> OrderResult:
        names = tuple(stages[i].label for i in o) if o else ("scratch",)
        v = values[o]
        return OrderResult(o, names, sum(v) / len(v), v, runs[o].seconds)

    ranked = sorted((result(o) for o in candidates), key=lambda r: _sort_key(r.score))
    compare = proxy_comparer(runs, values, metric, [int(s) for s in seeds], n_resamples, confidence)
    best = ranked[0].order
    versus = {r.order: compare(r.order, SCRATCH) for r in ranked}
    adjusted = holm([versus[r.order].p_value for r in ranked])
    return OrderRanking(
        tuple(ranked),
        {r.order: compare(best, r.order) for r in ranked[1:]},
        metric,
        tuple(int(s) for s in seeds),
        result(SCRATCH),
        versus,
        {r.order: p for r, p in zip(ranked, adjusted, strict=True)},
        confidence,
    )


def _sort_key(score: float) -> float:
    return -score if math.isfinite(score) else math.inf
