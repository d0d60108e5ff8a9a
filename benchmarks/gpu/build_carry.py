"""Build the data carry of the GPU study: the shared data folder with every image shrunk.

A device machine does not see ``../shared/data``, and what travels to it is limited to
64 MiB, so this writes a copy of the four datasets the study reads
(``kermany-pneumonia``, ``covid-chestxray``, ``nih-chestxray14-subset``,
``shenzhen-montgomery-tb``) with the same folder layout, file names and tables, and
every image shrunk so that its longer side is at most ``--long-side`` pixels
(antialiased; masks with nearest neighbour; JPEG stays JPEG at ``--quality``, PNG stays
PNG). The library's loaders then read it unchanged through ``CXR_DATA_ROOT``. The
script stops with an error if the result is larger than ``--max-mib``.

With ``--wheels`` it also puts in ``runs/gpu_carry/whl`` the pure-Python wheels that the
device image lacks, at the versions installed here (:data:`WHEELS`: smp for the lung
segmenter; lightly, grad-cam and its ttach for the comparisons of the GPU suite; timm, so
that the ViTs run on the version tested here). grad-cam publishes no wheel: its sdist is
built into one here. About 3.3 MiB.

Usage::

    python benchmarks/gpu/build_carry.py                      # -> runs/gpu_carry/data
    python benchmarks/gpu/build_carry.py --wheels             # data and wheels
    python benchmarks/gpu/build_carry.py --long-side 144 --out /tmp/carry
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from PIL import Image

DATASETS = (
    "kermany-pneumonia",
    "covid-chestxray",
    "nih-chestxray14-subset",
    "shenzhen-montgomery-tb",
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
#: Distributions carried as wheels (name, whether PyPI has a wheel or only an sdist).
WHEELS = (
    ("segmentation-models-pytorch", True),
    ("lightly", True),
    ("timm", True),
    ("ttach", True),
    ("grad-cam", False),
)


def fetch_wheels(dest: Path) -> int:
    """Download (or, for an sdist, build) the :data:`WHEELS` at the versions installed here."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    for name, has_wheel in WHEELS:
        spec = f"{name}=={metadata.version(name)}"
        if has_wheel:
            cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), spec]
        else:
            cmd = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), spec]
        subprocess.run(cmd, check=True)
    for leftover in dest.glob("*.tar.gz"):
        leftover.unlink()
    return sum(f.stat().st_size for f in dest.glob("*.whl"))


def shrink(src: Path, dst: Path, long_side: int, quality: int) -> None:
    """Write ``src`` to ``dst`` with its longer side at most ``long_side`` pixels."""
    mask = any("mask" in part.lower() for part in src.parts)
    with Image.open(src) as img:
        img.load()
        scale = long_side / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            resample = Image.Resampling.NEAREST if mask else Image.Resampling.LANCZOS
            img = img.resize(size, resample)
        if not mask and img.mode not in ("L", "I;16"):
            img = img.convert("L")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix.lower() in (".jpg", ".jpeg"):
            img.save(dst, quality=quality)
        else:
            img.save(dst, optimize=True)


def build(src_root: Path, out: Path, long_side: int, quality: int) -> int:
    """Copy the datasets with shrunk images; return the bytes written."""
    total = 0
    for name in DATASETS:
        folder = src_root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} not found (set --src to the shared data folder)")
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            target = out / path.relative_to(src_root)
            if path.suffix.lower() in IMAGE_SUFFIXES:
                shrink(path, target, long_side, quality)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            total += target.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    from cxr_curriculum.data import data_root

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--src", type=Path, default=None, help="shared data folder")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_carry/data"))
    parser.add_argument("--long-side", type=int, default=144)
    parser.add_argument("--quality", type=int, default=80)
    parser.add_argument("--max-mib", type=float, default=60.0)
    parser.add_argument("--wheels", action="store_true", help="also fetch WHEELS into ../whl")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    total = build(args.src or data_root(), args.out, args.long_side, args.quality)
    print(f"{args.out}: {total / 2**20:.1f} MiB at long side {args.long_side} px")
    if args.wheels:
        wheels = args.out.parent / "whl"
        size = fetch_wheels(wheels)
        print(f"{wheels}: {size / 2**20:.1f} MiB of wheels")
        total += size
    mib = total / 2**20
    if mib > args.max_mib:
        print(f"error: the carry is larger than {args.max_mib} MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
