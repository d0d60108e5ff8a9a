"""Decoding cost of real radiographs, and what ``DecodedCache`` saves, in one run.

Measured on the real files of ``CXR_DATA_ROOT`` (default ``../shared/data``):

1. ``decode``: seconds per file of ``read_image`` for every DICOM film of
   ``dicom-cxr/`` (one row per file: encoding, size, bits), and per image for a
   PNG/JPEG sample (Kermany JPEGs, NIH PNGs); the median of ``--repeats`` reads.
2. ``read``: seconds per item of a pool (the DICOM films plus the PNG/JPEG sample)
   read uncached (``UnlabeledImages``/``ImagePool``: decode every time) and from a
   ``DecodedCache`` (``long_side=512``), for the DICOM films and the PNG/JPEG images
   separately; plus the cache's build and re-open (sha256 verification) times.
3. ``pretrain``: end-to-end images/s of a SimCLR stage (``--steps`` steps, batch
   ``--batch-size``, 64 px, ResNet-18, ``Curriculum.fit``) on that pool, with and
   without the cache, same seed; the ratio is the speed-up.

The machine may be shared: the 1-minute load average at the start and the end is
recorded, and the ratios (uncached / cached, measured back to back) are what to read.
Run ``python benchmarks/bench_decode.py`` (about two minutes on 2 cores) or
``--smoke`` (seconds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_results
from cxr_curriculum import Backbone, Curriculum, Stage
from cxr_curriculum.data import (
    DecodedCache,
    ImagePool,
    UnlabeledImages,
    data_root,
    read_dicom_meta,
    read_image,
)
from cxr_curriculum.methods import SimCLR


def _decoder_versions() -> dict[str, str]:
    out = {}
    for pkg in ("pydicom", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover - not on this platform
        return float("nan")


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _read_files(files: Sequence[Path]) -> None:
    for f in files:
        read_image(f)


def _png_jpeg_sample(root: Path, n: int) -> list[Path]:
    kermany = sorted((root / "kermany-pneumonia" / "train" / "NORMAL").glob("*.jpeg"))[: n // 2]
    nih = sorted((root / "nih-chestxray14-subset" / "No_findings").glob("*.png"))[: n - n // 2]
    return kermany + nih


def bench_decode(dicoms: Sequence[Path], raster: Sequence[Path], repeats: int) -> list[dict]:
    rows = []
    for path in dicoms:
        meta = read_dicom_meta(path)
        seconds = _median_seconds(partial(read_image, path), repeats)
        rows.append(
            {
                "file": f"{path.parent.name[:20]}/{path.name[:40]}",
                "encoding": meta.transfer_syntax,
                "size": f"{meta.rows}x{meta.columns}",
                "bits": meta.bits_stored,
                "s_per_image": round(seconds, 4),
            }
        )
    for kind, files in (
        ("Kermany JPEG", raster[: len(raster) // 2]),
        ("NIH PNG", raster[len(raster) // 2 :]),
    ):
        per_image = _median_seconds(partial(_read_files, files), repeats)
        shape = tuple(read_image(files[0]).shape[-2:])
        rows.append(
            {
                "file": f"{len(files)} {kind} files",
                "encoding": kind,
                "size": f"{shape[0]}x{shape[1]}",
                "bits": 8,
                "s_per_image": round(per_image / len(files), 5),
            }
        )
    return rows


def _read_all(dataset: Any, indices: Sequence[int]) -> None:
    for i in indices:
        dataset[i]


def bench_read(
    pool: ImagePool, cache_dir: Path, repeats: int, workers: int
) -> tuple[list[dict], DecodedCache]:
    t0 = time.perf_counter()
    cached = DecodedCache(pool, cache_dir, long_side=512, num_workers=workers, progress=False)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    DecodedCache(pool, cache_dir, long_side=512)  # re-open: index + every shard's sha256
    reopen = time.perf_counter() - t0
    is_dicom = [p.suffix.lower() == ".dcm" or p.suffix == "" for p in pool.files]
    rows = []
    for kind, wanted in (("DICOM films", True), ("PNG/JPEG", False)):
        idx = [i for i, d in enumerate(is_dicom) if d == wanted]
        raw = _median_seconds(partial(_read_all, pool, idx), repeats) / len(idx)
        hit = _median_seconds(partial(_read_all, cached, idx), repeats) / len(idx)
        rows.append(
            {
                "images": f"{len(idx)} {kind}",
                "uncached_s_per_image": round(raw, 5),
                "cached_s_per_image": round(hit, 6),
                "speed_up": round(raw / hit, 1),
            }
        )
    shard_bytes = sum(p.stat().st_size for p in cache_dir.glob("shard-*.bin"))
    rows.append(
        {
            "images": f"cache of all {len(pool)}",
            "build_s": round(build, 2),
            "build_workers": workers,
            "reopen_verify_s": round(reopen, 3),
            "shard_MiB": round(shard_bytes / 2**20, 2),
        }
    )
    return rows, cached


def _pretrain_seconds(data: Any, steps: int, batch_size: int, run_dir: Path) -> float:
    stage = Stage(SimCLR(), data=data, steps=steps, batch_size=batch_size, image_size=64)
    curriculum = Curriculum([stage], run_dir, seed=0, progress=False, checkpoint_every=None)
    backbone = Backbone("resnet18")
    t0 = time.perf_counter()
    curriculum.fit(backbone)
    return time.perf_counter() - t0


def bench_pretrain(
    pool: ImagePool, cached: DecodedCache, args: argparse.Namespace, tmp: Path
) -> list[dict]:
    images = args.steps * args.batch_size
    _pretrain_seconds(cached, 1, args.batch_size, tmp / "warm-up")  # first-call costs
    rows = []
    for arm, data in (("uncached", pool), ("DecodedCache", cached)):
        seconds = _pretrain_seconds(data, args.steps, args.batch_size, tmp / f"run-{arm}")
        rows.append(
            {
                "arm": arm,
                "images": images,
                "seconds": round(seconds, 2),
                "images_per_s": round(images / seconds, 2),
            }
        )
    rows.append(
        {
            "arm": "speed-up (cached / uncached images/s)",
            "images_per_s": round(rows[1]["images_per_s"] / rows[0]["images_per_s"], 2),
        }
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny settings, seconds")
    parser.add_argument("--repeats", type=int, default=3, help="reads per median")
    parser.add_argument("--raster", type=int, default=54, help="PNG/JPEG images in the pool")
    parser.add_argument("--steps", type=int, default=8, help="SimCLR steps per arm")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="cache build processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeats, args.raster, args.steps, args.batch_size = 1, 6, 1, 8
    torch.set_num_threads(args.threads)
    load_start = _load()
    root = data_root()
    folder = UnlabeledImages(root / "dicom-cxr")
    dicoms = [p for p in folder.files if p.suffix.lower() != ".png"]
    if args.smoke:
        dicoms = [p for p in dicoms if "nih" in p.parent.name or "acr" in p.parent.name]
    raster = _png_jpeg_sample(root, args.raster)
    decode_rows = bench_decode(dicoms, raster, args.repeats)
    pool = ImagePool(*dicoms, *raster)
    with tempfile.TemporaryDirectory() as tmp:
        read_rows, cached = bench_read(pool, Path(tmp) / "cache", args.repeats, args.workers)
        pretrain_rows = bench_pretrain(pool, cached, args, Path(tmp))
    load_end = _load()
    for table in (decode_rows, read_rows, pretrain_rows):
        print(markdown_table(table))
    name = "decode_smoke" if args.smoke else "decode"
    config = {
        **vars(args),
        "load_average_1m_start": load_start,
        "load_average_1m_end": load_end,
        "decoders": _decoder_versions(),
    }
    body = "\n".join(
        [
            "## Decode time per file (`read_image`, median of the repeats)\n",
            markdown_table(decode_rows),
            "## Reading a pool item: uncached vs `DecodedCache(long_side=512)`\n",
            markdown_table(read_rows),
            f"## SimCLR pretraining, {args.steps} steps x {args.batch_size} images, 64 px\n",
            markdown_table(pretrain_rows),
        ]
    )
    notes = (
        f"One process, {args.threads} torch thread(s); the cache was built with "
        f"{args.workers} worker processes. Load average (1 min) {load_start} at the start, "
        f"{load_end} at the end (a load near or above the core count means other work "
        "shared the machine and absolute times are noisy); the ratios compare arms "
        "measured back to back in this run."
    )
    write_results(
        name,
        {"decode": decode_rows, "read": read_rows, "pretrain": pretrain_rows},
        config=config,
        markdown=body,
        title="Decoding real radiographs, and DecodedCache",
        notes=notes,
    )


if __name__ == "__main__":
    main()
