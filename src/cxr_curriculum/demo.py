"""The README's main job: curriculum pretraining -> fine-tuning -> lung attention report.

``python -m cxr_curriculum.demo`` runs, with no arguments and no download, on the small
CC BY 4.0 Kermany sample bundled in the package:

1. pretrains a one-channel ResNet-18 with a two-stage curriculum (Rotation, then SimCLR)
   on the training images, labels ignored (arXiv:2301.10687);
2. fine-tunes it, and the same architecture from scratch, on the labelled training images
   and scores both on the test images (AUROC and accuracy with bootstrap 95 % CIs);
3. segments the lungs of the test images with the bundled :class:`LungSegmenter`;
4. scores where the fine-tuned classifiers look (Grad-CAM energy inside the lungs, lift,
   pointing game) with :class:`LungAttentionScorer`, and compares the two models;
5. writes a report folder: ``metrics.json``, ``summary.md``, per-image CSVs and overlay
   PNGs (saliency with the lung contour), and prints where it wrote them.

``--data PATH`` runs the same on a folder in the Kermany layout
(``PATH/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from cxr_curriculum.attention import LungAttentionScorer, suggest_layer
from cxr_curriculum.attention.plots import save_grid, save_overlay
from cxr_curriculum.backbones import Backbone
from cxr_curriculum.curriculum import Curriculum, Stage
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.evaluation import EvalResult, fine_tune
from cxr_curriculum.methods import Rotation, SimCLR
from cxr_curriculum.segmentation import LungSegmenter

__all__ = ["main", "run_demo"]

log = logging.getLogger("cxr_curriculum.demo")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m cxr_curriculum.demo",
        description="Curriculum pretraining, fine-tuning and a lung-attention report.",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="Kermany-layout folder (train/ and test/); default: the bundled sample",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("cxr_curriculum_report"),
        help="report folder (default: ./cxr_curriculum_report)",
    )
    p.add_argument("--image-size", type=int, default=64, help="training resolution in pixels")
    p.add_argument("--steps", type=int, default=30, help="optimiser steps per SSL stage")
    p.add_argument("--finetune-steps", type=int, default=60, help="fine-tuning steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-test", type=int, default=64, help="test images to score at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p.parse_args(argv)


def _stack(ds: KermanyPneumonia, n: int) -> tuple[Tensor, list[int], list[str]]:
    """First ``n`` images, resized to the first one's size, with labels and patient ids."""
    count = min(n, len(ds))
    loaded = [ds[i].image for i in range(count)]  # each file read once
    size = loaded[0].shape[-2:]
    resized = [
        F.interpolate(im[None], size=size, mode="bilinear", align_corners=False)[0] for im in loaded
    ]
    return torch.stack(resized), list(ds.labels[:count]), [str(p) for p in ds.patient_ids[:count]]


def _ci(result: EvalResult, metric: str) -> dict[str, float]:
    ci = result.confidence_interval(metric, n_resamples=1000, seed=0)
    return {"estimate": ci.estimate, "low": ci.low, "high": ci.high}


