"""Lung-attention benchmarks: scoring throughput and a real-data shortcut experiment.

Usage (from the repository root, data in ``../shared/data`` or ``$CXR_DATA_ROOT``)::

    PYTHONPATH=src nice -n 10 python benchmarks/bench_attention.py speed --n 32 --size 128
    PYTHONPATH=src nice -n 10 python benchmarks/bench_attention.py experiment --size 64

``speed`` times ``LungAttentionScorer.score`` (batched Grad-CAM + segmentation + all
metrics + bootstrap CIs) against a per-image loop of pytorch-grad-cam's ``GradCAM`` plus
the same segmenter plus an energy-in-mask computation, on the same images and model,
and also pytorch-grad-cam called once on the whole batch. ``--supplied-masks`` gives
every pipeline the V7 masks instead (no segmentation) and writes
``attention_speed_supplied_masks.json`` unless ``--out`` says otherwise.

``experiment`` trains two small classifiers (ResNet-18 from scratch, 64 px, a few
epochs): a confounded one (covid-chestxray COVID-19 vs NIH ChestX-ray14 No_findings:
different sources) and a Kermany pneumonia one, then scores held-out images (split by
patient) with lung masks, with bootstrap CIs by patient, and runs the cascading
randomisation sanity check. Results go to ``benchmarks/results/attention_*.json``.

``--seg-checkpoint PATH`` runs either command with the ``LungSegmenter`` architecture and
interim weights (a training checkpoint) instead of the bundled ones. Trained classifiers
and preprocessed tensors are cached in ``$ATTN_BENCH_CACHE`` (default
``~/.cache/cxr_curriculum/attn_bench``, a folder only its owner can open, not a shared
temporary folder), so a rerun only re-scores. Cached files hold only tensors and plain
containers and are read with ``torch.load(weights_only=True)``: nothing is unpickled.
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

from cxr_curriculum.attention import LungAttentionScorer, energy_in_mask, find_layer, save_grid
from cxr_curriculum.backbones import Backbone
from cxr_curriculum.data import CovidChestXray, KermanyPneumonia, NIHChestXray14, data_root
from cxr_curriculum.transforms import Resize

#: Label -> (saliency method, target layer). At 64 px, ResNet-18's layer4 map is 2 x 2
#: and layer3's 4 x 4; input gradients are at full resolution.
METHODS: dict[str, tuple[str, str | None]] = {
    "gradcam_layer4": ("gradcam", None),
    "gradcam_layer3": ("gradcam", "0.body.layer3"),
    "gradients": ("gradients", None),
}
RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(
    os.environ.get("ATTN_BENCH_CACHE", Path.home() / ".cache" / "cxr_curriculum" / "attn_bench")
)


def _private_cache() -> Path:
    """The cache folder, created private to this user (mode 0700)."""
    CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
    CACHE.chmod(0o700)
    return CACHE


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


def _load(ds: Any, idx: list[int], size: int, masks: bool = False) -> tuple[Tensor, Tensor | None]:
    resize = Resize(size)
    imgs, ms = [], []
    for i in idx:
        item = ds[i]
        if masks:
            image, mask = resize(item.image, item.mask)
            ms.append(mask)
        else:
            image = resize(item.image)
        imgs.append(image)
    return torch.stack(imgs), (torch.stack(ms)[:, 0] if masks else None)


def _segmenter(checkpoint: str | None = None) -> tuple[Any, str]:
    """The bundled LungSegmenter, or (``checkpoint``) the same model with interim weights."""
    from cxr_curriculum.segmentation import LungSegmenter

    seg = LungSegmenter()
    if checkpoint is None:
        return seg, f"LungSegmenter (bundled weights {seg.weights.value.file})"
    from safetensors.torch import load_file

    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(checkpoint).items()}
    seg.model.load_state_dict(state)
    return seg, f"LungSegmenter architecture with interim weights {checkpoint}"


def _classifier() -> nn.Module:
    bb = Backbone("resnet18", in_chans=1)
    return nn.Sequential(bb, nn.Linear(bb.num_features, 2))


# ----------------------------------------------------------------------------- speed
def bench_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of the scorer vs a pytorch-grad-cam loop, same model/images/masks."""
    from pytorch_grad_cam import GradCAM as PGCGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    env = _env()
    ds = CovidChestXray(data_root() / "covid-chestxray", with_masks=True)
    images, masks = _load(ds, list(range(args.n)), args.size, masks=True)
    assert masks is not None
    torch.manual_seed(0)
    model = _classifier().eval()
    layer = find_layer(model, None)
    if args.supplied_masks:
        seg, seg_desc = None, "none: V7 masks supplied to every pipeline"
    else:
        seg, seg_desc = _segmenter(args.seg_checkpoint)
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

    fns = {"ours_scorer": ours, "pgc_per_image_loop": pgc_loop, "pgc_batched_call": pgc_batched}
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(args.repeats):  # interleaved, so that changing machine load hits all alike
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    result: dict[str, Any] = {
        "env": env,
        "n_images": args.n,
        "size": args.size,
        "model": "Backbone('resnet18') + Linear(512, 2), random init, eval mode",
        "segmenter": seg_desc,
        "masks": "predicted" if seg is not None else "supplied V7 masks",
    }
    for name, ts in times.items():
        med = statistics.median(ts)
        cpu_med = statistics.median(cpu[name])
        result[name] = {
            "median_s": med,
            "images_per_s": args.n / med,
            "times_s": ts,
            "median_cpu_s": cpu_med,
            "images_per_cpu_s": args.n / cpu_med,
        }
    for other, key in (("pgc_per_image_loop", "loop"), ("pgc_batched_call", "batched")):
        result[f"speedup_vs_{key}"] = result[other]["median_s"] / result["ours_scorer"]["median_s"]
        result[f"cpu_speedup_vs_{key}"] = (
            result[other]["median_cpu_s"] / result["ours_scorer"]["median_cpu_s"]
        )
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
    cache = _private_cache() / f"{task}_{size}.pt"
    if cache.exists():
        return dict(torch.load(cache, weights_only=True))
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
    torch.save(data, cache)
    return data


