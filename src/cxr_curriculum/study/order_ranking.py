"""What :func:`~cxr_curriculum.study.rank_orders` returns: the candidate orders best
first, the scratch baseline, their comparisons, and a text summary.

Each candidate order's proxy score (averaged over the curriculum seeds) is an
:class:`OrderResult`; an :class:`OrderRanking` holds them best first with the scratch
baseline, each order minus scratch (with Holm-adjusted p-values, the family being every
candidate's comparison with scratch) and the best order minus each other one, as
:class:`~cxr_curriculum.stats.PairedComparison` s over seeds and validation patients.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxr_curriculum.stats import PairedComparison

__all__ = ["OrderRanking", "OrderResult"]


@dataclass(frozen=True)
class OrderResult:
    """One candidate order (or the scratch baseline) and its proxy score (higher is better).

    Attributes:
        order: stage indices in training order, e.g. ``(1, 0)``; ``()`` for scratch.
        names: the stages' labels in that order; ``("scratch",)`` for the baseline.
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
    """Candidate orders best first, the scratch baseline, and their comparisons.

    Iterating or indexing gives the candidates' :class:`OrderResult` s, best first
    (scratch is not among them).

    Attributes:
        results: every candidate, sorted by ``score`` (best first).
        comparisons: other order -> ``best - other`` (a
            :class:`~cxr_curriculum.stats.PairedComparison` over seeds and validation
            patients, ``n_seeds`` set).
        metric: the proxy's metric.
        seeds: the curriculum seeds of the runs.
        scratch: the baseline: the starting backbone scored by the same proxy and seeds.
        versus_scratch: order -> ``order - scratch``, the same kind of comparison.
        p_holm_vs_scratch: order -> Holm-adjusted p-value of ``order - scratch``, the
            family being every candidate's comparison with scratch.
        confidence: coverage of the intervals.
    """

    results: tuple[OrderResult, ...]
    comparisons: dict[tuple[int, ...], PairedComparison] = field(default_factory=dict)
    metric: str = "auroc"
    seeds: tuple[int, ...] = (0,)
    scratch: OrderResult | None = None
    versus_scratch: dict[tuple[int, ...], PairedComparison] = field(default_factory=dict)
    p_holm_vs_scratch: dict[tuple[int, ...], float] = field(default_factory=dict)
    confidence: float = 0.95

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

    @property
    def beats_scratch(self) -> tuple[tuple[int, ...], ...]:
        """Orders better than scratch: higher mean and Holm-adjusted p below ``1 - confidence``.

        Empty when no order beats scratch (or with one seed, which gives no p-value).
        """
        alpha = 1.0 - self.confidence
        return tuple(
            r.order
            for r in self.results
            if r.order in self.versus_scratch
            and self.versus_scratch[r.order].difference > 0
            and self.p_holm_vs_scratch.get(r.order, math.nan) < alpha
        )

    def summary(self) -> str:
        """A text table: scores per seed, differences to scratch and from the best."""
        pct = round(100 * self.confidence)
        lines = [
            f"{self.metric} over seeds {list(self.seeds)} (best first; {pct}% CI over seeds "
            "and validation patients)"
        ]
        if self.scratch is not None:
            seeds = ", ".join(f"{s:.3f}" for s in self.scratch.seed_scores)
            lines.append(f"  scratch (no pretraining): {self.scratch.score:.3f} [{seeds}]")
        for r in self.results:
            seeds = ", ".join(f"{s:.3f}" for s in r.seed_scores)
            line = f"  {' -> '.join(r.names)}: {r.score:.3f} [{seeds}]"
            vs = self.versus_scratch.get(r.order)
            if vs is not None:
                holm_p = self.p_holm_vs_scratch.get(r.order, math.nan)
                line += f"; - scratch = {_text(vs)}, Holm p = {holm_p:.3g}"
            cmp = self.comparisons.get(r.order)
            if cmp is not None:
                line += f"; best - this = {_text(cmp)}"
            lines.append(line)
        if self.scratch is not None:
            winners = [" -> ".join(self._names(o)) for o in self.beats_scratch]
            lines.append(
                "  beats scratch (Holm-adjusted p < "
                f"{1 - self.confidence:.2g}): {', '.join(winners) if winners else 'none'}"
            )
        return "\n".join(lines)

    def _names(self, order: tuple[int, ...]) -> tuple[str, ...]:
        return next(r.names for r in self.results if r.order == order)


def _text(cmp: PairedComparison) -> str:
    return f"{cmp.difference:+.3f} ({cmp.low:+.3f} to {cmp.high:+.3f}, p = {cmp.p_value:.3g})"
