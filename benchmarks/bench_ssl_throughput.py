"""SSL training-step throughput: cxr_curriculum vs lightly, and end to end on real X-rays.

Part 1 (``step``): images/s of one optimiser step (forward of every view, loss,
backward, SGD step, momentum update) for each SSL method, this library vs the
equivalent built from lightly's heads and losses, on the same one-channel ResNet-18
(``cxr_curriculum.Backbone``), batch, resolution and pre-made views. The two run
interleaved in one process, alternating which goes first, ``--repeats`` times; the
table gives the median images/s of each and the median of the per-repeat ratios.
Rotation has no lightly counterpart and is timed for this library only.

Part 2 (``e2e``): images/s end to end on real Kermany radiographs: JPEG decoding,
augmentation and the training step, with the per-sample path (``make_transform``
in the ``DataLoader``) vs the batched path (``make_transform(batched=True)``, which
only resizes per sample, then ``method.batch_transform`` on the device). The two
paths alternate, ``--repeats`` times.

Run ``python benchmarks/bench_ssl_throughput.py --smoke`` (about a minute) or, e.g.,
``nice -n 10 python benchmarks/bench_ssl_throughput.py --image-size 64 --batch-size 32``.
On a GPU: ``--device cuda --image-size 224 --batch-size 128 --workers 8``, with
``--arch resnet50 --amp bf16 --channels-last`` or ``--arch timm:vit_small_patch16_224 --amp
bf16`` (both sides run under the same autocast and memory format; Jigsaw-free method list,
so every method applies to a ViT; DINO's local crops are rounded to patch multiples).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results
from cxr_curriculum.backbones import Backbone
from cxr_curriculum.data import KermanyPneumonia, data_root
from cxr_curriculum.methods import METHODS, SSLMethod

STEP_METHODS = (
    "simclr",
    "moco_v2",
    "byol",
    "simsiam",
    "barlow_twins",
    "vicreg",
    "dino",
    "rotation",
)
StepFn = Callable[[int], None]
AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: str, amp: str) -> Any:
    """The autocast context of ``--amp`` on ``device`` (a no-op for ``"none"``)."""
    dtype = AMP[amp]
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def _backbone(arch: str, device: str, channels_last: bool) -> Backbone:
    bb = Backbone(arch, in_chans=1).to(device)
    return bb.to(memory_format=torch.channels_last) if channels_last else bb


# --------------------------------------------------------------------------- set-up
def scaled_hparams(name: str, head_scale: int) -> dict[str, Any]:
    """Default hyper-parameters of a method with head widths (and queue) divided."""
    hp = dict(METHODS[name]().hparams)
    if head_scale > 1:
        for key, value in hp.items():
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if is_int and (key.endswith("_dim") or key == "queue_size"):
                hp[key] = max(8, value // head_scale)
    return hp


def make_views(
    name: str,
    hp: dict[str, Any],
    batch: int,
    size: int,
    device: str,
    patch: int | None = None,
    channels_last: bool = False,
) -> Any:
    """Random views in the layout the method's ``training_step`` expects.

    ``patch``: a ViT's patch size; DINO's local crops are then a multiple of it (as
    :meth:`cxr_curriculum.methods.DINO.local_size` makes them).
    """
    g = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def rand(n: int, s: int) -> Tensor:
        return torch.rand(n, 1, s, s, generator=g).to(device).contiguous(memory_format=fmt)

    if name in ("rotation", "mae"):
        return rand(batch, size)
    views = [rand(batch, size), rand(batch, size)]
    if name == "dino":
        local = size * hp["local_size_ratio"]
        local = max(patch, round(local / patch) * patch) if patch else max(8, round(local))
        views += [rand(batch, local) for _ in range(hp["n_local_crops"])]
    return views


def _sgd(params: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in params if p.requires_grad], lr=0.01, momentum=0.9)


def ours_step(
    name: str,
    hp: dict[str, Any],
    views: Any,
    device: str,
    total: int,
    arch: str = "resnet18",
    amp: str = "none",
    channels_last: bool = False,
) -> StepFn:
    """One training step of this library's method."""
    torch.manual_seed(0)
    method: SSLMethod = METHODS[name](**hp)
    method.setup(_backbone(arch, device, channels_last))
    method.train()
    opt = _sgd(method.parameters())

    def step(i: int) -> None:
        with autocast(device, amp):
            loss = method.training_step(views)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.on_step_end(i, total)

    return step


