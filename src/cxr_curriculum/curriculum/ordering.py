"""Choose the order of a curriculum's stages with short runs scored by a cheap proxy.

arXiv 2112.12086 (Sec. 3) orders pretext tasks with a simple method: train each
candidate order briefly and keep the one whose representation scores best on a small
labelled validation split. :func:`rank_orders` does this: every candidate order starts
from a fresh backbone, each stage is cut to a short budget, and the result is scored by
kNN accuracy (Wu et al. 2018, arXiv 1805.01978), linear-probe accuracy, or any
``score_fn(backbone) -> float``.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn
from torch.utils.data import Dataset

from cxr_curriculum.curriculum.curriculum import Curriculum
from cxr_curriculum.curriculum.stage import Stage

__all__ = ["OrderResult", "rank_orders"]

#: Largest number of orders tried when ``orders`` is not given (all permutations).
MAX_AUTO_ORDERS = 24


@dataclass(frozen=True)
class OrderResult:
    """One candidate order and its proxy score (higher is better).

    Attributes:
        order: stage indices in training order, e.g. ``(1, 0)``.
        names: the stages' labels in that order.
        score: the proxy's value.
        seconds: wall time of training and scoring.
    """

    order: tuple[int, ...]
    names: tuple[str, ...]
    score: float
    seconds: float


def _proxy(
    proxy: Literal["knn", "linear"] | Callable[[nn.Module], float],
    train: Dataset[Any] | None,
    val: Dataset[Any] | None,
    image_size: int,
    k: int,
) -> Callable[[nn.Module], float]:
    if callable(proxy):
        return proxy
    if proxy not in ("knn", "linear"):
        raise ValueError(f"proxy must be 'knn', 'linear' or a callable; got {proxy!r}")
    if train is None or val is None:
        raise ValueError(f"proxy={proxy!r} needs labelled train and val datasets")
    from cxr_curriculum.evaluation import extract_features, knn_accuracy, linear_probe

    def knn(backbone: nn.Module) -> float:
        tr_x, tr_y = extract_features(backbone, train, image_size=image_size)
        va_x, va_y = extract_features(backbone, val, image_size=image_size)
        return float(knn_accuracy(tr_x, tr_y, va_x, va_y, k=min(k, len(tr_y))))

    def linear(backbone: nn.Module) -> float:
        res = linear_probe(backbone, train, val, image_size=image_size)
        return float((res.scores.argmax(1) == res.labels).float().mean())

    return knn if proxy == "knn" else linear


def rank_orders(
    stages: Sequence[Stage],
    backbone_fn: Callable[[], nn.Module],
    *,
    proxy: Literal["knn", "linear"] | Callable[[nn.Module], float] = "knn",
    train: Dataset[Any] | None = None,
    val: Dataset[Any] | None = None,
    orders: Sequence[Sequence[int]] | None = None,
    steps_per_stage: int | None = 20,
    image_size: int | None = None,
    k: int = 20,
    seed: int = 0,
    **curriculum_kwargs: Any,
) -> list[OrderResult]:
    """Train candidate stage orders briefly and rank them by a proxy, best first.

    Args:
        stages: the stages to order (their methods are deep-copied per candidate).
        backbone_fn: returns a fresh starting backbone (same weights each call, e.g.
            ``lambda: Backbone("resnet18", weights=None)`` after ``torch.manual_seed``
            or a loaded checkpoint).
        proxy: ``"knn"`` (kNN accuracy), ``"linear"`` (linear-probe accuracy) or a
            callable ``score_fn(backbone) -> float`` (higher is better).
        train: labelled dataset whose features form the kNN bank / probe training set.
        val: labelled validation dataset that is scored.
        orders: candidate orders as index tuples; ``None`` tries every permutation
            (at most 24, i.e. up to four stages).
        steps_per_stage: short budget replacing each stage's own (``None`` keeps them).
        image_size: input size for the proxy; defaults to the last stage's size.
        k: kNN neighbours.
        seed: the curricula's seed (the same for every candidate).
        **curriculum_kwargs: passed to :class:`Curriculum` (e.g. ``device``); no
            ``checkpoint_dir`` is used.

    Returns:
        One :class:`OrderResult` per candidate, sorted by score (best first; ties keep
        the candidates' order).

    Raises:
        ValueError: on an empty stage list, an invalid order, or too many permutations.
    """
    if not stages:
        raise ValueError("rank_orders needs at least one stage")
    n = len(stages)
    if orders is None:
        if math.factorial(n) > MAX_AUTO_ORDERS:
            raise ValueError(f"{n} stages have {math.factorial(n)} orders; pass orders=[...]")
        orders = list(itertools.permutations(range(n)))
    candidates = [tuple(int(i) for i in o) for o in orders]
    for o in candidates:
        if not o or any(not 0 <= i < n for i in o) or len(set(o)) != len(o):
            raise ValueError(f"order {o} must list distinct stage indices in [0, {n})")
    if "checkpoint_dir" in curriculum_kwargs:
        raise ValueError("rank_orders runs without checkpoints; do not pass checkpoint_dir")
    size = image_size if image_size is not None else stages[-1].image_size
    score_fn = _proxy(proxy, train, val, size, k)
    curriculum_kwargs.setdefault("progress", False)
    results = []
    for o in candidates:
        t0 = time.perf_counter()
        chosen = []
        for i in o:
            st = stages[i].replace(method=copy.deepcopy(stages[i].method))
            chosen.append(st.replace(steps=steps_per_stage) if steps_per_stage else st)
        backbone = backbone_fn()
        Curriculum(chosen, seed=seed, **curriculum_kwargs).fit(backbone)
        score = float(score_fn(backbone))
        results.append(
            OrderResult(o, tuple(stages[i].label for i in o), score, time.perf_counter() - t0)
        )
    return sorted(results, key=lambda r: -r.score if math.isfinite(r.score) else math.inf)
