"""Checkpoint files (atomic, carrying a sha256 of their contents) and RNG state capture.

Files are written with :func:`cxr_curriculum._artefacts.atomic_write`: a temporary file
in the same folder, ``fsync``, ``os.replace``; a process killed at any moment (even
``kill -9``) leaves the previous complete file or the new complete file, never half of
one, and a full disk is reported with the file, the cause and the size it needs. Every
checkpoint stores the :func:`~cxr_curriculum._artefacts.content_sha256` of its contents
and :func:`load_checkpoint` verifies it, so a flipped byte is an error, not a silently
different run. Checkpoints load with ``torch.load(weights_only=True)``: they hold only
tensors and plain Python containers.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr_curriculum._artefacts import (
    CONTENT_KEY,
    Written,
    atomic_write,
    atomic_write_bytes,
    content_sha256,
    payload_nbytes,
    remove_stale_temp_files,
    verify_content,
)

__all__ = [
    "atomic_save",
    "atomic_write_json",
    "capture_rng",
    "cpu_copy",
    "load_checkpoint",
    "read_json",
    "remove_stale_temp_files",
    "restore_rng",
]

_DEFAULT_REMEDY = "delete it (a rerun writes it again) or restore it from a backup"


def atomic_save(
    obj: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    before_replace: Callable[[Written], object] | None = None,
) -> Written:
    """``torch.save`` a checkpoint dict atomically, with the sha256 of its contents inside.

    Args:
        obj: tensors and plain containers, as a mapping with string keys.
        path: the target file; its folder is created.
        before_replace: see :func:`~cxr_curriculum._artefacts.atomic_write` (the run
            manifest records the new file's sha256 as pending there).

    Returns:
        The file written and its sha256 (what the run manifest records).

    Raises:
        ArtefactWriteError: the disk is full or the folder not writable (the previous
            file is kept; the message names the file and the size it needs).
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f"a checkpoint must be a mapping; got {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if k != CONTENT_KEY}
    state[CONTENT_KEY] = content_sha256(state)
    size = payload_nbytes(state) + 64 * 1024
    return atomic_write(
        path,
        lambda f: torch.save(state, f),
        what="checkpoint",
        size_hint=size,
        before_replace=before_replace,
    )


def atomic_write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically; return the path."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_bytes(path, text.encode(), what="JSON file").path


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_checkpoint(path: str | os.PathLike[str], *, remedy: str | None = None) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True`` and verify its contents.

    Args:
        path: the checkpoint file.
        remedy: what to tell the user if the file is corrupted (default: delete it or
            restore it from a backup).

    Returns:
        The checkpoint dict (without its stored digest).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        RuntimeError: if the file is not a readable checkpoint (the message names it).
        ArtefactIntegrityError: if its contents differ from the sha256 written with them.
    """
    p = Path(path)
    advice = remedy or _DEFAULT_REMEDY
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise RuntimeError(f"cannot read checkpoint {p}: {exc}; {advice}") from exc
    if not isinstance(state, dict):
        raise RuntimeError(f"{p} is not a cxr_curriculum checkpoint (got {type(state).__name__})")
    return verify_content(state, p, advice)


def cpu_copy(obj: Any) -> Any:
    """A copy of a nested checkpoint structure whose tensors are cloned to the CPU.

    What a checkpoint held when it was taken, however training changes the live tensors
    before it is written.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple
        return type(obj)(*(cpu_copy(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def capture_rng() -> dict[str, Any]:
    """Snapshot the global RNGs: torch CPU, every CUDA device, Python ``random``, numpy.

    Returns:
        A dict of tensors and plain values, loadable with ``weights_only=True``.
    """
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [
            str(np_state[0]),
            torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the RNGs saved by :func:`capture_rng` (CUDA only where present)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(cuda)[: torch.cuda.device_count()])