def _frozen_copy(module: nn.Module) -> nn.Module:
    from lightly.models.utils import deactivate_requires_grad

    twin = copy.deepcopy(module)
    deactivate_requires_grad(twin)
    return twin


def lightly_step(
    name: str,
    hp: dict[str, Any],
    views: Any,
    device: str,
    total: int,
    arch: str = "resnet18",
    amp: str = "none",
    channels_last: bool = False,
) -> StepFn:
    """The same step written with lightly's heads, losses and momentum utilities.

    Follows lightly's own examples (``examples/pytorch/<method>.py``) with the
    hyper-parameters of this library's method, on the same backbone.
    """
    from lightly import loss as L
    from lightly.models.modules import heads as H
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    torch.manual_seed(0)
    bb = _backbone(arch, device, channels_last)
    d = bb.num_features
    parts: dict[str, nn.Module] = {"backbone": bb}
    x0, x1 = views[0], views[1]

    if name == "simclr":
        parts["head"] = H.SimCLRProjectionHead(d, hp["hidden_dim"] or d, hp["output_dim"])
        crit: nn.Module = L.NTXentLoss(temperature=hp["temperature"])

        def loss_fn(i: int) -> Tensor:
            return crit(parts["head"](bb(x0)), parts["head"](bb(x1)))

    elif name == "moco_v2":
        parts["head"] = H.MoCoProjectionHead(d, hp["hidden_dim"], hp["output_dim"])
        parts["bb_m"], parts["head_m"] = _frozen_copy(bb), _frozen_copy(parts["head"])
        crit = L.NTXentLoss(
            temperature=hp["temperature"], memory_bank_size=(hp["queue_size"], hp["output_dim"])
        )

        def loss_fn(i: int) -> Tensor:
            m = cosine_schedule(i, total, hp["momentum"], hp["momentum_end"])
            update_momentum(bb, parts["bb_m"], m)
            update_momentum(parts["head"], parts["head_m"], m)
            q = parts["head"](bb(x0))
            k = parts["head_m"](parts["bb_m"](x1)).detach()
            return crit(q, k)

    elif name in ("byol", "simsiam"):
        if name == "byol":
            parts["head"] = H.BYOLProjectionHead(
                d, hp["projection_hidden_dim"], hp["projection_dim"]
            )
            parts["pred"] = H.BYOLPredictionHead(
                hp["projection_dim"], hp["prediction_hidden_dim"], hp["projection_dim"]
            )
            parts["bb_m"], parts["head_m"] = _frozen_copy(bb), _frozen_copy(parts["head"])
        else:
            p = hp["projection_dim"]
            parts["head"] = H.SimSiamProjectionHead(d, p, p)
            parts["pred"] = H.SimSiamPredictionHead(p, hp["prediction_hidden_dim"], p)
        crit = L.NegativeCosineSimilarity()

        def loss_fn(i: int) -> Tensor:
            z0, z1 = parts["head"](bb(x0)), parts["head"](bb(x1))
            p0, p1 = parts["pred"](z0), parts["pred"](z1)
            if name == "simsiam":
                return 0.5 * (crit(p0, z1.detach()) + crit(p1, z0.detach()))
            m = cosine_schedule(i, total, hp["momentum"], hp["momentum_end"])
            update_momentum(bb, parts["bb_m"], m)
            update_momentum(parts["head"], parts["head_m"], m)
            with torch.no_grad():
                t0 = parts["head_m"](parts["bb_m"](x0))
                t1 = parts["head_m"](parts["bb_m"](x1))
            return crit(p0, t1) + crit(p1, t0)  # summed, as this library (lightly PR #1286)

    elif name in ("barlow_twins", "vicreg"):
        p = hp["projection_dim"]
        if name == "barlow_twins":
            parts["head"] = H.BarlowTwinsProjectionHead(d, p, p)
            crit = L.BarlowTwinsLoss(lambda_param=hp["lambda_param"])
        else:
            parts["head"] = H.VICRegProjectionHead(d, p, p, num_layers=3)
            crit = L.VICRegLoss()

        def loss_fn(i: int) -> Tensor:
            return crit(parts["head"](bb(x0)), parts["head"](bb(x1)))

    elif name == "dino":

        def dino_head() -> nn.Module:
            return H.DINOProjectionHead(
                d, hp["hidden_dim"], hp["bottleneck_dim"], hp["output_dim"], freeze_last_layer=1
            )

        # A weight-normed head cannot be deep-copied: build the teacher as lightly's example.
        parts["head"], parts["head_m"] = dino_head(), dino_head()
        parts["head_m"].load_state_dict(parts["head"].state_dict())
        parts["head_m"].requires_grad_(False)
        parts["bb_m"] = _frozen_copy(bb)
        crit = L.DINOLoss(
            hp["output_dim"], warmup_teacher_temp=hp["teacher_temp"],
            teacher_temp=hp["teacher_temp"], student_temp=hp["student_temp"],
            center_momentum=hp["center_momentum"],
        )  # fmt: skip

        def loss_fn(i: int) -> Tensor:
            m = cosine_schedule(i, total, hp["momentum"], hp["momentum_end"])
            update_momentum(bb, parts["bb_m"], m)
            update_momentum(parts["head"], parts["head_m"], m)
            teacher = [parts["head_m"](parts["bb_m"](v)) for v in views[:2]]
            student = [parts["head"](bb(v)) for v in views]
            return crit(teacher, student, epoch=1)

    else:
        raise ValueError(f"no lightly equivalent of {name!r}")
    model = nn.ModuleDict(parts).to(device).train()
    opt = _sgd(model.parameters())

    def step(i: int) -> None:
        with autocast(device, amp):
            loss = loss_fn(i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if name == "dino":
            parts["head"].cancel_last_layer_gradients(current_epoch=1)  # type: ignore[operator]
        opt.step()

    return step


# --------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(step: StepFn, n: int, start: int, device: str) -> float:
    """Seconds for ``n`` calls of ``step``."""
    _sync(device)
    t0 = time.perf_counter()
    for i in range(n):
        step(start + i)
    _sync(device)
    return time.perf_counter() - t0


def interleaved(runners: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each timer ``repeats`` times, alternating the order every repeat."""
    names = list(runners)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            out[n].append(runners[n]())
    return out


def step_rates(steps: dict[str, StepFn], args: argparse.Namespace) -> dict[str, list[float]]:
    """Images/s of each step function per repeat: ``--warmup`` steps each, then
    ``--steps`` timed steps per repeat, interleaved (:func:`interleaved`)."""
    for s in steps.values():
        time_steps(s, args.warmup, 0, args.device)
    counters = dict.fromkeys(steps, args.warmup)

    def runner(key: str) -> Callable[[], float]:
        def run() -> float:
            sec = time_steps(steps[key], args.steps, counters[key], args.device)
            counters[key] += args.steps
            return args.batch_size * args.steps / sec

        return run

    return interleaved({k: runner(k) for k in steps}, args.repeats)


def versus_lightly(rates: dict[str, list[float]]) -> dict[str, Any]:
    """lightly's median images/s and the median and range of the per-repeat ratios
    ours / lightly (nothing when lightly was not timed)."""
    if "lightly" not in rates:
        return {}
    ratios = [a / b for a, b in zip(rates["ours"], rates["lightly"], strict=True)]
    return {
        "lightly_img_s": statistics.median(rates["lightly"]),
        "ratio_ours_over_lightly": statistics.median(ratios),
        "ratio_min_max": [min(ratios), max(ratios)],
    }


def lightly_cells(row: dict[str, Any]) -> str:
    """The markdown cells ``lightly img/s | ratio (min-max)`` of a row (``n/a`` without lightly)."""
    if "lightly_img_s" not in row:
        return "n/a | n/a"
    lo, hi = row["ratio_min_max"]
    return f"{row['lightly_img_s']:.1f} | {row['ratio_ours_over_lightly']:.3f} ({lo:.2f}-{hi:.2f})"


def _patch(arch: str) -> int | None:
    with torch.device("meta"):
        return Backbone(arch).patch_size


def bench_step(name: str, args: argparse.Namespace) -> dict[str, Any]:
    hp = scaled_hparams(name, args.head_scale)
    views = make_views(name, hp, args.batch_size, args.image_size, args.device,
                       _patch(args.arch), args.channels_last)  # fmt: skip
    total = args.warmup + args.repeats * args.steps
    setting = (args.arch, args.amp, args.channels_last)
    steps = {"ours": ours_step(name, hp, views, args.device, total, *setting)}
    if name != "rotation" and not args.no_lightly:
        steps["lightly"] = lightly_step(name, hp, views, args.device, total, *setting)
    rates = step_rates(steps, args)
    row: dict[str, Any] = {"method": name, "ours_img_s": statistics.median(rates["ours"])}
    row.update(versus_lightly(rates))
    row["ours_per_repeat"] = rates["ours"]
    row["lightly_per_repeat"] = rates.get("lightly", [])
    return row


def _images(batch: Any) -> Any:
    """The image field of a collated ``LabeledImage`` batch (a tensor or a list of views)."""
    return batch[0] if isinstance(batch, tuple | list) and len(batch) == 3 else batch


def _to(x: Any, device: str) -> Any:
    if isinstance(x, Tensor):
        return x.to(device, non_blocking=True)
    return [v.to(device, non_blocking=True) for v in x]


def bench_e2e(name: str, args: argparse.Namespace) -> dict[str, Any]:
    hp = scaled_hparams(name, args.head_scale)
    torch.manual_seed(0)
    method: SSLMethod = METHODS[name](**hp)
    method.setup(_backbone(args.arch, args.device, args.channels_last))
    method.train()
    opt = _sgd(method.parameters())
    root = data_root() / "kermany-pneumonia"
    n_images = args.batch_size * args.e2e_batches
    loaders = {}
    for path in ("per_sample", "batched"):
        batched = path == "batched"
        tf = method.make_transform(args.image_size, batched=batched)
        batch_tf = method.batch_transform
        ds = KermanyPneumonia(root, split="train", transform=tf)
        sub = Subset(
            ds,
            torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n_images].tolist(),
        )
        loaders[path] = (sub, batch_tf)
    step_i = [0]
    total = (args.repeats + 1) * 2 * args.e2e_batches

    def runner(path: str) -> Callable[[], float]:
        sub, batch_tf = loaders[path]

        def run() -> float:
            loader = DataLoader(
                sub,
                batch_size=args.batch_size,
                shuffle=True,
                num_workers=args.workers,
                drop_last=True,
                pin_memory=args.device.startswith("cuda"),
                persistent_workers=False,
            )
            _sync(args.device)
            t0 = time.perf_counter()
            n = 0
            for batch in loader:
                x = _to(_images(batch), args.device)
                if batch_tf is not None:
                    x = batch_tf(x)
                with autocast(args.device, args.amp):
                    loss = method.training_step(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                method.on_step_end(step_i[0], total)
                step_i[0] += 1
                n += x[0].shape[0] if isinstance(x, list) else x.shape[0]
            _sync(args.device)
            return n / (time.perf_counter() - t0)

        return run

    runners = {p: runner(p) for p in loaders}
    rates = interleaved(runners, args.repeats + 1)
    rates = {k: v[1:] for k, v in rates.items()}  # first alternation = warm-up
    per, bat = statistics.median(rates["per_sample"]), statistics.median(rates["batched"])
    return {
        "method": name,
        "per_sample_img_s": per,
        "batched_img_s": bat,
        "speedup_batched": bat / per,
        "per_sample_per_repeat": rates["per_sample"],
        "batched_per_repeat": rates["batched"],
    }


# --------------------------------------------------------------------------- report
def _markdown(
    step_rows: list[dict[str, Any]], e2e_rows: list[dict[str, Any]], args: argparse.Namespace
) -> str:
    lines = [
        f"Settings: {args.arch} (1 channel), {args.image_size} px, batch {args.batch_size}, "
        f"device {args.device}, autocast {args.amp}, channels_last {args.channels_last}, "
        f"head widths / {args.head_scale}, {args.steps} steps x "
        f"{args.repeats} interleaved repeats after {args.warmup} warm-up steps, "
        f"{torch.get_num_threads()} torch threads.",
        "",
        "## One training step (forward, loss, backward, SGD step, momentum update)",
        "",
        "| method | cxr_curriculum img/s | lightly img/s | ratio ours/lightly (min-max) |",
        "|---|---|---|---|",
    ]
    for r in step_rows:
        lines.append(f"| {r['method']} | {r['ours_img_s']:.1f} | {lightly_cells(r)} |")
    if e2e_rows:
        lines += [
            "",
            "## End to end on real Kermany images (decode, augment, step)",
            "",
            f"{args.e2e_batches} batches per measurement, {args.workers} DataLoader workers.",
            "",
            "| method | per-sample augmentation img/s | batched augmentation img/s | speed-up |",
            "|---|---|---|---|",
        ]
        for r in e2e_rows:
            lines.append(
                f"| {r['method']} | {r['per_sample_img_s']:.1f} | {r['batched_img_s']:.1f} | "
                f"{r['speedup_batched']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings, about a minute")
    parser.add_argument("--methods", nargs="+", default=list(STEP_METHODS), choices=STEP_METHODS)
    parser.add_argument(
        "--e2e-methods",
        nargs="*",
        default=None,
        choices=STEP_METHODS,
        help="methods timed end to end (default: simclr byol; with --smoke: simclr)",
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--e2e-batches", type=int, default=4, help="batches per e2e measurement")
    parser.add_argument(
        "--head-scale",
        type=int,
        default=1,
        help="divide head widths and the MoCo queue by this (1 = paper)",
    )
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (1 is much faster on a shared, loaded CPU)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="resnet18", help="Backbone name, e.g. resnet50 or a ViT")
    parser.add_argument("--amp", default="none", choices=sorted(AMP), help="autocast dtype")
    parser.add_argument("--channels-last", action="store_true", help="channels_last (CNNs)")
    parser.add_argument("--no-lightly", action="store_true")
    parser.add_argument("--name", default="ssl_throughput", help="results file stem")
    args = parser.parse_args(argv)
    if args.smoke:
        args.image_size, args.batch_size, args.steps, args.repeats = 32, 8, 1, 2
        args.warmup, args.e2e_batches, args.head_scale = 1, 2, 16
        args.e2e_methods = ["simclr"] if args.e2e_methods is None else args.e2e_methods
        args.threads = args.threads or (1 if args.device == "cpu" else None)
        if args.name == "ssl_throughput":
            args.name = "ssl_throughput_smoke"
    if args.e2e_methods is None:
        args.e2e_methods = ["simclr", "byol"]
    if args.threads:
        torch.set_num_threads(args.threads)
    step_rows, e2e_rows = [], []
    for name in args.methods:
        t0 = time.perf_counter()
        step_rows.append(bench_step(name, args))
        print(f"step {name}: {step_rows[-1]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    for name in args.e2e_methods:
        t0 = time.perf_counter()
        e2e_rows.append(bench_e2e(name, args))
        print(f"e2e {name}: {e2e_rows[-1]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    notes = (
        "Images/s counts source images (each gives two or more views). The ratio is "
        "cxr_curriculum over lightly (> 1: this library is faster). lightly's side is "
        "built as in lightly's examples from its heads, losses and `update_momentum` "
        "around the same `Backbone`, with this library's hyper-parameters. Known design "
        "differences: this library's SimCLR runs the backbone once on both views "
        "concatenated (batch-norm statistics over both views, as the SimCLR paper's "
        "global BN) and DINO once per crop resolution (the official multi-crop wrapper); "
        "lightly's examples run one pass per view. Rotation has no lightly counterpart. "
        "On a shared, loaded CPU the spread between repeats is large: read the min-max "
        "of the per-repeat ratio, not only the median."
    )
    write_results(
        args.name,
        {"step": step_rows, "e2e": e2e_rows},
        config=vars(args),
        markdown=_markdown(step_rows, e2e_rows, args),
        title="SSL training throughput",
        notes=notes,
    )


if __name__ == "__main__":
    main()
