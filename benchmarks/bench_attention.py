"""Lung-attention benchmarks: scoring throughput and a real-data shortcut experiment.

Usage (from the repository root, data in ``../shared/data`` or ``$CXR_DATA_ROOT``)::

    PYTHONPATH=src nice -n 10 python benchmarks/bench_attention.py speed --n 32 --size 128
    PYTHONPATH=src nice -n 10 python benchmarks/bench_attention.py experiment --size 64

``speed`` times ``LungAttentionScorer.score`` (batched Grad-CAM + segmentation + all
metrics + bootstrap CIs) against a per-image loop of pytorch-grad-cam's ``GradCAM`` plus
the same segmenter plus an energy-in-mask computation, on the same images and model,
and also pytorch-grad-cam called once on the whole batch. If the bundled segmenter's
weights cannot be loaded, both sides use the supplied V7 masks and the JSON says so.

``experiment`` trains two small classifiers (ResNet-18 from scratch, 64 px, a few
epochs): a confounded one (covid-chestxray COVID-19 vs NIH ChestX-ray14 No_findings:
different sources) and a Kermany pneumonia one, then scores held-out images (split by
patient) with lung masks, with bootstrap CIs by patient, and runs the cascading
randomisation sanity check. Results go to ``benchmarks/results/attention_*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxr_curriculum.attention import LungAttentionScorer, energy_in_mask, save_grid
from cxr_curriculum.backbones import Backbone
from cxr_curriculum.data import CovidChestXray, KermanyPneumonia, NIHChestXray14, data_root

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(os.environ.get("ATTN_BENCH_CACHE", "/tmp/attn_bench"))


def _env() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python " + " ".join(sys.argv),
    }


def _resize(img: Tensor, size: int, mask: bool = False) -> Tensor:
    if mask:
        return F.interpolate(img[None].float(), (size, size), mode="nearest")[0].byte()
    return F.interpolate(img[None], (size, size), mode="bilinear", antialias=True)[0]


def _load(ds: Any, idx: list[int], size: int, masks: bool = False) -> tuple[Tensor, Tensor | None]:
    imgs, ms = [], []
    for i in idx:
        item = ds[i]
        imgs.append(_resize(item.image, size))
        if masks:
            ms.append(_resize(item.mask, size, mask=True))
    return torch.stack(imgs), (torch.stack(ms)[:, 0] if masks else None)


def _segmenter() -> tuple[Any, str]:
    try:
        from cxr_curriculum.segmentation import LungSegmenter

        return LungSegmenter(), "LungSegmenter (bundled weights)"
    except Exception as err:  # weights not bundled yet: say so in the results
        return None, f"unavailable ({type(err).__name__}: {str(err)[:120]})"


def _classifier() -> nn.Module:
    bb = Backbone("resnet18", in_chans=1)
    return nn.Sequential(bb, nn.Linear(bb.num_features, 2))


# ----------------------------------------------------------------------------- speed
def bench_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of the scorer vs a pytorch-grad-cam loop, same model/images/masks."""
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ds = CovidChestXray(data_root() / "covid-chestxray", with_masks=True)
    images, masks = _load(ds, list(range(args.n)), args.size, masks=True)
    assert masks is not None
    torch.manual_seed(0)
    model = _classifier().eval()
    layer = model[0].target_layer
    seg, seg_desc = _segmenter()
    supplied = None if seg is not None else masks
    scorer = LungAttentionScorer(seg, method="gradcam", batch_size=args.n)
    with torch.no_grad():
        targets = model(images).argmax(1).tolist()

    def ours() -> None:
        scorer.score(model, images, targets, masks=supplied)

    def pgc_loop() -> None:
        with PGCGradCAM(model, [layer]) as cam:
            for i in range(args.n):
                x = images[i : i + 1]
                sal = torch.from_numpy(cam(x, [ClassifierOutputTarget(targets[i])]))
                lung = seg.predict(x).any(1) if seg is not None else masks[i : i + 1] == 1
                energy_in_mask(sal, lung)

    def pgc_batched() -> None:
        with PGCGradCAM(model, [layer]) as cam:
            sal = torch.from_numpy(cam(images, [ClassifierOutputTarget(k) for k in targets]))
        lung = seg.predict(images).any(1) if seg is not None else masks == 1
        energy_in_mask(sal, lung)

    def timed(fn: Any) -> dict[str, float]:
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        return {"median_s": med, "images_per_s": args.n / med, "times_s": times}

    result = {
        "env": _env(),
        "n_images": args.n,
        "size": args.size,
        "model": "Backbone('resnet18') + Linear(512, 2), random init, eval mode",
        "segmenter": seg_desc,
        "masks": "predicted" if seg is not None else "supplied V7 masks (segmenter not ready)",
        "ours_scorer": timed(ours),
        "pgc_per_image_loop": timed(pgc_loop),
        "pgc_batched_call": timed(pgc_batched),
    }
    ours_ips = result["ours_scorer"]["images_per_s"]
    result["speedup_vs_loop"] = ours_ips / result["pgc_per_image_loop"]["images_per_s"]
    result["speedup_vs_batched"] = ours_ips / result["pgc_batched_call"]["images_per_s"]
    return result


