"""Train the bundled lung-segmentation model on the real masks (CPU or GPU, seeded).

Data: the 349 V7 Labs lung masks of the Covid-19 collection (``CovidChestXray(with_masks=True)``)
and the 72 Shenzhen/Montgomery pairs (``ShenzhenMontgomery``), split by patient with
``patient_split`` (80/20, seed 0, per source). Targets have three classes: background,
the patient's right lung (image left) and left lung (image right), derived from the
both-lungs masks by :func:`cxr_curriculum.segmentation.targets.split_lungs`. Pixels marked
ignore (V7 value 127 -> 255) are excluded from the loss.

Recipe: U-Net with a RegNetX-200MF encoder from scratch (no pretrained weights), one
channel, 128 px; the project's ``XRayAugment`` (same geometry for image and mask, no
flip); loss = cross-entropy + soft Dice of the two lungs; AdamW, linear warm-up then
cosine decay; batch 8. Images are squashed to a square (the same resize the segmenter
uses at inference).

Usage::

    PYTHONPATH=src python benchmarks/train_lungseg.py --epochs 90 --out runs/lungseg
    PYTHONPATH=src python benchmarks/train_lungseg.py --export runs/lungseg/last.safetensors

The export step writes the fp16 weights file into the package
(``src/cxr_curriculum/segmentation/weights/``) and prints its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor

from cxr_curriculum.data import CovidChestXray, ShenzhenMontgomery
from cxr_curriculum.data.splits import patient_split
from cxr_curriculum.segmentation.metrics import dice_score
from cxr_curriculum.segmentation.model import LungNet
from cxr_curriculum.segmentation.targets import IGNORE_INDEX, split_lungs
from cxr_curriculum.transforms import Resize
from cxr_curriculum.transforms.augment import XRayAugment

CACHE_SCALE = 1.25  # images are squashed to a square of 1.25 x --size once, then augmented


def _squash(image: Tensor, target: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Squash ``(1, H, W)`` image and ``(H, W)`` target to ``size`` with the library's
    :class:`Resize` (antialiased bilinear image, pixel-centred nearest target)."""
    img, tgt = Resize(size)(image, target[None])
    return img, tgt[0]


def load_split(seed: int, val_fraction: float = 0.2) -> dict[str, list[tuple[Tensor, Tensor, str]]]:
    """Load both sources, split each by patient, and return (image, 3-class target, source)."""
    sets = {
        "covid-v7": CovidChestXray(with_masks=True),
        "shenzhen-montgomery": ShenzhenMontgomery(),
    }
    out: dict[str, list[tuple[Tensor, Tensor, str]]] = {"train": [], "val": []}
    for source, ds in sets.items():
        train, val = patient_split(ds, (1.0 - val_fraction, val_fraction), seed=seed)
        for name, subset in (("train", train), ("val", val)):
            for i in range(len(subset)):
                image, mask, _ = subset[i]
                out[name].append((image, split_lungs(mask), source))
    return out


