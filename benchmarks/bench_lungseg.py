"""Measure the bundled lung model: Dice/IoU per subset vs the classical baseline, and speed.

Accuracy: the validation split of ``train_lungseg.py`` (same patients, seed 0), at each
image's own resolution (the dataset copies are at most 512 px), ignore pixels excluded.
Speed: images/s on this machine's CPU, end to end from a ``(B, 1, 512, 512)`` tensor
of real validation images to boolean masks, for ``LungSegmenter`` and a stand-in for
torchxrayvision's lung model (smp ``PSPNet("resnet101", encoder_weights=None)`` at
512 px; its trained weights cannot be downloaded here, and speed does not depend on
them), timed interleaved in one run; plus the speed at the model's own resolution.

Usage::

    PYTHONPATH=src python benchmarks/bench_lungseg.py --fp32-state runs/lungseg/last.safetensors \\
        --figures docs/img

Writes ``benchmarks/results/lungseg.json`` and, with ``--figures``, pictures to docs/img/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor

from cxr_curriculum.segmentation import (
    LungSegmenter,
    classical_lung_masks,
    dice_score,
    iou_score,
)
from cxr_curriculum.segmentation.targets import IGNORE_INDEX
from train_lungseg import load_split

Predictor = Callable[[Tensor], Tensor]


def score(masks: Tensor, target: Tensor) -> dict[str, float]:
    """Dice and IoU of one prediction ``(1, 2, H, W)`` against a target ``(H, W)``."""
    ok = target != IGNORE_INDEX
    pairs = {
        "both": (masks[0].any(0), (target == 1) | (target == 2)),
        "right": (masks[0, 0], target == 1),
        "left": (masks[0, 1], target == 2),
    }
    out = {}
    for name, (p, t) in pairs.items():
        out[f"dice_{name}"] = float(dice_score(p, t & ok, ok))
        out[f"iou_{name}"] = float(iou_score(p, t & ok, ok))
    return out


def evaluate(predict: Predictor, pairs: list[tuple[Tensor, Tensor, str]]) -> dict[str, object]:
    """Mean metrics over all pairs and per source, plus the per-image both-lungs Dice."""
    rows = [(score(predict(img[None]), tgt), src) for img, tgt, src in pairs]
    groups: dict[str, list[dict[str, float]]] = {"all": [r for r, _ in rows]}
    for r, src in rows:
        groups.setdefault(src, []).append(r)
    out: dict[str, object] = {}
    for name, rs in groups.items():
        summary: dict[str, float] = {k: statistics.fmean(r[k] for r in rs) for k in rs[0]}
        summary["n"] = len(rs)
        summary["min_dice_both"] = min(r["dice_both"] for r in rs)
        out[name] = summary
    out["per_image_dice_both"] = [r["dice_both"] for r, _ in rows]
    return out


def time_interleaved(fns: dict[str, Predictor], batch: Tensor, repeats: int) -> dict[str, float]:
    """Median images/s of each predictor, calls interleaved to share the machine's load."""
    for fn in fns.values():  # warm-up
        fn(batch[:1])
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(batch)
            times[name].append(time.perf_counter() - t0)
    return {k: batch.shape[0] / statistics.median(v) for k, v in times.items()}


def pspnet_standin() -> Predictor:
    """smp PSPNet-resnet101 at 512 px (torchxrayvision's lung model's architecture)."""
    import segmentation_models_pytorch as smp

    net = smp.PSPNet("resnet101", encoder_weights=None, in_channels=3, classes=1).eval()

    @torch.no_grad()
    def run(x: Tensor) -> Tensor:
        x = F.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False)
        return net((x.repeat(1, 3, 1, 1) - 0.5) / 0.25).sigmoid() > 0.5

    return run


def _overlay(ax: object, image: Tensor, masks: Tensor, title: str) -> None:
    """Show an image with the right lung in red and the left lung in blue."""
    rgb = image[0].repeat(3, 1, 1).permute(1, 2, 0).numpy().copy()
    for channel, colour in ((0, (1.0, 0.2, 0.2)), (1, (0.2, 0.4, 1.0))):
        m = masks[channel].numpy()
        rgb[m] = 0.55 * rgb[m] + 0.45 * torch.tensor(colour).numpy()
    ax.imshow(rgb)  # type: ignore[attr-defined]
    ax.set_title(title, fontsize=7)  # type: ignore[attr-defined]
    ax.axis("off")  # type: ignore[attr-defined]