# ------------------------------------------------------------------------ experiment
def _patient_split(pids: list[str], test_frac: float, seed: int) -> tuple[list[int], list[int]]:
    uniq = sorted(set(pids))
    random.Random(seed).shuffle(uniq)
    test_p = set(uniq[: max(1, round(test_frac * len(uniq)))])
    train = [i for i, p in enumerate(pids) if p not in test_p]
    test = [i for i, p in enumerate(pids) if p in test_p]
    return train, test


def _train(model: nn.Module, x: Tensor, y: Tensor, epochs: int, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    losses = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for start in range(0, len(x), 32):
            idx = perm[start : start + 32]
            xb = x[idx]
            shift = torch.randint(-4, 5, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=(shift[0], shift[1]), dims=(2, 3))  # tiny jitter
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    return losses


def _auroc(scores: Tensor, labels: Tensor) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None]).float().mean()
    ties = (pos[:, None] == neg[None]).float().mean()
    return float(greater + 0.5 * ties)


def _task_data(task: str, size: int) -> dict[str, Any]:
    """Train/test tensors, labels, patient ids and V7 masks (covid test images only)."""
    cache = CACHE / f"{task}_{size}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=False)
    root = data_root()
    if task == "confounded":
        covid = CovidChestXray(root / "covid-chestxray", with_masks=True)
        c_idx = [i for i, f in enumerate(covid.findings) if f.startswith("COVID-19")]
        nih = NIHChestXray14(root / "nih-chestxray14-subset")
        n_idx = [i for i, lab in enumerate(nih.labels) if nih.classes[lab] == "No_findings"]
        c_tr, c_te = _patient_split([covid.patient_ids[i] for i in c_idx], 0.3, 0)
        n_tr, n_te = _patient_split([nih.patient_ids[i] for i in n_idx], 0.3, 0)
        cx, cm = _load(covid, [c_idx[i] for i in c_tr + c_te], size, masks=True)
        nx, _ = _load(nih, [n_idx[i] for i in n_tr + n_te], size)
        assert cm is not None
        ntr_c, ntr_n = len(c_tr), len(n_tr)
        data = {
            "x_train": torch.cat([cx[:ntr_c], nx[:ntr_n]]),
            "y_train": torch.tensor([1] * ntr_c + [0] * ntr_n),
            "x_test": torch.cat([cx[ntr_c:], nx[ntr_n:]]),
            "y_test": torch.tensor([1] * len(c_te) + [0] * len(n_te)),
            "pid_test": [covid.patient_ids[c_idx[i]] for i in c_te]
            + [nih.patient_ids[n_idx[i]] for i in n_te],
            "masks_test": torch.cat(
                [cm[ntr_c:], torch.full((len(n_te), size, size), 255, dtype=torch.uint8)]
            ),
            "has_mask": torch.tensor([True] * len(c_te) + [False] * len(n_te)),
            "classes": ["NIH No_findings", "COVID-19"],
        }
    else:
        tr = KermanyPneumonia(root / "kermany-pneumonia", split="train")
        te = KermanyPneumonia(root / "kermany-pneumonia", split="test")
        rng = random.Random(0)
        tr_idx = [
            i
            for c in (0, 1)
            for i in rng.sample([j for j, y in enumerate(tr.labels) if y == c], 400)
        ]
        xtr, _ = _load(tr, tr_idx, size)
        xte, _ = _load(te, list(range(len(te))), size)
        data = {
            "x_train": xtr,
            "y_train": torch.tensor([tr.labels[i] for i in tr_idx]),
            "x_test": xte,
            "y_test": torch.tensor(te.labels),
            "pid_test": list(te.patient_ids),
            "masks_test": None,
            "has_mask": torch.zeros(len(te), dtype=torch.bool),
            "classes": list(te.classes),
        }
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def run_task(task: str, args: argparse.Namespace, seg: Any, seg_desc: str) -> dict[str, Any]:
    data = _task_data(task, args.size)
    ckpt = CACHE / f"{task}_{args.size}_e{args.epochs}_model.pt"
    torch.manual_seed(0)
    model = _classifier()
    t0 = time.perf_counter()
    if ckpt.exists():
        model.load_state_dict(torch.load(ckpt, weights_only=True))
        losses: list[float] = []
    else:
        losses = _train(model, data["x_train"], data["y_train"], args.epochs, 0)
        torch.save(model.state_dict(), ckpt)
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b) for b in data["x_test"].split(64)])
    y = data["y_test"]
    out: dict[str, Any] = {
        "classes": data["classes"],
        "n_train": len(data["y_train"]),
        "n_test": len(y),
        "train_losses": losses,
        "train_s": train_s,
        "test_accuracy": float((logits.argmax(1) == y).float().mean()),
        "test_auroc": _auroc(logits.softmax(1)[:, 1], y),
    }
    # Score a balanced subset of held-out images (the class the model predicts).
    g = random.Random(1)
    pick: list[int] = []
    for c in (0, 1):
        pool = [i for i in range(len(y)) if int(y[i]) == c]
        pick += sorted(g.sample(pool, min(args.n_score // 2, len(pool))))
    x = data["x_test"][pick]
    pids = [data["pid_test"][i] for i in pick]
    scorer = LungAttentionScorer(seg, method="gradcam", batch_size=32, exclude_flagged=True)
    reports: dict[str, Any] = {}
    if data["masks_test"] is not None:
        has = [i for i, j in enumerate(pick) if bool(data["has_mask"][j])]
        rep = scorer.score(
            model, x[has], masks=data["masks_test"][pick][has], patient_ids=[pids[i] for i in has]
        )
        reports["covid_test_v7_masks"] = rep
    if seg is not None:
        reports["all_test_predicted_masks"] = scorer.score(model, x, patient_ids=pids)
        for c in (0, 1):
            idx = [i for i, j in enumerate(pick) if int(y[j]) == c]
            reports[f"class_{c}_predicted_masks"] = scorer.score(
                model, x[idx], patient_ids=[pids[i] for i in idx]
            )
    out["mask_source"] = seg_desc
    out["scores"] = {}
    for name, rep in reports.items():
        out["scores"][name] = {
            "n_images": len(rep),
            "aggregate": {
                k: rep.aggregate[k].to_dict()
                for k in (
                    "energy_in_mask",
                    "lift",
                    "pointing_game",
                    "rank_accuracy",
                    "area_fraction",
                )
            },
            "n_empty_maps": sum(r["saliency_empty"] for r in rep.rows),
            "n_flagged_masks": rep.meta["n_flagged_masks"],
        }
        assert rep.saliency is not None and rep.masks is not None
        k = min(8, len(rep))
        save_grid(
            RESULTS / f"attention_{task}_{name}.png",
            x[:k] if name != "covid_test_v7_masks" else x[has][:k],
            rep.saliency[:k],
            rep.masks[:k],
            ncol=4,
        )
    # Sanity check on 16 images with masks (supplied V7 or predicted).
    if "covid_test_v7_masks" in reports or seg is not None:
        if data["masks_test"] is not None:
            sx, sm = x[has][:16], data["masks_test"][pick][has][:16]
        else:
            sx, sm = x[:16], None
        t0 = time.perf_counter()
        res = scorer.sanity_check(model, sx, masks=sm, max_steps=5)
        out["sanity_check"] = {"rows": res.rows, "seconds": time.perf_counter() - t0}
    return out


def bench_experiment(args: argparse.Namespace) -> dict[str, Any]:
    seg, seg_desc = _segmenter()
    result: dict[str, Any] = {"env": _env(), "size": args.size, "epochs": args.epochs}
    for task in args.tasks:
        t0 = time.perf_counter()
        result[task] = run_task(task, args, seg, seg_desc)
        result[task]["total_s"] = time.perf_counter() - t0
        print(
            task,
            json.dumps({k: v for k, v in result[task].items() if k != "sanity_check"}, indent=1)[
                :3000
            ],
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--n", type=int, default=32)
    sp.add_argument("--size", type=int, default=128)
    sp.add_argument("--repeats", type=int, default=3)
    ex = sub.add_parser("experiment")
    ex.add_argument("--size", type=int, default=64)
    ex.add_argument("--epochs", type=int, default=5)
    ex.add_argument("--n-score", type=int, default=64)
    ex.add_argument("--tasks", nargs="+", default=["confounded", "kermany"])
    ex.add_argument("--out", default="attention_experiment.json")
    sp.add_argument("--out", default="attention_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = bench_speed(args) if args.cmd == "speed" else bench_experiment(args)
    path = RESULTS / args.out
    path.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {path}")
    if args.cmd == "speed":
        print({k: result[k] for k in ("segmenter", "speedup_vs_loop", "speedup_vs_batched")})


if __name__ == "__main__":
    main()
