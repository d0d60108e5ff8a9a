"""Adapted saliency methods and faithfulness metrics: overhead and cost per image.

Usage (from the repository root, data in ``../shared/data`` or ``$CXR_DATA_ROOT``; needs
the ``saliency`` extra)::

    PYTHONPATH=src python benchmarks/bench_saliency.py adapters --n 32 --size 128 --repeats 5
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_saliency.py faithfulness --n 16
    PYTHONPATH=src python benchmarks/bench_saliency.py adapters --smoke   # seconds

``adapters`` times, on the same real covid-chestxray films, model and targets (repeats
interleaved, medians of wall and CPU time): the built-in Grad-CAM; pytorch-grad-cam's
``GradCAM`` called directly (one batched call with its own targets) and through
``make_saliency("pytorch-grad-cam:GradCAM", ...)``; captum's ``IntegratedGradients``
called directly and through ``make_saliency("captum:IntegratedGradients", ...)`` with
the same settings. The overhead of an adapter is its time over the direct call's.

``faithfulness`` times ``LungAttentionScorer.score`` (Grad-CAM on ``layer3``, V7 masks
supplied) at the study's input size (64 px) with no faithfulness metric and with each of
``deletion``+``insertion``, ``road`` and ``lungs`` alone and all together, and reports
seconds and forward passes per image (a counting hook), the figures docs/attention.md
quotes for the cost of ``[evaluation] faithfulness``.

Results go to ``benchmarks/results/saliency_{adapters,faithfulness}.json`` (``--smoke``:
``*_smoke.json``, 4 images at 64 px, one repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cxr_curriculum.attention import LungAttentionScorer, find_layer, make_saliency
from cxr_curriculum.backbones import Backbone
from cxr_curriculum.data import CovidChestXray, data_root
from cxr_curriculum.transforms import Resize

RESULTS = Path(__file__).resolve().parent / "results"


def _env() -> dict[str, Any]:
    from cxr_curriculum.study.provenance import machine_info, versions

    return {
        "threads": torch.get_num_threads(),
        "loadavg_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python " + " ".join(sys.argv),
        "versions": versions(),
        "machine": machine_info(),
    }


def _films(n: int, size: int) -> tuple[Tensor, Tensor]:
    """``n`` real covid-chestxray films at ``size`` px with their V7 lung masks (bool)."""
    ds = CovidChestXray(data_root() / "covid-chestxray", with_masks=True)
    resize = Resize(size)
    pairs = [resize(ds[i].image, ds[i].mask) for i in range(n)]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1][0] == 1 for p in pairs])


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    bb = Backbone("resnet18", in_chans=1)
    return nn.Sequential(bb, nn.Linear(bb.num_features, 2)).eval()


def _time(fns: dict[str, Callable[[], Any]], repeats: int, n: int) -> dict[str, Any]:
    """Interleaved repeats (after one warm-up each): medians of wall and CPU seconds."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {
        name: {
            "median_s": statistics.median(wall[name]),
            "median_cpu_s": statistics.median(cpu[name]),
            "s_per_image": statistics.median(wall[name]) / n,
            "times_s": wall[name],
        }
        for name in fns
    }


