"""Atomic checkpoint files, RNG state capture and the run manifest.

Every file is written to a temporary name in the same folder, flushed and
``fsync``-ed, then moved over the target with ``os.replace`` (atomic on POSIX), and the
folder is ``fsync``-ed. A process killed at any moment (even ``kill -9``) therefore
leaves either the previous complete file or the new complete file, never half of one.
Checkpoints load with ``torch.load(weights_only=True)``: they hold only tensors and
plain Python containers.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_save",
    "atomic_write_json",
    "capture_rng",
    "load_checkpoint",
    "read_json",
    "remove_stale_temp_files",
    "restore_rng",
]

_TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    Args:
        obj: tensors and plain containers.
        path: the target file; its folder is created.

    Returns:
        The target path.
    """
    target = Path(path)
    with _atomic_target(target) as f:
        torch.save(obj, f)
    return target


def atomic_write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    target = Path(path)
    with _atomic_target(target) as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())
        f.write(b"\n")
    return target


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`atomic_write_json`."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        RuntimeError: if the file is not a readable checkpoint (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise RuntimeError(f"cannot read checkpoint {p}: {exc}") from exc
    if not isinstance(state, dict):
        raise RuntimeError(f"{p} is not a cxr_curriculum checkpoint (got {type(state).__name__})")
    return state


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left by a process killed while writing; return how many."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    count = 0
    for tmp in root.rglob(f"{_TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            count += 1
    return count


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