def loss_fn(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy + soft Dice of the two lung classes, ignore pixels excluded.

    Args:
        logits: ``(B, 3, H, W)``.
        target: ``(B, H, W)`` int64 in {0, 1, 2, 255}.
    """
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    valid = (target != IGNORE_INDEX).unsqueeze(1)
    prob = logits.softmax(1)[:, 1:] * valid
    onehot = F.one_hot(target.clamp_max(2), 3).permute(0, 3, 1, 2)[:, 1:] * valid
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return ce + (1.0 - dice.mean())


@torch.no_grad()
def evaluate(model: LungNet, val: list[tuple[Tensor, Tensor]], batch: int = 16) -> dict[str, float]:
    """Mean Dice at the model resolution: both lungs (union) and each lung."""
    model.eval()
    scores: dict[str, list[Tensor]] = {"both": [], "right": [], "left": []}
    for i in range(0, len(val), batch):
        x = torch.stack([v[0] for v in val[i : i + batch]])
        t = torch.stack([v[1] for v in val[i : i + batch]])
        pred = model(x).argmax(1)
        ok = t != IGNORE_INDEX
        scores["both"].append(dice_score(pred > 0, (t > 0) & ok, ok))
        scores["right"].append(dice_score(pred == 1, t == 1, ok))
        scores["left"].append(dice_score(pred == 2, t == 2, ok))
    model.train()
    return {k: float(torch.cat(v).mean()) for k, v in scores.items()}


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to ``peak`` then cosine decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_split(args.seed)
    cache = round(CACHE_SCALE * args.size)
    train_set = [_squash(img, tgt, cache) for img, tgt, _ in data["train"]]
    val_set = [_squash(img, tgt, args.size) for img, tgt, _ in data["val"]]
    print(
        f"loaded {len(train_set)} train / {len(val_set)} val pairs in "
        f"{time.perf_counter() - t0:.0f}s",
        flush=True,
    )
    aug = XRayAugment(
        image_size=args.size,
        scale=(0.6, 1.0),
        rotation=10.0,
        brightness=0.2,
        contrast=0.2,
        gamma=(0.8, 1.25),
        blur_p=0.2,
        noise_std=0.02,
        hflip_p=0.0,
    )
    gen = torch.Generator().manual_seed(args.seed)
    model = LungNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = len(train_set) // args.batch
    total = steps_per_epoch * args.epochs
    deadline = datetime.fromisoformat(args.deadline) if args.deadline else None
    history, best, step = [], -1.0, 0
    for epoch in range(args.epochs):
        te = time.perf_counter()
        order = torch.randperm(len(train_set), generator=gen).tolist()
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * args.batch : (b + 1) * args.batch]
            views = [aug(train_set[i][0], train_set[i][1][None], generator=gen) for i in idx]
            x = torch.stack([v[0] for v in views])
            t = torch.stack([v[1][0] for v in views]).long()
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, steps_per_epoch * args.warmup, args.lr)
            loss = loss_fn(model(x), t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item()
            step += 1
        record = {
            "epoch": epoch + 1,
            "loss": running / steps_per_epoch,
            "seconds": time.perf_counter() - te,
        }
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            record.update({f"val_dice_{k}": v for k, v in evaluate(model, val_set).items()})
            if record["val_dice_both"] > best:
                best = record["val_dice_both"]
                save_file(model.state_dict(), str(out / "best.safetensors"))
        save_file(model.state_dict(), str(out / "last.safetensors"))
        history.append(record)
        print(json.dumps(record), flush=True)
        log = {"args": vars(args), "history": history}
        (out / "history.json").write_text(json.dumps(log, indent=1, default=str))
        if deadline is not None and datetime.now() >= deadline and epoch + 1 < args.epochs:
            print(f"deadline {args.deadline} reached: stopped after epoch {epoch + 1}", flush=True)
            break
    print(f"done in {time.perf_counter() - t0:.0f}s, best val dice {best:.4f}", flush=True)


def export(src: Path, dst: Path) -> None:
    """Write the fp16 copy of a trained state dict and print its size and sha256."""
    state = load_file(str(src))
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(half, str(dst))
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    print(f"{dst} {dst.stat().st_size} bytes sha256={digest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=2, help="warm-up epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="1 is fastest on a shared, oversubscribed CPU"
    )
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--deadline", default=None, help="ISO time after which training stops early")
    p.add_argument("--out", default="runs/lungseg")
    p.add_argument("--export", type=Path, default=None, help="state dict to export as fp16")
    p.add_argument(
        "--export-to",
        type=Path,
        default=Path(
            "src/cxr_curriculum/segmentation/weights/lungnet_regnetx002_128_v2.safetensors"
        ),
    )
    args = p.parse_args()
    if args.export is not None:
        export(args.export, args.export_to)
    else:
        train(args)


if __name__ == "__main__":
    main()
