"""Coverage of the study's intervals over seeds and test patients, by simulation (AUROC).

Simulated studies whose truth is known, analysed with the study's seed-level interval
(:func:`cxr_curriculum.stats.seed_interval` / :func:`~cxr_curriculum.stats.seed_comparison`
on the shared patient resamples of :func:`cxr_curriculum.study.resample.seed_replicates`,
as ``compare_arms`` and ``two_level_interval`` use them) and with the interval the
package reported before (a two-level percentile bootstrap: seeds drawn with replacement,
one patient resample shared by the drawn seeds, replicates widened by
``sqrt(S / (S - 1))``). The table counts how often a nominal 95 % interval covers the
truth.

Generative model (one simulated study): a test set of ``P`` patients with 1-3 images
each, one label per patient (40 % positive). Arm ``A``, seed ``j``, image ``i`` of
patient ``p`` scores ``delta_Aj * y_p + u_p + v_i + r_Ap + e_Aji``: a patient effect
``u`` (sd 1) and an image effect ``v`` (sd 0.5) shared by every model, an arm-by-patient
effect ``r`` (shared by the arm's seeds; the part of the test set that differs between
arms), a model's own per-image noise ``e`` (sd 1), and a separation
``delta_Aj = delta_A + sd_seed * z_j`` that changes with the seed (``z_j`` standard
normal). The AUROC of a model is ``Phi(delta / sqrt(2 Sigma))`` in the population
(``Sigma = 1 + 0.25 + sd_r**2 + 1``), and its expectation over seeds is
``Phi(delta_A / sqrt(2 Sigma + sd_seed**2))``, the truth an interval should cover.

- ``null``: two arms with the same recipe (``delta_A = delta_B = 1.5``): the difference
  is 0 (the issue's case: arms that differ only by seed);
- ``effect``: ``delta_A = 1.5`` vs ``delta_B = 1.2``: the true AUROC difference;
- ``arm``: one arm's mean AUROC over seeds (``results.arm_metrics()``).

Regimes: ``seed-dominated`` (300 patients, ``sd_seed = 1``, ``sd_r = 0.3``),
``image-dominated`` (60 patients, ``sd_seed = 0``, ``sd_r = 0.5``), ``mixed`` (150
patients, ``sd_seed = 0.25``, ``sd_r = 0.5``); ``seed share`` in the table is the mean
share of the seed component in the new interval's variance.

Usage::

    python benchmarks/study_coverage.py            # 1,000 studies per cell, ~10 min (2 cores)
    python benchmarks/study_coverage.py --smoke    # seconds, used by the tests

Writes ``benchmarks/results/study_coverage.json`` and ``docs/benchmarks/study_coverage.md``
(``_smoke`` appended with ``--smoke``) and prints the markdown table quoted in
``docs/study.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results
from cxr_curriculum.stats import resample_clusters, seed_comparison, seed_interval
from cxr_curriculum.study.resample import seed_replicates, weighted_binary_auroc

#: regime -> (test patients, sd of the seed's separation, sd of the arm-by-patient effect)
REGIMES = {
    "seed-dominated": (300, 1.0, 0.3),
    "image-dominated": (60, 0.0, 0.5),
    "mixed": (150, 0.25, 0.5),
}
#: kind -> separations of the arms
KINDS = {"null": (1.5, 1.5), "effect": (1.5, 1.2), "arm": (1.5,)}
IMAGE_SD, NOISE_SD = 0.5, 1.0


def truth(delta: float, sd_seed: float, sd_arm: float) -> float:
    """Expected population AUROC over seeds of an arm with separation ``delta``."""
    sigma = 1.0 + IMAGE_SD**2 + sd_arm**2 + NOISE_SD**2
    return 0.5 * math.erfc(-delta / math.sqrt(2.0 * sigma + sd_seed**2) / math.sqrt(2.0))


def simulate_study(
    g: torch.Generator, regime: str, deltas: Sequence[float], n_seeds: int
) -> tuple[list[Tensor], Tensor, Tensor]:
    """One study: ``(S, N)`` scores per arm, ``(N,)`` labels, ``(N,)`` patient codes."""
    n_patients, sd_seed, sd_arm = REGIMES[regime]
    images = torch.randint(1, 4, (n_patients,), generator=g)
    codes = torch.repeat_interleave(torch.arange(n_patients), images)
    n = codes.numel()
    sick = (torch.rand(n_patients, generator=g) < 0.4).long()
    sick[:2] = torch.tensor([0, 1])
    f64 = torch.float64
    shared = torch.randn(n_patients, generator=g, dtype=f64)[codes]
    shared = shared + IMAGE_SD * torch.randn(n, generator=g, dtype=f64)
    labels = sick[codes]
    arms = []
    for delta in deltas:
        per_patient = sd_arm * torch.randn(n_patients, generator=g, dtype=f64)[codes]
        separation = delta + sd_seed * torch.randn(n_seeds, 1, generator=g, dtype=f64)
        noise = NOISE_SD * torch.randn(n_seeds, n, generator=g, dtype=f64)
        arms.append(separation * labels + shared + per_patient + noise)
    return arms, labels, codes


def old_interval(values: Tensor, reps: Tensor, g: torch.Generator) -> tuple[float, float]:
    """The interval reported before: widened two-level percentile bootstrap.

    Args:
        values: ``(S,)`` per-seed values on the full test set.
        reps: ``(R, S)`` per-seed values on patient resamples shared by every seed.
        g: Generator of the seed draws.
    """
    n_resamples, n_seeds = reps.shape
    draws = resample_clusters(n_seeds, n_resamples, g)
    counts = torch.zeros_like(reps).scatter_add_(1, draws, torch.ones_like(reps))
    ok = ~reps.isnan().any(1)
    means = (counts[ok] * reps[ok]).sum(1) / n_seeds
    est = float(values.mean())
    widened = est + math.sqrt(n_seeds / (n_seeds - 1)) * (means - est)
    low, high = torch.quantile(widened, torch.tensor([0.025, 0.975], dtype=torch.float64))
    return float(low), float(high)


def run_cell(
    kind: str, regime: str, n_seeds: int, n_studies: int, n_resamples: int, seed: int
) -> dict[str, Any]:
    """Coverage of the new and the old interval in ``n_studies`` simulated studies."""
    deltas = KINDS[kind]
    _, sd_seed, sd_arm = REGIMES[regime]
    target = truth(deltas[0], sd_seed, sd_arm)
    if len(deltas) == 2:
        target -= truth(deltas[1], sd_seed, sd_arm)
    g = torch.Generator().manual_seed(seed)
    covered_new = covered_old = 0
    width_new = width_old = share = 0.0
    t0 = time.perf_counter()
    for r in range(n_studies):
        arms, labels, codes = simulate_study(g, regime, deltas, n_seeds)

        def per_seed(j: int, w: Tensor, arms: list[Tensor] = arms, y: Tensor = labels) -> Tensor:
            value = weighted_binary_auroc(arms[0][j], y, w)
            return value - weighted_binary_auroc(arms[1][j], y, w) if len(arms) == 2 else value

        reps = seed_replicates(
            per_seed, n_seeds, codes, labels.numel(), n_resamples=n_resamples, seed=seed + r
        )
        if len(arms) == 2:
            ones = torch.ones(1, labels.numel(), dtype=torch.float64)
            a = torch.cat([weighted_binary_auroc(arms[0][j], labels, ones) for j in range(n_seeds)])
            b = torch.cat([weighted_binary_auroc(arms[1][j], labels, ones) for j in range(n_seeds)])
            new = seed_comparison("auroc", a, b, reps.values, bounds=(-1.0, 1.0))
        else:
            new = seed_interval(reps.estimate, reps.values, bounds=(0.0, 1.0))  # type: ignore[assignment]
        low, high = old_interval(reps.estimate, reps.values, g)
        covered_new += new.low <= target <= new.high
        covered_old += low <= target <= high
        width_new += new.high - new.low
        width_old += high - low
        seeds, test = new.seed_variance or 0.0, new.test_variance or 0.0
        share += seeds / (seeds + test) if seeds + test > 0 else math.nan
    return {
        "kind": kind,
        "regime": regime,
        "seeds": n_seeds,
        "studies": n_studies,
        "coverage_new": covered_new / n_studies,
        "coverage_old": covered_old / n_studies,
        "width_new": width_new / n_studies,
        "width_old": width_old / n_studies,
        "seed_share": share / n_studies,
        "truth": target,
        "seconds": time.perf_counter() - t0,
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: regime x seeds, new vs old coverage, one block per kind."""
    lines = [
        "| comparison | regime | seeds | new | old | width new / old | seed share |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['regime']} | {r['seeds']} | {100 * r['coverage_new']:.1f} % "
            f"| {100 * r['coverage_old']:.1f} % | {r['width_new'] / r['width_old']:.2f} "
            f"| {r['seed_share']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every cell, write the results and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per cell")
    parser.add_argument("--resamples", type=int, default=200, help="patient resamples per study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--smoke", action="store_true", help="10 studies per cell (seconds)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.studies, args.resamples, args.seeds = 10, 50, [3, 5]
    rows = [
        run_cell(kind, regime, s, args.studies, args.resamples, args.seed)
        for kind in args.kinds
        for regime in REGIMES
        for s in args.seeds
    ]
    markdown = table(rows)
    print(markdown)
    write_results(
        "study_coverage_smoke" if args.smoke else "study_coverage",
        rows,
        config=vars(args),
        markdown=markdown,
        title="Coverage of the study's 95 % intervals (simulated AUROC studies)",
        notes=__doc__.split("\n\n", 1)[1].split("Usage::")[0],
    )
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)  # small tensors: one thread is fastest
    main()
