"""The picture of docs/curriculum.md's logging section: TensorBoard curves of a real run.

Runs a two-stage curriculum (Rotation, then SimCLR) on real Kermany X-rays with a
``TensorBoardLogger``, reads the event file back with TensorBoard's
``EventAccumulator`` (what ``tensorboard --logdir`` shows) and plots loss, embedding
std and learning rate against the curriculum's global step with matplotlib.

Usage::

    PYTHONPATH=src python benchmarks/plot_curriculum_log.py  # docs/img/curriculum_tensorboard.png
    PYTHONPATH=src python benchmarks/plot_curriculum_log.py --smoke    # a few steps, /tmp

Needs the ``tensorboard`` and ``plot`` extras and the shared data (``CXR_DATA_ROOT``;
the bundled sample is used when it is absent). About 2 minutes on 2 CPU cores (the
smoke run about 20 s).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Subset

from cxr_curriculum import Backbone, Curriculum, Stage
from cxr_curriculum.curriculum import TensorBoardLogger
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root, data_root
from cxr_curriculum.methods import Rotation, SimCLR

METRICS = (("loss", "loss"), ("embedding_std", "embedding std (scaled)"), ("lr", "learning rate"))


def run(log_dir: Path, steps: int, image_size: int) -> list[str]:
    """Train the curriculum with a TensorBoard logger; return the stage groups."""
    root = data_root() / "kermany-pneumonia"
    if root.is_dir():
        full = KermanyPneumonia(root, split="train")
        pool: object = Subset(full, list(range(0, len(full), max(1, len(full) // 512))))
    else:
        pool = KermanyPneumonia(bundled_sample_root(), split="train")
    stages = [
        Stage(Rotation(), pool, steps=steps, batch_size=32, image_size=image_size),  # type: ignore[arg-type]
        Stage(SimCLR(), pool, steps=steps, batch_size=32, image_size=image_size),  # type: ignore[arg-type]
    ]
    tb = TensorBoardLogger(log_dir / "tb")
    cur = Curriculum(stages, log_dir / "run", seed=0, log_every=1, progress=False, loggers=[tb])
    cur.fit(Backbone("resnet18", seed=0))
    tb.close()
    return [f"stage{i:02d}-{s.label}" for i, s in enumerate(stages)]


def plot(log_dir: Path, groups: list[str], out: Path) -> None:
    """Read the event file back and draw one panel per metric, one colour per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir / "tb"))
    acc.Reload()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.2))
    for ax, (name, label) in zip(axes, METRICS, strict=True):
        for group in groups:
            events = acc.Scalars(f"{group}/{name}")
            ax.plot([e.step for e in events], [e.value for e in events], label=group, lw=1.2)
        ax.set_xlabel("curriculum step")
        ax.set_title(f"{label}  (tag <stage>/{name})", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "TensorBoard scalars of a Rotation -> SimCLR curriculum (Kermany X-rays)", fontsize=10
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/img/curriculum_tensorboard.png"))
    p.add_argument("--steps", type=int, default=40, help="optimiser steps per stage")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--smoke", action="store_true", help="4 steps per stage at 32 px, to /tmp")
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    steps, size, out = args.steps, args.image_size, args.out
    if args.smoke:
        steps, size = 4, 32
        out = Path(tempfile.mkdtemp(prefix="cxr-log-")) / "curves.png"
    with tempfile.TemporaryDirectory(prefix="cxr-log-") as tmp:
        groups = run(Path(tmp), steps, size)
        plot(Path(tmp), groups, out)


if __name__ == "__main__":
    main()
