"""The paper's claim on real X-rays: scratch vs one SSL stage vs a curriculum of stages.

A thin command line over :class:`cxr_curriculum.study.Study` (see ``docs/study.md``):
pretraining uses every image under ``CXR_DATA_ROOT`` except the Kermany test split;
every pretraining arm gets the same budget of optimiser steps and images; each backbone
is evaluated on Kermany (test split untouched) with kNN, linear-probe and fine-tuning
at 1 %, 10 % and 100 % of the training labels, with statistics across seeds (intervals
over seeds and test patients, Holm / Benjamini-Hochberg adjusted p-values, per-seed
DeLong) and the lung attention of the fine-tuned models. Cells are saved as they
finish, so a rerun resumes.

Usage::

    python benchmarks/bench_curriculum.py --smoke            # a few minutes, used by tests
    python benchmarks/bench_curriculum.py --steps 200 --batch-size 32 --seeds 0 1 2 3 4

The committed multi-seed study runs from ``benchmarks/configs/study_kermany_cpu.toml``
(``python -m cxr_curriculum study ...``), the same code path.

References: de Andrés Tamé et al., arXiv:2301.10687; Sirotkin et al., arXiv:2112.12086.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results
from cxr_curriculum.config.builders import build_data
from cxr_curriculum.config.keys import Table
from cxr_curriculum.methods import Jigsaw, Rotation, SimCLR
from cxr_curriculum.study import Arm, ArmStage, KermanyTask, Protocols, Study
from cxr_curriculum.study.report import markdown_report

ARM_NAMES = ("scratch", "simclr", "rotation", "rotation->simclr", "jigsaw->simclr", "imagenet")


def make_arms(names: list[str], steps: int) -> list[Arm]:
    """The named arms at a total budget of ``steps`` (curricula split it in halves)."""
    half = steps // 2
    recipes: dict[str, list[ArmStage]] = {
        "scratch": [],
        "simclr": [ArmStage(SimCLR(), steps)],
        "rotation": [ArmStage(Rotation(), steps)],
        "rotation->simclr": [ArmStage(Rotation(), half), ArmStage(SimCLR(), steps - half)],
        "jigsaw->simclr": [ArmStage(Jigsaw(), half), ArmStage(SimCLR(), steps - half)],
        "imagenet": [],
    }
    chosen = ["scratch", *[n for n in names if n != "scratch"]]
    return [Arm(n, recipes[n], start="imagenet" if n == "imagenet" else "random") for n in chosen]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (a few minutes)")
    parser.add_argument("--steps", type=int, default=200, help="total pretraining steps per arm")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--protocols", nargs="+", default=["knn", "linear_probe", "fine_tune"])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--attention-images", type=int, default=48)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument(
        "--arms", nargs="+", default=["simclr", "rotation->simclr"], choices=ARM_NAMES,
        help="arms to compare with scratch (always included)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-imagenet", action="store_true", help="no ImageNet arm")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench_curriculum"))
    parser.add_argument("--name", default=None, help="results file stem")
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.batch_size, args.image_size = 8, 16, 64
        args.finetune_steps, args.attention_images = 8, 8
        args.fractions = [0.1]
        args.name = args.name or "bench_curriculum_smoke"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = list(args.arms)
    if not (args.smoke or args.no_imagenet) and "imagenet" not in names:
        names.append("imagenet")
    stride = 40 if args.smoke else 1
    study = Study(
        make_arms(names, args.steps),
        args.seeds,
        [KermanyTask(stride=stride, name="kermany")],
        args.run_dir / "study",
        pretrain_data=build_data(Table({"source": "pool", "stride": 50 if args.smoke else 1})),
        pretrain_dir=args.run_dir / "pretrain",
        arch=args.arch,
        batch_size=args.batch_size,
        image_size=args.image_size,
        fractions=args.fractions,
        protocols=args.protocols,
        protocol_settings=Protocols(
            finetune_steps=args.finetune_steps, attention_images=args.attention_images
        ),
        workers=args.workers,
    )
    data: dict[str, Any] = study.run().to_dict()
    keep = ("design", "arm_metrics", "comparisons", "attention", "attention_correlation", "cells")
    write_results(
        args.name or "bench_curriculum",
        {k: data[k] for k in keep},
        config={
            **vars(args),
            "run_dir": str(args.run_dir),
            "imagenet": study.unavailable.get(
                "imagenet", "measured" if "imagenet" in names else "not run"
            ),
        },
        markdown=markdown_report(data).split("\n", 1)[1],
        title="bench_curriculum: scratch vs SSL vs curriculum (multi-seed study)",
    )


if __name__ == "__main__":
    main()
