"""One short GPU run that measures what the CPU suite measures, and prints one JSON record.

Phases, each a subprocess with its own time cap (time a phase leaves unused passes on to
the next; a phase that fails or runs out of time is recorded as such, the others still run):

1. ``cuda_tests``: ``pytest -k cuda`` over the test files that hold CUDA tests
   (``tests/test_cuda.py``: ViTs under bf16, a ViT curriculum with AMP and on-device
   augmentation, attention and the lung segmenter agreeing with the CPU; the batched
   augmentation's CUDA test).
2. ``ssl_resnet50`` and ``ssl_vit_s16``: ``bench_ssl_throughput.py`` at 224 px, batch 128,
   bf16 autocast (channels_last for the ResNet-50): SimCLR, BYOL and DINO steps vs
   lightly, and end to end on the carried Kermany images, per-sample vs batched
   augmentation.
3. ``vit_mae_dino``: ``bench_vit_throughput.py`` on ViT-S/16 at 224 px (MAE and DINO
   multi-crop vs lightly).
4. ``lungseg_attention``: ``gpu_measure.py`` (segmenter and lung-attention throughput).
5. ``study_cell``: one cell of a small ViT-S/16 study (MAE pretraining, then k-NN, linear
   probe and fine-tuning with lung attention on Kermany), written next to the results.

The record (``gpu_suite.json`` in ``--out``, and the last line printed) names the card
(``torch.cuda.get_device_name``), torch and library versions, and holds every phase's
status, seconds and results; the phases' logs go to ``gpu_suite.log`` and their raw files
to ``raw.tar.gz``. ``--smoke --device cpu`` runs every phase at toy sizes on the CPU (the
CUDA tests then run on the CPU through ``CXR_CUDA_TESTS_ON_CPU=1``), to check the script.

    python benchmarks/gpu/gpu_suite.py --out $OUT              # on the device, < 10 min
    python benchmarks/gpu/gpu_suite.py --smoke --device cpu --out /tmp/suite
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
PHASES = ("cuda_tests", "ssl_resnet50", "ssl_vit_s16", "vit_mae_dino", "lungseg_attention",
          "study_cell")  # fmt: skip
#: Seconds each phase may take on the device (unused time passes on to the next phase).
CAPS = {"cuda_tests": 90, "ssl_resnet50": 100, "ssl_vit_s16": 100, "vit_mae_dino": 70,
        "lungseg_attention": 50, "study_cell": 120}  # fmt: skip


@dataclass
class Phase:
    """One subprocess of the suite and the result files it writes (stems in the raw dir)."""

    name: str
    command: list[str]
    results: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _ssl(device: str, arch: str, name: str, smoke: bool, extra: list[str]) -> list[str]:
    """``bench_ssl_throughput.py``: SimCLR, BYOL and DINO steps, one method end to end."""
    cmd = [sys.executable, str(BENCH / "bench_ssl_throughput.py"), "--device", device,
           "--arch", arch, "--amp", "bf16", "--name", name, *extra]  # fmt: skip
    e2e = "dino" if "vit" in arch else "simclr"
    if smoke:
        return [*cmd, "--smoke", "--methods", "simclr", "dino", "--e2e-methods", e2e]
    return [*cmd, "--image-size", "224", "--batch-size", "128", "--workers", "8",
            "--methods", "simclr", "byol", "dino", "--e2e-methods", e2e,
            "--steps", "3", "--repeats", "3", "--warmup", "2", "--e2e-batches", "4"]  # fmt: skip


def study_toml(folder: Path, device: str, smoke: bool) -> str:
    """A one-arm ViT study (MAE) whose first cell the suite runs."""
    big = not smoke
    return f"""# written by benchmarks/gpu/gpu_suite.py
output = "{folder / "study"}"
pretrain_dir = "{folder / "study" / "pretrain"}"
seeds = [0]
arch = "{"timm:vit_small_patch16_224" if big else "timm:vit_tiny_patch16_224"}"
batch_size = {128 if big else 8}
image_size = {128 if big else 32}
workers = {8 if big else 0}
device = "{device}"

[data]
source = "pool"
stride = {10 if big else 400}
cache = "{folder / "cache"}"
cache_long_side = 144
cache_workers = {16 if big else 1}

[[arms]]
name = "mae"
[[arms.stages]]
steps = {300 if big else 1}
batched_augmentation = true
[arms.stages.method]
name = "mae"
decoder_depth = 1

[[tasks]]
kind = "kermany"
stride = {2 if big else 60}
cache = "{folder / "cache"}"
cache_long_side = 144