def bench_adapters(args: argparse.Namespace) -> dict[str, Any]:
    """The adapters' overhead over calling pytorch-grad-cam and captum directly."""
    from captum.attr import IntegratedGradients
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images, _ = _films(args.n, args.size)
    model = _classifier()
    layer = find_layer(model, "layer3")
    with torch.no_grad():
        targets = model(images).argmax(1).tolist()
    ig = {"n_steps": args.ig_steps, "method": "riemann_middle", "baselines": 0.0}
    builtin = make_saliency("gradcam", model, "layer3")
    adapted_cam = make_saliency("pytorch-grad-cam:GradCAM", model, "layer3")
    adapted_ig = make_saliency("captum:IntegratedGradients", model, call=ig)

    def pgc_direct() -> None:
        with GradCAM(model, [layer]) as cam:
            cam(images, [ClassifierOutputTarget(k) for k in targets])

    def captum_direct() -> None:
        x = images.clone().requires_grad_(True)
        IntegratedGradients(model).attribute(x, target=torch.tensor(targets), **ig)

    fns = {
        "builtin_gradcam": lambda: builtin(images, targets),
        "pgc_gradcam_direct": pgc_direct,
        "pgc_gradcam_adapter": lambda: adapted_cam(images, targets),
        "captum_ig_direct": captum_direct,
        "captum_ig_adapter": lambda: adapted_ig(images, targets),
    }
    timed = _time(fns, args.repeats, args.n)
    return {
        "env": _env(),
        "n_images": args.n,
        "size": args.size,
        "model": "Backbone('resnet18') + Linear(512, 2), random init (seed 0), eval mode",
        "layer": "layer3",
        "integrated_gradients": ig,
        "timings": timed,
        "overhead_pgc_adapter_vs_direct": timed["pgc_gradcam_adapter"]["median_s"]
        / timed["pgc_gradcam_direct"]["median_s"],
        "overhead_captum_adapter_vs_direct": timed["captum_ig_adapter"]["median_s"]
        / timed["captum_ig_direct"]["median_s"],
        "builtin_vs_pgc_direct": timed["pgc_gradcam_direct"]["median_s"]
        / timed["builtin_gradcam"]["median_s"],
    }


class _Count(nn.Module):
    """Counts the images the wrapped model sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.images = model, 0

    def forward(self, x: Tensor) -> Tensor:
        self.images += x.shape[0]
        out: Tensor = self.model(x)
        return out


def bench_faithfulness(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds and forward passes per image of each faithfulness metric."""
    images, masks = _films(args.n, args.size)
    model = _Count(_classifier())
    variants: dict[str, tuple[str, ...]] = {
        "none": (),
        "deletion+insertion": ("deletion", "insertion"),
        "road": ("road",),
        "lungs": ("lungs",),
        "all": ("deletion", "insertion", "road", "lungs"),
    }
    scorers = {
        k: LungAttentionScorer(target_layer="layer3", n_boot=200, faithfulness=v)
        for k, v in variants.items()
    }
    forwards = {}
    for name, scorer in scorers.items():
        model.images = 0
        scorer.score(model, images, masks=masks)
        forwards[name] = model.images / args.n
    timed = _time(
        {k: (lambda s=s: s.score(model, images, masks=masks)) for k, s in scorers.items()},
        args.repeats,
        args.n,
    )
    base = timed["none"]["s_per_image"]
    return {
        "env": _env(),
        "n_images": args.n,
        "size": args.size,
        "model": "Backbone('resnet18') + Linear(512, 2), random init (seed 0), eval mode",
        "settings": "PerturbationSettings() defaults: 16 steps, blur baseline, 9 ROAD percentiles",
        "timings": timed,
        "forward_passes_per_image": forwards,
        "extra_s_per_image": {k: v["s_per_image"] - base for k, v in timed.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ad = sub.add_parser("adapters")
    ad.add_argument("--n", type=int, default=32)
    ad.add_argument("--size", type=int, default=128)
    ad.add_argument("--repeats", type=int, default=5)
    ad.add_argument("--ig-steps", type=int, default=16)
    fa = sub.add_parser("faithfulness")
    fa.add_argument("--n", type=int, default=16)
    fa.add_argument("--size", type=int, default=64)
    fa.add_argument("--repeats", type=int, default=3)
    for p in (ad, fa):
        p.add_argument("--smoke", action="store_true", help="4 images at 64 px, one repeat")
        p.add_argument("--out", default=None, help="file name in benchmarks/results/")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.size, args.repeats = 4, 64, 1
    out = args.out or f"saliency_{args.cmd}{'_smoke' if args.smoke else ''}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = bench_adapters(args) if args.cmd == "adapters" else bench_faithfulness(args)
    path = RESULTS / out
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    summary = {k: v for k, v in result.items() if k.startswith(("overhead", "builtin", "extra"))}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