def run_task(task: str, args: argparse.Namespace, seg: Any, seg_desc: str) -> dict[str, Any]:
    data = _task_data(task, args.size)
    ckpt = _private_cache() / f"{task}_{args.size}_e{args.epochs}_model.pt"
    torch.manual_seed(0)
    model = _classifier()
    t0 = time.perf_counter()
    sidecar = ckpt.with_suffix(".json")
    if ckpt.exists() and sidecar.exists():
        model.load_state_dict(torch.load(ckpt, weights_only=True))
        info = json.loads(sidecar.read_text())
        losses, train_s = info["losses"], info["train_s"]
    else:
        losses = _train(model, data["x_train"], data["y_train"], args.epochs, 0)
        train_s = time.perf_counter() - t0
        torch.save(model.state_dict(), ckpt)
        sidecar.write_text(json.dumps({"losses": losses, "train_s": train_s}))
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
    has = [i for i, j in enumerate(pick) if bool(data["has_mask"][j])]
    subsets: list[tuple[str, list[int], Tensor | None]] = []
    if data["masks_test"] is not None:
        subsets.append(("covid_test_v7_masks", has, data["masks_test"][pick][has]))
    if seg is not None:
        subsets.append(("all_test_predicted_masks", list(range(len(pick))), None))
        for c, cname in enumerate(data["classes"]):
            idx = [i for i, j in enumerate(pick) if int(y[j]) == c]
            subsets.append((f"{cname.replace(' ', '_')}_predicted_masks", idx, None))
    out["mask_source"] = seg_desc
    out["scores"], out["compare"], out["sanity_check"] = {}, {}, {}
    main = ("energy_in_mask", "lift", "pointing_game", "rank_accuracy", "area_fraction")
    for sub, idx, masks in subsets:
        reports = {}
        for label, (method, layer) in METHODS.items():
            scorer = LungAttentionScorer(
                seg, method, layer, batch_size=32, exclude_flagged=True, seed=0
            )
            rep = scorer.score(model, x[idx], masks=masks, patient_ids=[pids[i] for i in idx])
            reports[label] = rep
            out["scores"][f"{label}/{sub}"] = {
                "n_images": len(rep),
                "aggregate": {k: rep.aggregate[k].to_dict() for k in main},
                "n_empty_maps": sum(r["saliency_empty"] for r in rep.rows),
                "n_flagged_masks": rep.meta["n_flagged_masks"],
            }
            if sub.startswith(("covid_test", "all_test")):
                assert rep.saliency is not None and rep.masks is not None
                sel = torch.linspace(0, len(rep) - 1, min(8, len(rep))).round().long()
                big = F.interpolate(x[idx][sel], scale_factor=2, mode="bilinear")  # display
                path = RESULTS / f"attention_{task}_{label}_{sub}.png"
                save_grid(path, big, rep.saliency[sel], rep.masks[sel])
        base = LungAttentionScorer(seg, batch_size=32)
        for label in list(METHODS)[1:]:
            for metric in ("energy_in_mask", "lift"):
                cmp = base.compare(reports[label], reports["gradcam_layer4"], metric)
                out["compare"][f"{label}-gradcam_layer4/{sub}/{metric}"] = cmp.to_dict()
    # Sanity check on 16 images with masks (supplied V7 where there are, else predicted).
    if subsets:
        sub, idx, masks = subsets[0]
        chosen = idx[:: max(1, len(idx) // 16)][:16]
        sm = None if masks is None else masks[[idx.index(i) for i in chosen]]
        for label in ("gradcam_layer4", "gradients"):
            method, layer = METHODS[label]
            scorer = LungAttentionScorer(seg, method, layer, batch_size=32)
            t0 = time.perf_counter()
            res = scorer.sanity_check(model, x[chosen], masks=sm, max_steps=5)
            out["sanity_check"][label] = {
                "images": sub,
                "n_images": len(chosen),
                "rows": res.rows,
                "seconds": time.perf_counter() - t0,
            }
    return out


def bench_experiment(args: argparse.Namespace) -> dict[str, Any]:
    seg, seg_desc = _segmenter(args.seg_checkpoint)
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
    sp.add_argument(
        "--out",
        default=None,
        help="file under benchmarks/results (default attention_speed.json; "
        "attention_speed_supplied_masks.json with --supplied-masks)",
    )
    sp.add_argument("--smoke", action="store_true", help="4 images at 64 px, one repeat")
    sp.add_argument(
        "--supplied-masks", action="store_true", help="give every pipeline the V7 masks"
    )
    for p in (sp, ex):
        p.add_argument("--seg-checkpoint", default=None, help="interim LungNet safetensors")
    args = parser.parse_args()
    if args.cmd == "speed" and args.smoke:
        args.n, args.size, args.repeats = 4, 64, 1
        args.out = "attention_speed_smoke.json"
    if args.cmd == "speed" and args.out is None:
        args.out = (
            "attention_speed_supplied_masks.json" if args.supplied_masks else "attention_speed.json"
        )
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = bench_speed(args) if args.cmd == "speed" else bench_experiment(args)
    path = RESULTS / args.out
    path.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {path}")
    if args.cmd == "speed":
        keys = ("segmenter", "speedup_vs_loop", "speedup_vs_batched", "cpu_speedup_vs_loop")
        print({k: result[k] for k in keys})


if __name__ == "__main__":
    main()