def run_demo(args: argparse.Namespace) -> Path:
    """Run every step of the demo and return the report folder."""
    started = time.perf_counter()
    root = args.data if args.data is not None else bundled_sample_root()
    train = KermanyPneumonia(root, split="train")
    test = KermanyPneumonia(root, split="test")
    out: Path = args.out
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    progress = False if args.no_progress else None  # None: bars on a TTY only
    print(f"[1/4] curriculum pretraining on {len(train)} images from {root}", flush=True)
    torch.manual_seed(args.seed)
    stages = [
        Stage(
            method,
            data=train,
            steps=args.steps,
            batch_size=args.batch_size,
            image_size=args.image_size,
            name=name,
        )
        for name, method in (("rotation", Rotation()), ("simclr", SimCLR()))
    ]
    curriculum = Curriculum(
        stages, checkpoint_dir=out / "checkpoints", seed=args.seed, progress=progress
    )
    pretrained = Backbone("resnet18")
    stage_results = list(curriculum.iter_stages(pretrained))

    print(f"[2/4] fine-tuning (curriculum vs scratch), testing on {len(test)} images", flush=True)
    torch.manual_seed(args.seed)
    results = {
        name: fine_tune(
            bb,
            train,
            test,
            steps=args.finetune_steps,
            seed=args.seed,
            image_size=args.image_size,
            batch_size=args.batch_size,
        )
        for name, bb in (("curriculum", pretrained), ("scratch", Backbone("resnet18")))
    }

    print("[3/4] segmenting lungs with the bundled LungSegmenter", flush=True)
    images, labels, patients = _stack(test, args.max_test)
    segmenter = LungSegmenter()
    prediction = segmenter.predict_with_quality(images)

    print("[4/4] scoring lung attention (Grad-CAM energy inside the lungs)", flush=True)
    small = F.interpolate(images, size=(args.image_size,) * 2, mode="bilinear", align_corners=False)
    # Masks predicted at full size, brought to the classifier's input with their quality
    # verdicts, so the report's mask QC line counts them.
    small_masks = F.interpolate(
        prediction.masks.float(), size=small.shape[-2:], mode="nearest-exact"
    )
    small_prediction = dataclasses.replace(prediction, masks=small_masks > 0.5)
    reports = {}
    for name, res in results.items():
        assert res.model is not None
        model = res.model.eval()
        scorer = LungAttentionScorer(
            segmenter=segmenter,
            method="gradcam",
            # The deepest layer whose map still has >= 4x4 cells at this input size
            # (layer3 at 64 px); a coarser map scores near chance whatever the model does.
            target_layer=suggest_layer(model, small[:1])
            or cast(Backbone, model.backbone).fine_target_layer,
            n_boot=1000,
            seed=args.seed,
        )
        reports[name] = scorer.score(
            model,
            small,
            targets=labels,
            masks=small_prediction,
            patient_ids=patients,
            labels=labels,
        )
        reports[name].to_csv(out / f"attention_{name}.csv")
    comparison = scorer.compare(reports["curriculum"], reports["scratch"])

    for name, rep in reports.items():
        assert rep.saliency is not None
        pick = rep.grid_indices(16)  # the classes in turn
        save_grid(
            out / f"overlays/grid_{name}.png",
            images[pick],
            rep.saliency[pick],
            prediction.masks[pick],
            ncol=4,
            titles=[f"y={labels[i]} E={rep.rows[i]['energy_in_mask']:.2f}" for i in pick],
        )
        for i in range(min(4, images.shape[0])):
            save_overlay(
                out / f"overlays/{name}_{i:02d}.png",
                images[i],
                rep.saliency[i],
                prediction.masks[i],
            )

    metrics: dict[str, Any] = {
        "data": str(root),
        "n_train": len(train),
        "n_test": len(test),
        "image_size": args.image_size,
        "pretraining": [
            {"stage": r.name, "steps": r.steps, "skipped": r.skipped, "final_loss": r.final_loss}
            for r in stage_results
        ],
        "classification": {
            name: {"auroc": _ci(res, "auroc"), "accuracy": _ci(res, "accuracy")}
            for name, res in results.items()
        },
        "segmentation": {
            "n_images": int(images.shape[0]),
            "quality_ok": int(prediction.ok.sum()),
            "lung_area_fraction": float(prediction.masks.any(dim=1).float().mean()),
        },
        "lung_attention": {name: rep.to_dict()["aggregate"] for name, rep in reports.items()},
        "lung_attention_curriculum_minus_scratch": comparison.to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    (out / "summary.md").write_text(_summary_md(metrics, reports))
    print(f"report written to {out.resolve()} ({metrics['seconds']:.0f} s)", flush=True)
    return out


def _summary_md(metrics: dict[str, Any], reports: dict[str, Any]) -> str:
    lines = [
        "# cxr_curriculum demo report",
        "",
        f"Data: `{metrics['data']}` ({metrics['n_train']} training, {metrics['n_test']} test "
        f"images), {metrics['image_size']} px. A demo-sized run: the numbers show the "
        "pipeline working, not the method's accuracy.",
        "",
        "## Classification (test set, bootstrap 95 % CI)",
        "",
        "| backbone | AUROC | accuracy |",
        "|---|---|---|",
    ]
    for name, m in metrics["classification"].items():
        a, c = m["auroc"], m["accuracy"]
        lines.append(
            f"| {name} | {a['estimate']:.3f} [{a['low']:.3f}, {a['high']:.3f}] | "
            f"{c['estimate']:.3f} [{c['low']:.3f}, {c['high']:.3f}] |"
        )
    lines += [
        "",
        "## Lung attention (Grad-CAM, bundled lung masks)",
        "",
        "Mean over images with bootstrap 95 % CI; `n` counts the images whose map has positive",
        "mass (an all-zero map scores NaN and is left out). Lift 1.0 is chance.",
        "",
    ]
    for name, rep in reports.items():
        lines += [f"**{name}**", "", "```", rep.summary(), "```", ""]
    lines += ["Overlays: `overlays/grid_curriculum.png`, `overlays/grid_scratch.png`.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``cxr-curriculum-demo`` / ``python -m cxr_curriculum.demo``)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(_parse(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
