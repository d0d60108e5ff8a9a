"""Where an arm's backbone starts: random weights, ImageNet, or a weights file.

A ``file:`` start (``Arm(..., start="file:PATH")``) lets a downloaded CXR foundation
model or a previous curriculum's ``backbone.safetensors`` stand beside a curriculum. The
file goes through :class:`~cxr_curriculum.Backbone` (``weights=PATH``): a
``.safetensors`` file is checked against its sidecar's sha256, a torch file is read with
``weights_only=True``, and tensors that do not fit the architecture are refused with the
file and the keys named. A sidecar written by :meth:`~cxr_curriculum.Backbone.save` that
names another architecture is refused too, and the standardisation (``input_norm``) its
sidecar records is kept.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from cxr_curriculum._artefacts import sha256_file
from cxr_curriculum.backbones import Backbone
from cxr_curriculum.study.arms import Arm

__all__ = ["check_start", "start_backbone", "start_sha256"]


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def start_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a start file (read once per file version)."""
    st = os.stat(path)
    return _sha256(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def start_backbone(arm: Arm, arch: str) -> Backbone:
    """The arm's starting backbone for ``arch`` (random, ImageNet or its file).

    Random weights are drawn from torch's global generator (the study seeds it).

    Raises:
        ValueError: The file's tensors do not fit ``arch``, or its sidecar names another
            architecture (the message names the file).
        WeightsNotAvailableError: ImageNet start without the weights (offline).
    """
    file = arm.start_file
    if file is None:
        return Backbone(arch, weights="imagenet" if arm.start == "imagenet" else None)
    info = _check_sidecar(file, arch)
    if info is not None and "input_norm" in info:  # the standardisation it was trained with
        norm = info["input_norm"]
        return Backbone(arch, weights=file, input_norm=None if norm is None else (norm[0], norm[1]))
    return Backbone(arch, weights=file)


def check_start(arm: Arm, arch: str) -> str:
    """Load a ``file:`` start into ``arch`` once (nothing trains); return its sha256.

    Raises:
        ValueError: As :func:`start_backbone`, naming the file.
    """
    file = arm.start_file
    if file is None:
        raise ValueError(f"arm {arm.name!r} does not start from a file")
    with torch.random.fork_rng(devices=[]):
        start_backbone(arm, arch)
    return start_sha256(file)


def _check_sidecar(file: Path, arch: str) -> dict[str, Any] | None:
    """The sidecar of a :meth:`~cxr_curriculum.Backbone.save` file (None if it has none)."""
    from cxr_curriculum.backbones import read_sidecar

    if file.suffix != ".safetensors":
        return None
    try:
        info = read_sidecar(file)
    except FileNotFoundError:
        return None  # a plain safetensors state dict: the tensors are checked on loading
    name = info.get("name")
    if name is not None and name != arch:
        raise ValueError(
            f"{file}: its sidecar says it is a {name!r} backbone, but the study's arch is "
            f"{arch!r}; set arch = {name!r} or start from another file"
        )
    return info