def figures(
    seg: LungSegmenter,
    val: list[tuple[Tensor, Tensor, str]],
    dice: list[float],
    kermany: list[Path],
    img_dir: Path,
) -> dict[str, object]:
    """Validation predictions (best, median, worst) and pediatric (Kermany) predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxr_curriculum.data import read_image

    img_dir.mkdir(parents=True, exist_ok=True)
    order = sorted(range(len(dice)), key=lambda i: dice[i])
    picks = [
        order[-1],
        order[-2],
        order[len(order) // 2],
        order[len(order) // 4],
        order[1],
        order[0],
    ]
    fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
    for col, i in enumerate(picks):
        image, target, src = val[i]
        truth = torch.stack([target == 1, target == 2])
        _overlay(axes[0, col], image, truth, f"{src} truth")
        _overlay(axes[1, col], image, seg.predict(image[None])[0], f"predicted, Dice {dice[i]:.3f}")
    fig.tight_layout()
    fig.savefig(img_dir / "lungseg_val.png", dpi=90)
    plt.close(fig)
    images = [read_image(p) for p in kermany]
    quality = [seg.predict_with_quality(im) for im in images]
    fig, axes = plt.subplots(1, 6, figsize=(12, 2.4))
    for ax, im, q, path in zip(axes, images, quality, kermany, strict=True):
        verdict = "ok" if q.quality[0].ok else "flagged"
        _overlay(ax, im, q.masks[0], f"{path.parent.name} {verdict}")
    fig.tight_layout()
    fig.savefig(img_dir / "lungseg_kermany.png", dpi=90)
    plt.close(fig)
    return {
        "kermany_shown": [str(p.name) for p in kermany],
        "kermany_flagged": [not q.quality[0].ok for q in quality],
        "kermany_reasons": [list(q.quality[0].reasons) for q in quality],
    }


def kermany_quality(seg: LungSegmenter, files: list[Path]) -> dict[str, float]:
    """Share of pediatric images whose mask fails the quality check."""
    from cxr_curriculum.data import read_image

    flags = [not seg.predict_with_quality(read_image(p)).quality[0].ok for p in files]
    return {"n": len(files), "flagged_fraction": sum(flags) / len(files)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="1 is fastest on a shared, oversubscribed CPU"
    )
    p.add_argument("--speed-images", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--fp32-state",
        type=Path,
        default=None,
        help="the fp32 training state, to check the fp16 bundle against it (or to score a run)",
    )
    p.add_argument(
        "--fp32-size",
        type=int,
        default=None,
        help="input size the --fp32-state was trained at (default: the bundled model's)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/lungseg.json"))
    p.add_argument("--figures", type=Path, default=None, help="folder for pictures (docs/img)")
    p.add_argument("--kermany", type=int, default=40, help="pediatric images for the quality check")
    p.add_argument("--smoke", action="store_true", help="8 validation images, 2 timed, 1 repeat")
    args = p.parse_args()
    if args.smoke:
        args.speed_images, args.repeats, args.kermany = 2, 1, 4
        args.out = args.out.with_name("lungseg_smoke.json")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    val = load_split(args.seed)["val"]
    if args.smoke:
        val = val[:4] + val[-4:]  # both sources
    seg = LungSegmenter()
    results: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"torch threads={torch.get_num_threads()}",
        "weights": seg.weights.name,
        "input_size": seg.input_size,
        "n_val": len(val),
    }
    results["lungsegmenter"] = evaluate(seg.predict, val)
    print("lungsegmenter", json.dumps(results["lungsegmenter"]["all"]), flush=True)  # type: ignore[index]
    if args.fp32_state is not None:
        seg32 = LungSegmenter()
        seg32.model.load_state_dict(load_file(str(args.fp32_state)))
        seg32.input_size = args.fp32_size or seg32.input_size
        results["lungsegmenter_fp32"] = evaluate(seg32.predict, val)
        print("fp32", json.dumps(results["lungsegmenter_fp32"]["all"]), flush=True)  # type: ignore[index]
    seg.postprocess = False
    results["lungsegmenter_no_postprocess"] = evaluate(seg.predict, val)
    seg.postprocess = True
    print("no postprocess", json.dumps(results["lungsegmenter_no_postprocess"]["all"]), flush=True)  # type: ignore[index]
    results["classical"] = evaluate(classical_lung_masks, val)
    print("classical", json.dumps(results["classical"]["all"]), flush=True)  # type: ignore[index]

    batch = torch.stack(
        [
            F.interpolate(img[None], size=(512, 512), mode="bilinear", antialias=True)[0]
            for img, _, _ in val[: args.speed_images]
        ]
    ).clamp(0, 1)
    speed = time_interleaved(
        {
            "lungsegmenter_512": seg.predict,
            "pspnet_resnet101_512": pspnet_standin(),
            "classical_512": classical_lung_masks,
        },
        batch,
        args.repeats,
    )
    small = F.interpolate(
        batch, size=(seg.input_size, seg.input_size), mode="bilinear", antialias=True
    )
    speed.update(
        {
            f"{k}_{seg.input_size}": v
            for k, v in time_interleaved(
                {"lungsegmenter": seg.predict, "lungnet_forward_only": torch.no_grad()(seg.model)},
                small,
                args.repeats,
            ).items()
        }
    )
    speed["ratio_lungsegmenter_vs_pspnet_512"] = (
        speed["lungsegmenter_512"] / speed["pspnet_resnet101_512"]
    )
    results["speed_images_per_s"] = speed
    print("speed", json.dumps(speed), flush=True)
    from cxr_curriculum.data import data_root

    ker_root = data_root() / "kermany-pneumonia" / "test"
    ker = (
        sorted((ker_root / "NORMAL").glob("*.jpeg"))[: args.kermany // 2]
        + sorted((ker_root / "PNEUMONIA").glob("*.jpeg"))[: args.kermany // 2]
    )
    results["kermany_pediatric_quality"] = kermany_quality(seg, ker)
    print("kermany", json.dumps(results["kermany_pediatric_quality"]), flush=True)
    if args.figures is not None:
        shown = ker[:3] + ker[args.kermany // 2 : args.kermany // 2 + 3]
        per_image = results["lungsegmenter"]["per_image_dice_both"]  # type: ignore[index]
        results["figures"] = figures(seg, val, per_image, shown, args.figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
