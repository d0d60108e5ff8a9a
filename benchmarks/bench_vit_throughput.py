"""ViT SSL training-step throughput: MAE and DINO, cxr_curriculum vs lightly, side by side.

For every (thread count, image size, method) the same ViT (``Backbone`` around timm's
``vit_tiny_patch16_224`` by default, one channel) takes one optimiser step (forward, loss,
backward, SGD step, teacher update) with this library's method and with the equivalent
built from lightly's pieces, interleaved in one process, alternating which goes first,
``--repeats`` times; the table gives the median images/s of each and the median (and
range) of the per-repeat ratios.

- MAE: :class:`cxr_curriculum.methods.MAE` vs lightly's ``MaskedVisionTransformerTIMM``
  (on the same timm ViT, its weights kept) + ``MAEDecoderTIMM`` with the same decoder
  settings, lightly's ``random_token_mask``, ``patchify`` and ``normalize_mean_var``
  (the pattern of lightly's ``examples/pytorch/mae.py``, with normalised pixels).
- DINO: :class:`cxr_curriculum.methods.DINO` (2 global + ``n_local_crops`` local crops,
  local crops rounded to patch multiples) vs lightly's ``DINOProjectionHead`` and
  ``DINOLoss`` as in ``bench_ssl_throughput.py`` (one backbone pass per view, lightly's
  example; this library runs one pass per resolution).

Run ``python benchmarks/bench_vit_throughput.py --smoke`` (about a minute), or the
measurement (64 and 128 px, 1 and 2 threads, batch 32; about 15 minutes on a quiet
2-core CPU)::

    nice -n 10 python benchmarks/bench_vit_throughput.py

On a GPU: ``--device cuda --arch timm:vit_small_patch16_224 --sizes 224 --threads 0
--batch-size 128 --amp bf16``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results
from bench_ssl_throughput import (
    AMP,
    StepFn,
    _backbone,
    _sgd,
    autocast,
    lightly_cells,
    lightly_step,
    make_views,
    ours_step,
    scaled_hparams,
    step_rates,
    versus_lightly,
)
from cxr_curriculum.backbones import IMAGENET_GRAY_NORM

METHODS = ("mae", "dino")


def mae_hparams(args: argparse.Namespace) -> dict[str, Any]:
    """MAE settings shared by both sides."""
    return {
        "mask_ratio": 0.75,
        "decoder_dim": args.decoder_dim,
        "decoder_depth": args.decoder_depth,
        "decoder_heads": args.decoder_heads,
        "norm_pix_loss": True,
    }


def lightly_mae_step(
    hp: dict[str, Any], images: Tensor, device: str, arch: str, amp: str
) -> StepFn:
    """MAE from lightly's masked ViT, decoder and utilities, on the same ViT."""
    import warnings

    from lightly.models import utils
    from lightly.models.modules import MaskedVisionTransformerTIMM
    from lightly.models.modules.masked_autoencoder_timm import MAEDecoderTIMM

    torch.manual_seed(0)
    backbone = _backbone(arch, device, False)
    vit = backbone.body.model
    patch = int(backbone.patch_size or 16)
    n = (images.shape[-2] // patch) * (images.shape[-1] // patch)
    encoder = MaskedVisionTransformerTIMM(
        vit=vit, weight_initialization="skip", pos_embed_initialization="skip"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in lightly 1.6, still its MAE example
        decoder = MAEDecoderTIMM(
            num_patches=n, patch_size=patch, in_chans=1, embed_dim=backbone.num_features,
            decoder_embed_dim=hp["decoder_dim"], decoder_depth=hp["decoder_depth"],
            decoder_num_heads=hp["decoder_heads"],
        )  # fmt: skip
    model = nn.ModuleDict({"encoder": encoder, "decoder": decoder}).to(device).train()
    opt = _sgd(model.parameters())
    mean, std = IMAGENET_GRAY_NORM

    def loss_fn() -> Tensor:
        b = images.shape[0]
        keep, masked = utils.random_token_mask((b, n + 1), hp["mask_ratio"], device=device)
        x = decoder.embed(encoder.encode(images=(images - mean) / std, idx_keep=keep))
        tokens = utils.repeat_token(decoder.mask_token, (b, n + 1))
        tokens = utils.set_at_index(tokens, keep, x.type_as(tokens))
        pred = decoder.predict(utils.get_at_index(decoder.decode(tokens), masked))
        target = utils.get_at_index(utils.patchify(images, patch), masked - 1)
        return F.mse_loss(pred.float(), utils.normalize_mean_var(target.float()))

    def step(i: int) -> None:
        with autocast(device, amp):
            loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench(name: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Ours vs lightly for one method and size at the current thread count."""
    hp = mae_hparams(args) if name == "mae" else scaled_hparams(name, args.head_scale)
    if name == "dino":
        hp["n_local_crops"] = args.local_crops
    with torch.device("meta"):
        patch = _backbone(args.arch, "meta", False).patch_size
    views = make_views(name, hp, args.batch_size, size, args.device, patch)
    total = args.warmup + args.repeats * args.steps
    steps = {"ours": ours_step(name, hp, views, args.device, total, args.arch, args.amp)}
    if not args.no_lightly:
        if name == "mae":
            steps["lightly"] = lightly_mae_step(hp, views, args.device, args.arch, args.amp)
        else:
            steps["lightly"] = lightly_step(name, hp, views, args.device, total, args.arch,
                                            args.amp)  # fmt: skip
    rates = step_rates(steps, args)
    row: dict[str, Any] = {
        "method": name,
        "image_size": size,
        "threads": torch.get_num_threads(),
        "ours_img_s": statistics.median(rates["ours"]),
        **versus_lightly(rates),
    }
    row.update(ours_per_repeat=rates["ours"], lightly_per_repeat=rates.get("lightly", []))
    return row


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Settings: {args.arch} (1 channel), batch {args.batch_size}, device {args.device}, "
        f"autocast {args.amp}; MAE mask 0.75, decoder {args.decoder_dim}-d x "
        f"{args.decoder_depth} blocks x {args.decoder_heads} heads; DINO heads / "
        f"{args.head_scale}, {args.local_crops} local crops; {args.steps} steps x "
        f"{args.repeats} interleaved repeats after {args.warmup} warm-up steps.",
        "",
        "| method | px | threads | cxr_curriculum img/s | lightly img/s | ratio (min-max) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        where = f"{r['method']} | {r['image_size']} | {r['threads']}"
        lines.append(f"| {where} | {r['ours_img_s']:.1f} | {lightly_cells(r)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings, about a minute")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--arch", default="timm:vit_tiny_patch16_224")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch threads (0: leave as is)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--decoder-dim", type=int, default=512)
    parser.add_argument("--decoder-depth", type=int, default=1, help="lightly's example: 1")
    parser.add_argument("--decoder-heads", type=int, default=16)
    parser.add_argument("--head-scale", type=int, default=8, help="DINO head widths divided")
    parser.add_argument("--local-crops", type=int, default=8, help="DINO local crops")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default="none", choices=sorted(AMP))
    parser.add_argument("--no-lightly", action="store_true")
    parser.add_argument("--name", default="vit_throughput", help="results file stem")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.batch_size, args.steps, args.repeats, args.warmup = [32], 4, 1, 2, 1
        args.decoder_dim, args.decoder_heads, args.head_scale, args.local_crops = 64, 4, 64, 2
        if args.name == "vit_throughput":
            args.name = "vit_throughput_smoke"
    rows = []
    for threads in args.threads:
        if threads:
            torch.set_num_threads(threads)
        for size in args.sizes:
            for name in args.methods:
                t0 = time.perf_counter()
                rows.append(bench(name, size, args))
                print(f"{name} {size}px {torch.get_num_threads()} threads: "
                      f"{ {k: v for k, v in rows[-1].items() if 'per_repeat' not in k} } "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    notes = (
        "Images/s counts source images (DINO: each gives 2 global and the local crops). "
        "The ratio is cxr_curriculum over lightly (> 1: this library is faster); both sides "
        "train the same one-channel timm ViT with the same settings and SGD. Design "
        "differences: this library's MAE draws masks on the CPU (seeded, device-independent) "
        "and predicts only the masked patches, as lightly does; its DINO runs the backbone "
        "once per crop resolution (the official multi-crop wrapper), lightly's example once "
        "per view. On a loaded CPU read the min-max of the per-repeat ratio."
    )
    write_results(
        args.name,
        {"rows": rows},
        config=vars(args),
        markdown=_markdown(rows, args),
        title="ViT SSL training throughput (MAE, DINO)",
        notes=notes,
    )


if __name__ == "__main__":
    main()
