"""Where and how a run happened: command, library versions, machine, timings.

Recorded in a study's ``results.json`` and, through ``benchmarks/_common.py``, in every
benchmark record, so both describe a machine the same way.

Two runs of one study give the same ``results.json`` in every statistical field however
many workers computed it (cells are deterministic for a fixed thread count); only the
provenance fields differ: ``date``, ``command``, ``machine`` (its load average) and,
per cell, ``seconds``, ``run`` (threads, device, finish time) and the pretraining
``seconds``. :func:`without_provenance` drops them, so that
``without_provenance(a) == without_provenance(b)`` compares two runs.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from cxr_curriculum._version import __version__

__all__ = [
    "PROVENANCE_FIELDS",
    "command_line",
    "cpu_name",
    "machine_info",
    "versions",
    "without_provenance",
]

#: Keys of ``results.json`` (at any depth) that record when, where and how fast a run
#: happened rather than what it measured.
PROVENANCE_FIELDS = frozenset({"date", "command", "machine", "seconds", "run"})

_PACKAGES = ("torch", "torchvision", "numpy", "timm", "segmentation-models-pytorch")


def command_line() -> str:
    """The command that started this process, shell-quoted (``-m`` runs shown as such)."""
    args = list(sys.argv)
    if args and Path(args[0]).parts[-2:] == ("cxr_curriculum", "__main__.py"):
        args[0:1] = ["-m", "cxr_curriculum"]
    return " ".join(shlex.quote(a) for a in ["python", *args])


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Python, this library and the main dependencies, plus the ``extra`` packages.

    Packages that are not installed are left out.
    """
    out = {"python": platform.python_version(), "cxr_curriculum": __version__}
    for pkg in (*_PACKAGES, *extra):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU, cores, torch threads, ``OMP_NUM_THREADS`` and the GPU if any."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    with contextlib.suppress(OSError):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def without_provenance(data: Any) -> Any:
    """``data`` (e.g. a loaded ``results.json``) without :data:`PROVENANCE_FIELDS`, at any depth."""
    if isinstance(data, dict):
        return {k: without_provenance(v) for k, v in data.items() if k not in PROVENANCE_FIELDS}
    if isinstance(data, list):
        return [without_provenance(v) for v in data]
    return data
