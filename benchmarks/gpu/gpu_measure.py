"""Lung segmentation and lung-attention throughput on one device (the GPU suite's phase).

- Segmentation: images/s of ``LungSegmenter(device).predict`` on real covid-chestxray
  radiographs at 512 px (the segmenter resizes to its own input size and back), and of
  its network alone.
- Attention: images/s of ``LungAttentionScorer.score`` (saliency, segmentation of the same
  images and the lung metrics) for Grad-CAM on a ResNet-50 classifier and Grad-CAM,
  attention rollout and CLS attention on a ViT-S/16 classifier, at 224 px, random
  weights, on the device; plus pytorch-grad-cam's batched ViT call on the same model and
  layer when it is installed (saliency only, no masks), for scale.

Timings are medians of ``--repeats`` after one warm-up, with the device synchronised.
``--smoke``: 2 images at small sizes. Results: ``write_results("gpu_lungseg_attention")``
(``CXR_BENCH_OUT`` redirects them, as the suite does).

    python benchmarks/gpu/gpu_measure.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_results
from cxr_curriculum import Backbone, LungAttentionScorer, LungSegmenter
from cxr_curriculum.data import CovidChestXray, data_root


def _images(n: int, size: int) -> Tensor:
    ds = CovidChestXray(data_root() / "covid-chestxray", with_masks=True)
    picks = [ds[i % len(ds)].image[None] for i in range(n)]
    return torch.cat(
        [F.interpolate(x, (size, size), mode="bilinear", antialias=True) for x in picks]
    ).clamp(0, 1)


def _timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _classifier(arch: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    bb = Backbone(arch)
    return nn.Sequential(bb, nn.Linear(bb.num_features, 2)).to(device).eval()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    out: dict[str, Any] = {"device": args.device, "n_images": args.n}
    seg = LungSegmenter(device=device, batch_size=args.n)
    big = _images(args.n, args.seg_size).to(device)
    small = F.interpolate(big, size=(seg.input_size, seg.input_size), mode="bilinear")
    sec = _timed(lambda: seg.predict(big), args.repeats, device)
    net = _timed(lambda: torch.no_grad()(seg.model)(small), args.repeats, device)
    out["segmentation"] = {
        "input_px": args.seg_size,
        "predict_img_s": args.n / sec,
        "network_only_img_s": args.n / net,
    }
    images = _images(args.n, args.size).to(device)
    rows = []
    for arch, method in args.pairs:
        model = _classifier(arch, device)
        scorer = LungAttentionScorer(seg, method, batch_size=args.n, n_boot=50)
        sec = _timed(lambda m=model, s=scorer: s.score(m, images, 1), args.repeats, device)
        rows.append({"arch": arch, "method": method, "px": args.size, "score_img_s": args.n / sec})
        print(rows[-1], flush=True)
    out["attention"] = rows
    out["pytorch_grad_cam_vit_batched"] = _grad_cam_reference(args, images, device)
    return out


def _grad_cam_reference(args: argparse.Namespace, images: Tensor, device: torch.device) -> Any:
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return "pytorch-grad-cam not installed"
    model = _classifier(args.vit, device)
    backbone = model[0]
    grid = backbone.patch_grid(args.size, args.size)

    def reshape(t: Tensor) -> Tensor:
        return t[:, 1:].reshape(t.shape[0], *grid, t.shape[2]).permute(0, 3, 1, 2)

    def run() -> None:
        with GradCAM(model, [backbone.target_layer], reshape_transform=reshape) as cam:
            cam(images, [ClassifierOutputTarget(1)] * len(images))

    sec = _timed(run, args.repeats, device)
    return {"arch": args.vit, "saliency_only_img_s": args.n / sec}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=64, help="images per call")
    parser.add_argument("--size", type=int, default=224, help="attention input side")
    parser.add_argument("--seg-size", type=int, default=512, help="segmentation input side")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="2 images at 32/128 px")
    parser.add_argument("--name", default="gpu_lungseg_attention")
    args = parser.parse_args(argv)
    args.vit = "timm:vit_small_patch16_224"
    if args.smoke:
        args.n, args.size, args.seg_size, args.repeats = 2, 32, 128, 1
        args.vit = "timm:vit_tiny_patch16_224"
    cnn = "resnet18" if args.smoke else "resnet50"
    args.pairs = [(cnn, "gradcam")] + [
        (args.vit, m) for m in ("gradcam", "attention_rollout", "cls_attention")
    ]
    results = measure(args)
    config = {k: v for k, v in vars(args).items() if k != "pairs"}
    write_results(args.name, results, config=config, title="Lung segmentation and attention")


if __name__ == "__main__":
    main()
