"""Storage of :class:`~cxr_curriculum.data.DecodedCache`: shard files, index, lock.

* A shard is a flat binary file of ``uint8``/``uint16`` arrays, each starting at a
  multiple of 8 bytes (:class:`ShardPacker`). It is written through the package's
  :func:`~cxr_curriculum._artefacts.atomic_write` (temporary file, hashed as it is
  written, ``fsync``, ``os.replace``; a full disk is an ``ArtefactWriteError`` naming
  the file), never changes afterwards, and is read through ``numpy.memmap``
  (:class:`ShardReader`: pages load on demand, so memory does not grow with the number
  of images).
* The index is one JSON file ``{"sha256": ..., "payload": {...}}``, written atomically
  the same way; the payload's sha256 is checked on every read, so a reader sees the old
  or the new index, never a mix, and a damaged one is refused.
* Builders take an exclusive ``fcntl.flock`` on ``<cache>/.lock`` (POSIX), so that
  several processes (``torchrun`` ranks) can open one cache at once: one builds, the
  others wait and then find everything built. Without ``fcntl`` (Windows) there is no
  inter-process lock; open the cache from one process first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from cxr_curriculum._artefacts import (
    ArtefactIntegrityError,
    atomic_write_bytes,
    remove_stale_temp_files,
    sha256_file,
)

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SHARD_PREFIX",
    "CacheIntegrityError",
    "ShardPacker",
    "ShardReader",
    "check_shards",
    "exclusive_lock",
    "new_shard_name",
    "read_index",
    "remove_orphans",
    "write_index",
]

#: File name prefix of shards (``shard-<16 random hex>.bin``).
SHARD_PREFIX = "shard-"

_ALIGN = 8


class CacheIntegrityError(ArtefactIntegrityError):
    """A cache file whose content differs from what was recorded when it was written."""


def new_shard_name() -> str:
    """A fresh shard file name; random, so that builders never reuse one."""
    return f"{SHARD_PREFIX}{uuid.uuid4().hex[:16]}.bin"


class ShardPacker:
    """Lays arrays out one after another in a shard's byte stream, 8-byte aligned.

    Args:
        stream: The binary stream :func:`~cxr_curriculum._artefacts.atomic_write` gives.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.nbytes = 0

    def append(self, array: np.ndarray) -> int:
        """Write ``array``'s bytes (C order) and return their byte offset in the shard."""
        pad = -self.nbytes % _ALIGN
        if pad:
            self.stream.write(b"\0" * pad)
        offset = self.nbytes + pad
        data = np.ascontiguousarray(array).tobytes()
        self.stream.write(data)
        self.nbytes = offset + len(data)
        return offset


class ShardReader:
    """Memory-maps shard files on first use (per process; the maps are not pickled)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._maps: dict[str, np.memmap] = {}

    def array(self, shard: str, offset: int, shape: tuple[int, int], dtype: str) -> np.ndarray:
        """A copy of the ``(h, w)`` array stored at byte ``offset`` of ``shard``."""
        mm = self._maps.get(shard)
        if mm is None:
            mm = np.memmap(self.folder / shard, dtype=np.uint8, mode="r")
            self._maps[shard] = mm
        nbytes = shape[0] * shape[1] * np.dtype(dtype).itemsize
        raw = np.frombuffer(mm, dtype=np.uint8, count=nbytes, offset=offset)
        return raw.view(dtype).reshape(shape).copy()

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "_maps": {}}


def remove_orphans(folder: str | os.PathLike[str], shards: Collection[str]) -> None:
    """Delete what killed builds left: temporary files and shards the index does not list.

    Call it only while holding :func:`exclusive_lock`: only a builder writes shards.
    """
    folder = Path(folder)
    remove_stale_temp_files(folder)
    for path in folder.glob(f"{SHARD_PREFIX}*"):
        if path.name not in shards:
            path.unlink(missing_ok=True)


def check_shards(
    folder: str | os.PathLike[str],
    names: Collection[str],
    recorded: Mapping[str, Any],
    verify: bool,
) -> None:
    """Check the shards ``names`` against their recorded size (and sha256 if ``verify``).

    Raises:
        CacheIntegrityError: A shard is missing, cut short or (``verify``) changed.
    """
    folder = Path(folder)
    for name in sorted(names):
        path = folder / name
        size = path.stat().st_size if path.exists() else -1
        want = recorded[name]
        if size != want["size"] or (verify and sha256_file(path) != want["sha256"]):
            raise CacheIntegrityError(
                f"cache shard {path} is missing or differs from what was written (size "
                f"{size}, recorded {want['size']}, sha256 checked: {verify}); delete the "
                f"folder {folder} and the cache is rebuilt"
            )


def _digest(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def write_index(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``payload`` with its sha256 to ``path`` atomically."""
    blob = json.dumps({"sha256": _digest(payload), "payload": payload}, sort_keys=True)
    atomic_write_bytes(Path(path), blob.encode(), what="cache index")


def read_index(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The payload of an index file (None if there is none), its sha256 verified.

    Raises:
        CacheIntegrityError: The file is not valid JSON or its sha256 does not match.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
        payload, recorded = record["payload"], record["sha256"]
    except (ValueError, KeyError, TypeError):
        recorded, payload = None, None
    if payload is None or _digest(payload) != recorded:
        raise CacheIntegrityError(
            f"cache index {path} is damaged (not the JSON and sha256 that were written); "
            f"delete the folder {path.parent} and the cache is rebuilt"
        )
    return dict(payload)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (blocking) for the ``with`` block."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
