"""Nox sessions: tests, lint, typecheck, build, and the benchmark suite.

Run ``nox -l`` to list them. Torch is installed from the pinned versions below so that
the CUDA/CPU build on this project's machines is reused; on another machine set
``CXR_TORCH_SPEC`` (e.g. ``"torch torchvision"``) to let pip choose.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
TORCH_SPEC = os.environ.get("CXR_TORCH_SPEC", "torch==2.14.1 torchvision==0.29.1").split()
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
#: The extras README's test command installs (every optional feature is tested).
TEST_EXTRAS = "dev,compare,dicom,saliency,cluster,tensorboard"


def _install(session: nox.Session, extras: str = "dev,compare") -> None:
    session.install(*TORCH_SPEC)
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The full test suite (real-data tests need CXR_DATA_ROOT or ../shared/data)."""
    _install(session, extras=TEST_EXTRAS)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy over the package."""
    _install(session, extras="dev")
    session.run("mypy")


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build sdist + wheel, install the wheel into a fresh venv and import it offline."""
    session.install("build")
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    wheel = next(dist.glob("*.whl"))
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        session.run("python", "-m", "venv", str(venv))
        pip = str(venv / "bin" / "pip")
        py = str(venv / "bin" / "python")
        session.run(pip, "install", "-q", *TORCH_SPEC, external=True)
        session.run(pip, "install", "-q", str(wheel), external=True)
        # Run from the temporary folder so that the source checkout is not importable.
        session.chdir(tmp)
        session.run(py, str(ROOT / "benchmarks" / "check_wheel.py"), external=True)


def _bench(session: nox.Session, script: str) -> None:
    _install(session)
    session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(python=PYTHON)
def bench_ssl_throughput(session: nox.Session) -> None:
    """Images/s per SSL method, this library vs lightly (pass --smoke for a short run)."""
    _bench(session, "bench_ssl_throughput.py")


@nox.session(python=PYTHON)
def bench_vit_throughput(session: nox.Session) -> None:
    """MAE and DINO on ViT-Tiny/16 vs lightly, 64/128 px, 1/2 threads (--smoke: a minute)."""
    _bench(session, "bench_vit_throughput.py")


@nox.session(python=PYTHON)
def bench_transforms(session: nox.Session) -> None:
    """Batched vs per-sample augmentation speed on real Kermany images."""
    _bench(session, "bench_transforms.py")


@nox.session(python=PYTHON)
def bench_smoke(session: nox.Session) -> None:
    """Smoke variant of every benchmark (a few minutes in all); the tests run these too."""
    _install(session, extras=TEST_EXTRAS)
    session.run("python", "benchmarks/bench_ssl_throughput.py", "--smoke")
    session.run("python", "benchmarks/bench_vit_throughput.py", "--smoke")
    session.run("python", "benchmarks/gpu/gpu_suite.py", "--smoke", "--device", "cpu",
                "--out", "runs/gpu_suite_smoke", "--budget", "1800")  # fmt: skip
    session.run("python", "benchmarks/bench_decode.py", "--smoke")
    session.run("python", "benchmarks/bench_lungseg.py", "--smoke")
    session.run("python", "benchmarks/bench_attention.py", "speed", "--smoke")
    session.run("python", "benchmarks/bench_saliency.py", "adapters", "--smoke")
    session.run("python", "benchmarks/bench_curriculum.py", "--smoke")
    session.run("python", "benchmarks/bench_multilabel_nih.py", "--smoke")
    session.run("python", "benchmarks/bench_workers.py", "--smoke")


@nox.session(python=PYTHON)
def bench_decode(session: nox.Session) -> None:
    """DICOM/PNG/JPEG decode times and DecodedCache's speed-up (about two minutes)."""
    _install(session, extras="dev,compare,dicom")
    session.run("python", "benchmarks/bench_decode.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_lungseg(session: nox.Session) -> None:
    """Dice/IoU/speed of the bundled lung model vs the baselines."""
    _bench(session, "bench_lungseg.py")


@nox.session(python=PYTHON)
def train_lungseg(session: nox.Session) -> None:
    """Retrain the bundled lung model from the recipe."""
    _bench(session, "train_lungseg.py")


@nox.session(python=PYTHON)
def bench_attention(session: nox.Session) -> None:
    """Lung-attention scoring throughput and the confounded-classifier experiment."""
    _bench(session, "bench_attention.py")


@nox.session(python=PYTHON)
def bench_saliency(session: nox.Session) -> None:
    """Adapted saliency methods' overhead and the faithfulness metrics' cost per image."""
    _install(session, extras="dev,compare,saliency")
    session.run("python", "benchmarks/bench_saliency.py", *(session.posargs or ["adapters"]))


@nox.session(python=PYTHON)
def bench_multilabel_nih(session: nox.Session) -> None:
    """Multi-label protocols and per-finding AUROC with CIs on the real NIH subset."""
    _bench(session, "bench_multilabel_nih.py")


@nox.session(python=PYTHON)
def bench_curriculum(session: nox.Session) -> None:
    """The paper's claim: scratch vs single SSL stage vs curriculum on Kermany."""
    _bench(session, "bench_curriculum.py")


@nox.session(python=PYTHON)
def bench_workers(session: nox.Session) -> None:
    """1 vs 2 study workers on one folder, claim overhead, takeover time (about 90 min)."""
    _bench(session, "bench_workers.py")


@nox.session(python=PYTHON)
def study(session: nox.Session) -> None:
    """The multi-seed Kermany study from its config (hours on a CPU; resumes where it stopped).

    ``nox -s study -- OTHER.toml`` runs another study file.
    """
    _install(session, extras="dev,compare,plot")
    config = session.posargs or ["benchmarks/configs/study_kermany_cpu.toml"]
    session.run("python", "-m", "cxr_curriculum", "study", *config, env={"OMP_NUM_THREADS": "1"})