[evaluation]
fractions = [0.1]
protocols = ["knn", "linear_probe", "fine_tune"]
finetune_steps = {200 if big else 2}
finetune_batch_size = {64 if big else 8}
attention_images = {32 if big else 4}
"""


def plan(args: argparse.Namespace, raw: Path) -> list[Phase]:
    """The phases' commands for ``args.device`` (toy sizes with ``--smoke``)."""
    py, dev, smoke = sys.executable, args.device, args.smoke
    tests = [str(p) for p in sorted((REPO / "tests").glob("test_*.py"))]
    tests = [t for t in tests if "def test_cuda" in Path(t).read_text()]
    on_cpu = {"CXR_CUDA_TESTS_ON_CPU": "1"} if dev == "cpu" else {}
    pytest = [py, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider", *tests]
    resnet = _ssl(dev, "resnet50", "gpu_ssl_resnet50", smoke, ["--channels-last"])
    vit_s = _ssl(dev, "timm:vit_small_patch16_224", "gpu_ssl_vit_s16", smoke, [])
    vit = [py, str(BENCH / "bench_vit_throughput.py"), "--device", dev, "--amp", "bf16"]
    vit += ["--threads", "0", "--name", "gpu_vit_mae_dino"]
    if smoke:
        vit.append("--smoke")
    else:
        vit += ["--arch", "timm:vit_small_patch16_224", "--sizes", "224", "--batch-size", "128"]
        vit += ["--head-scale", "1", "--steps", "3", "--repeats", "3"]
    measure = [py, str(BENCH / "gpu" / "gpu_measure.py"), "--device", dev]
    measure += ["--smoke"] if smoke else []
    config = raw / "study_cell.toml"
    config.write_text(study_toml(raw / "study_cell", dev, smoke))
    # one arm and seed of the study: its pretraining, then k-NN, linear probe, fine-tuning
    study = [py, "-m", "cxr_curriculum", "study", str(config), "--max-cells", "3"]
    phases = [
        Phase("cuda_tests", pytest, env=on_cpu),
        Phase("ssl_resnet50", resnet, ["gpu_ssl_resnet50"]),
        Phase("ssl_vit_s16", vit_s, ["gpu_ssl_vit_s16"]),
        Phase("vit_mae_dino", vit, ["gpu_vit_mae_dino"]),
        Phase("lungseg_attention", measure, ["gpu_lungseg_attention"]),
        Phase("study_cell", study, ["study_cell/study/results"]),
    ]
    return [p for p in phases if p.name in args.phases]


def _summary(phase: Phase, output: str, raw: Path) -> dict[str, Any]:
    """What a phase's files (or, for the tests, its output) say."""
    if phase.name == "cuda_tests":
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", output)}
        return {
            "counts": counts,
            "files": [Path(t).name for t in phase.command if t.endswith(".py")],
        }
    found: dict[str, Any] = {}
    for stem in phase.results:
        path = raw / f"{stem}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            found[Path(stem).name] = data.get("results", data) if stem.startswith("gpu_") else {
                k: data.get(k) for k in ("design", "comparisons", "arms", "cells") if k in data
            }  # fmt: skip
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw = Path(tempfile.mkdtemp(prefix="gpu_suite_"))
    cuda = torch.cuda.is_available()
    record: dict[str, Any] = {
        "card": torch.cuda.get_device_name(0) if cuda else "no GPU (cpu)",
        "device": args.device,
        "smoke": args.smoke,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "versions": _versions(),
        "phases": {},
    }
    env = {**os.environ, "CXR_BENCH_OUT": str(raw), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    start, spare = time.monotonic(), 0.0
    with open(out / "gpu_suite.log", "w") as log:
        for phase in plan(args, raw):
            left = args.budget - (time.monotonic() - start)
            cap = min(CAPS[phase.name] * args.budget / 530 + spare, left)
            t0 = time.monotonic()
            status, output = "ok", ""
            if cap < 5:
                status = "skipped: no time left"
            else:
                try:
                    proc = subprocess.run(phase.command, env={**env, **phase.env}, cwd=REPO,
                                          capture_output=True, text=True, timeout=cap)  # fmt: skip
                    output = proc.stdout + proc.stderr
                    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
                except subprocess.TimeoutExpired as err:
                    output = _text(err.stdout) + _text(err.stderr)
                    status = f"timeout after {cap:.0f} s"
            seconds = time.monotonic() - t0
            spare = max(0.0, cap - seconds) if status != "skipped: no time left" else spare
            log.write(
                f"===== {phase.name}: {status} in {seconds:.0f} s\n$ {' '.join(phase.command)}\n"
            )
            log.write(output[-20000:] + "\n")
            log.flush()
            results = _summary(phase, output, raw)
            record["phases"][phase.name] = {
                "status": status, "seconds": round(seconds, 1), "results": results,
            }  # fmt: skip
            print(f"{phase.name}: {status} ({seconds:.0f} s)", flush=True)
    record["total_s"] = round(time.monotonic() - start, 1)
    with tarfile.open(out / "raw.tar.gz", "w:gz") as tar:
        for path in sorted(raw.rglob("*")):
            if path.is_file() and "cache" not in path.parts and "pretrain" not in path.parts:
                tar.add(path, arcname=str(path.relative_to(raw)))
    (out / "gpu_suite.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("timm", "lightly", "segmentation-models-pytorch", "grad-cam", "torchvision"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="toy sizes (check the script)")
    parser.add_argument("--budget", type=float, default=530.0, help="seconds for all phases")
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu_suite"))
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    args = parser.parse_args(argv)
    record = run(args)
    print(json.dumps(record, default=str))
    return 0 if all(p["status"] == "ok" for p in record["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
