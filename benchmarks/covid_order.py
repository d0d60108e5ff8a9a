"""Pick the stage order of the covid study's curriculum arm with the stage-order tool.

The covid study (``benchmarks/configs/study_covid_cpu.toml``) compares scratch, SimCLR,
Rotation -> SimCLR and "the order the library's stage-order tool picks" (issue 17). This
script runs that tool, :func:`cxr_curriculum.study.rank_orders`, on the study's own
pretraining pool (the covid task's test patients removed) with every order of
Rotation, Jigsaw and SimCLR, a short budget per stage and several seeds, scored by a kNN
proxy (AUROC) on a patient-level validation split of the covid task's *training* films
(the test films are never looked at). The scratch baseline is scored the same way.

    OMP_NUM_THREADS=1 python benchmarks/covid_order.py            # about 40 min, 1 thread
    python benchmarks/covid_order.py --smoke                     # seconds

Writes ``benchmarks/results/covid_order.json`` and ``docs/benchmarks/covid_order.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, write_results
from cxr_curriculum import Backbone, Stage
from cxr_curriculum.config import load_study
from cxr_curriculum.data import patient_split
from cxr_curriculum.methods import Jigsaw, Rotation, SimCLR
from cxr_curriculum.study import rank_orders

CONFIG = REPO / "benchmarks" / "configs" / "study_covid_cpu.toml"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--steps-per-stage", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--val-share", type=float, default=0.3)
    parser.add_argument("--smoke", action="store_true", help="2 steps, 1 seed, 2 orders")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps_per_stage, args.seeds = 2, [0, 1]
    study = load_study(args.config)
    study.check()
    pool = study.pretrain_data
    task = study.tasks[0]
    train_films = task.datasets[0]
    train, val = patient_split(train_films, (1 - args.val_share, args.val_share), seed=0)
    size, batch = study.image_size, study.batch_size
    stages = [
        Stage(method, pool, steps=args.steps_per_stage, batch_size=batch, image_size=size)
        for method in (Rotation(), Jigsaw(), SimCLR())
    ]
    orders = [(0, 2), (2, 0)] if args.smoke else None
    ranking = rank_orders(
        stages,
        lambda: Backbone(study.arch),
        train=train,
        val=val,
        orders=orders,
        steps_per_stage=args.steps_per_stage,
        seeds=tuple(args.seeds),
        progress=False,
    )
    text = ranking.summary()
    print(text)
    best = ranking.best
    record = {
        "best": list(best.names),
        "beats_scratch": [list(ranking._names(o)) for o in ranking.beats_scratch],
        "scratch": {"score": ranking.scratch.score, "seed_scores": ranking.scratch.seed_scores}
        if ranking.scratch is not None
        else None,
        "orders": [
            {
                "names": list(r.names),
                "score": r.score,
                "seed_scores": list(r.seed_scores),
                "seconds": round(r.seconds, 1),
                "minus_scratch": ranking.versus_scratch[r.order].to_dict()
                if r.order in ranking.versus_scratch
                else None,
                "p_holm_vs_scratch": ranking.p_holm_vs_scratch.get(r.order),
                "best_minus_this": ranking.comparisons[r.order].to_dict()
                if r.order in ranking.comparisons
                else None,
            }
            for r in ranking
        ],
        "n_train": len(train),
        "n_val": len(val),
        "threads": torch.get_num_threads(),
    }
    write_results(
        "covid_order" + ("_smoke" if args.smoke else ""),
        record,
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        markdown="```text\n" + text + "\n```\n",
        title="Stage order for the covid study (rank_orders)",
        notes=(
            "Every order of Rotation, Jigsaw and SimCLR, trained briefly on the covid "
            "study's pretraining pool (its test patients removed), scored by a kNN proxy "
            "(AUROC) on a patient split of the covid task's training films; scratch is the "
            "untrained backbone scored the same way."
        ),
    )
    return record


if __name__ == "__main__":
    main()
