"""Disk footprint of a curriculum and of a study under each ``keep=`` setting.

1. A two-stage curriculum (Rotation then SimCLR, ``--steps`` each, ResNet-18, batch 8,
   32 px, bundled sample, ``checkpoint_every=10``) with ``keep="all"``, ``"backbones"``
   and ``"final"``; each run is rerun to check that it skips both stages and gives the
   same weights.
2. The sample study (``benchmarks/configs/study_sample.toml``, 4 pretraining runs) with
   ``keep="all"`` and the study default ``keep="final"``.

Usage::

    PYTHONPATH=src python benchmarks/footprint.py            # about 1.5 min on 2 CPU cores
    PYTHONPATH=src python benchmarks/footprint.py --smoke    # 1 step per stage, no study

File sizes do not depend on the machine's load. Prints one line per setting (MiB and the
weights files left).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from cxr_curriculum import Backbone, Curriculum, Stage
from cxr_curriculum.config.files import load_study
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.methods import Rotation, SimCLR
from cxr_curriculum.study.cells import CellStore

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = (".pt", ".safetensors")


def _size(folder: Path) -> tuple[float, list[str]]:
    files = [f for f in folder.rglob("*") if f.is_file()]
    weights = sorted(str(f.relative_to(folder)) for f in files if f.suffix in WEIGHTS)
    return sum(f.stat().st_size for f in files) / 2**20, weights


def curriculum(root: Path, steps: int) -> None:
    pool = KermanyPneumonia(bundled_sample_root(), split="train")
    for keep in ("all", "backbones", "final"):
        stages = [
            Stage(Rotation(), pool, steps=steps, batch_size=8, image_size=32),
            Stage(SimCLR(), pool, steps=steps, batch_size=8, image_size=32),
        ]
        folder = root / f"curriculum-{keep}"
        first = Backbone("resnet18", seed=0)
        Curriculum(stages, folder, seed=0, keep=keep, progress=False, checkpoint_every=10).fit(
            first
        )
        mib, weights = _size(folder)
        again = Backbone("resnet18", seed=1)
        cur = Curriculum(stages, folder, seed=0, keep=keep, progress=False)
        skipped = [r.skipped for r in cur.iter_stages(again)]
        pairs = zip(again.state_dict().values(), first.state_dict().values(), strict=True)
        same = all(torch.equal(a, b) for a, b in pairs)
        print(f"curriculum keep={keep!r}: {mib:.1f} MiB, {len(weights)} weights files "
              f"{weights}; rerun skipped {skipped}, same weights {same}")  # fmt: skip


def study(root: Path) -> None:
    for keep in ("all", "final"):
        s = load_study(REPO / "benchmarks" / "configs" / "study_sample.toml")
        out = root / f"study-{keep}"
        s.output, s.pretrain_dir, s.store = out, out / "pretrain", CellStore(out)
        s.keep, s.progress = keep, False  # type: ignore[assignment]
        s.run()
        mib, weights = _size(s.pretrain_dir)
        print(f"study keep={keep!r}: pretraining {mib:.1f} MiB, {len(weights)} weights files")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=15, help="optimiser steps per stage")
    p.add_argument("--smoke", action="store_true", help="1 step per stage, no study")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="cxr-footprint-") as tmp:
        curriculum(Path(tmp), 1 if args.smoke else args.steps)
        if not args.smoke:
            study(Path(tmp))


if __name__ == "__main__":
    main()
