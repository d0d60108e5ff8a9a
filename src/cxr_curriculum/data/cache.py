"""``DecodedCache``: decode and resize every image once, then serve it from disk.

Pretraining reads every image once per epoch. A 2k x 2k JPEG 2000 film takes about
a second to decode, so a DICOM archive spends its epochs decoding; ffcv's and DALI's
answer is a pre-processing pass, and this is one: each image is decoded
(:func:`~cxr_curriculum.data.decode_image`), resized so that its long side is at most
``long_side`` (aspect kept, bilinear with antialiasing; never enlarged), stored as
``uint8`` (8-bit sources) or ``uint16`` (deeper ones) in memory-mapped shard files
(:mod:`~cxr_curriculum.data.shards`), and served from there.

Staleness: an entry is keyed by the source file (absolute path, size, mtime in ns),
its mask file if any, and the reader settings (cache format version, ``long_side``,
the dataset's ``window``, :data:`~cxr_curriculum.data.MIN_IMAGE_SIDE`). A changed file
or setting has another key: it is decoded again, and the old entry is never served.
Old entries stay on disk until the folder is deleted.

The cache carries the fields that splits, evaluation protocols and label pooling read
(``labels``, ``patient_ids``, multi-label ``targets``, ``classes``, ...; see
:mod:`~cxr_curriculum.data.cache_source`), and records each image's size as decoded,
which a dataset may check (:meth:`~cxr_curriculum.data.CXRDataset.check_source_size`:
SIIM-ACR's run-length masks need the film at the size they were drawn on).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from cxr_curriculum._artefacts import Written, atomic_write
from cxr_curriculum.data.cache_source import check_cacheable, dataset_field, item_field
from cxr_curriculum.data.errors import ImageReadError
from cxr_curriculum.data.findings import FindingMap, root_and_indices
from cxr_curriculum.data.io import MIN_IMAGE_SIDE
from cxr_curriculum.data.preprocess import Decoded, DecodeTask, decode_all
from cxr_curriculum.data.shards import (
    CacheIntegrityError,
    ShardPacker,
    ShardReader,
    check_shards,
    exclusive_lock,
    new_shard_name,
    read_index,
    remove_orphans,
    write_index,
)
from cxr_curriculum.data.windowing import Window

__all__ = ["CACHE_VERSION", "CacheIntegrityError", "DecodedCache"]

#: Bumped whenever decoding, resizing or the index entries change what a cache holds.
CACHE_VERSION = 2

_INDEX = "index.json"
# shard, offset, h, w, bits, mask offset, source h, source w
_ENTRY = tuple[str, int, int, int, int, int, int, int]


def _stat_key(path: Path | None) -> list[Any] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


class DecodedCache(Dataset[Any]):
    """A dataset served from decoded, resized images stored once on disk.

    Items are the wrapped dataset's items (same type, labels, patient ids, masks), built
    by its ``item_from`` from the cached image, so its ``transform`` and
    ``joint_transform`` still run on every access. Use it wherever the dataset would go,
    e.g. ``Stage(SimCLR(), data=DecodedCache(pool, "cache/pool-512"))``.

    Construction opens the cache and builds what is missing: in ``num_workers``
    processes, with a progress bar, into shards of about ``shard_mb`` MiB, each
    published (with the index) as soon as it is full, so a killed build resumes where
    it stopped. A bad file stops the build with its ``ImageReadError`` (what was built
    is kept). Several processes may open one cache at once (``torchrun``): one builds
    under a file lock, the others wait for it and then read.

    Args:
        dataset: A dataset of :mod:`cxr_curriculum.data` (or nested ``Subset`` of one).
        cache_dir: Folder of the cache (created). One folder can hold several datasets
            and settings.
        long_side: Images larger than this (longer side, pixels) are shrunk to it.
        num_workers: Decoding processes (0: decode in this process).
        progress: Show a tqdm bar while building; None: only on a terminal.
        verify: Check every shard's sha256 when opening (reads the shards once; the
            index's sha256 and the shard sizes are always checked).
        shard_mb: Target shard size in MiB (the unit of resumption).
        multiprocessing_context: Start method of the workers (None: the platform's).

    Attributes:
        built: Images decoded by this construction (0 when all were cached).
        files: The image file of each item.
        labels, patient_ids, mask_files, lung_mask_files: The wrapped dataset's, per
            item (through Subsets), or None where it has none (e.g. ``UnlabeledImages``).
        targets: The wrapped dataset's multi-label targets ``(N, C)`` (``float32``, NaN
            unknown), rows in item order, or None; what makes ``fine_tune``,
            ``linear_probe`` and ``knn_evaluate`` treat the cache as multi-label.
        classes, finding_map, window: The wrapped dataset's (None where it has none).

    Raises:
        TypeError: A dataset that is not one of this package's (or hides ``item_from``).
        ValueError: Bad ``long_side``, ``num_workers`` or ``shard_mb``.
        ImageReadError: A file is missing or unreadable, or its decoded size is one the
            dataset refuses (its ``check_source_size``).
        CacheIntegrityError: The index or a shard differs from what was written.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        cache_dir: str | os.PathLike[str],
        long_side: int = 512,
        *,
        num_workers: int = 0,
        progress: bool | None = None,
        verify: bool = True,
        shard_mb: float = 64.0,
        multiprocessing_context: str | None = None,
    ) -> None:
        if not (isinstance(long_side, int) and long_side >= MIN_IMAGE_SIDE):
            raise ValueError(f"long_side must be an int >= {MIN_IMAGE_SIDE}, got {long_side!r}")
        if not (isinstance(num_workers, int) and num_workers >= 0):
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        if not shard_mb > 0:
            raise ValueError(f"shard_mb must be positive, got {shard_mb!r}")
        base, self._base_index = root_and_indices(dataset)
        check_cacheable(base)
        self.dataset = dataset
        self.base = base
        self.cache_dir = Path(cache_dir)
        self.long_side = long_side
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._reader = ShardReader(self.cache_dir)
        at = self._base_index
        self.files: list[Path] = [Path(f) for f in item_field(base, at, "files") or []]
        self.labels: list[Any] | None = item_field(base, at, "labels")
        self.patient_ids: list[str] | None = item_field(base, at, "patient_ids")
        self.targets: Tensor | None = item_field(base, at, "targets")
        self.mask_files: list[Path] | None = item_field(base, at, "mask_files")
        self.lung_mask_files: list[Path | None] | None = item_field(base, at, "lung_mask_files")
        self.classes: list[str] | None = dataset_field(base, "classes")
        self.finding_map: FindingMap | None = dataset_field(base, "finding_map")
        self.window: Window = dataset_field(base, "window") or "auto"
        keys = self._keys()
        self.built = 0
        index = read_index(self.cache_dir / _INDEX)
        if index is None or any(k not in index["entries"] for k in keys):
            with exclusive_lock(self.cache_dir / ".lock"):
                index = self._build(keys, num_workers, progress, shard_mb, multiprocessing_context)
        self._entries: list[_ENTRY] = [tuple(index["entries"][k]) for k in keys]
        check_shards(self.cache_dir, {e[0] for e in self._entries}, index["shards"], verify)
        check = getattr(base, "check_source_size", None)
        if check is not None:
            for i, b in enumerate(self._base_index):
                check(b, self.source_size(i))

    # --- keys and building -------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "long_side": self.long_side,
            "window": self.window,
            "min_side": MIN_IMAGE_SIDE,
            "mask_ignore_value": getattr(self.base, "mask_ignore_value", None),
        }

    def _sources(self, i: int) -> tuple[Path, Path | None]:
        masks = getattr(self.base, "mask_files", None)
        b = self._base_index[i]
        return Path(self.base.files[b]), (Path(masks[b]) if masks is not None else None)

    def _keys(self) -> list[str]:
        settings = self._settings()
        keys = []
        for i in range(len(self._base_index)):
            image, mask = self._sources(i)
            blob = json.dumps([_stat_key(image), _stat_key(mask), settings], sort_keys=True)
            keys.append(hashlib.sha256(blob.encode()).hexdigest()[:32])
        return keys

    def _build(
        self,
        keys: Sequence[str],
        num_workers: int,
        progress: bool | None,
        shard_mb: float,
        context: str | None,
    ) -> dict[str, Any]:
        """Decode the missing entries (the caller holds the lock); return the index."""
        index = read_index(self.cache_dir / _INDEX) or {
            "format": "cxr_curriculum.DecodedCache",
            "version": CACHE_VERSION,
            "shards": {},
            "entries": {},
        }
        remove_orphans(self.cache_dir, index["shards"])
        todo: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in index["entries"] and key not in todo:
                todo[key] = i
        if not todo:
            return index
        window = self.window
        ignore: int | None = getattr(self.base, "mask_ignore_value", None)
        tasks: list[DecodeTask] = []
        for i in todo.values():
            source, source_mask = self._sources(i)
            mask_path = None if source_mask is None else str(source_mask)
            tasks.append((i, str(source), mask_path, window, self.long_side, ignore))
        slot_key = {i: key for key, i in todo.items()}
        show = sys.stderr.isatty() if progress is None else progress
        bar = tqdm(total=len(tasks), desc=f"DecodedCache {self.cache_dir.name}", disable=not show)
        limit = int(shard_mb * 2**20)
        results = decode_all(tasks, num_workers, context)
        try:
            while (first := next(results, None)) is not None:
                name = new_shard_name()
                written, entries = self._write_shard(
                    name, itertools.chain([first], results), limit, bar
                )
                self.built += len(entries)
                slots = {slot_key[slot]: entry for slot, entry in entries.items()}
                index["shards"][name] = {"size": written.nbytes, "sha256": written.sha256}
                index["entries"].update(slots)
                write_index(index, self.cache_dir / _INDEX)
        finally:
            bar.close()
            results.close()
        return index

    def _write_shard(
        self, name: str, results: Iterator[Decoded], limit: int, bar: Any
    ) -> tuple[Written, dict[int, list[Any]]]:
        """Pack decoded images into one new shard until it holds ``limit`` bytes.

        Returns the shard's record (size, sha256) and the entry of each slot written. A
        failure (a bad file, a full disk) removes the unfinished shard and propagates.
        """
        entries: dict[int, list[Any]] = {}

        def fill(stream: IO[bytes]) -> None:
            packer = ShardPacker(stream)
            for slot, stored, mask, bits, (source_h, source_w) in results:
                offset = packer.append(stored)
                mask_offset = -1 if mask is None else packer.append(mask)
                h, w = stored.shape
                entries[slot] = [name, offset, h, w, bits, mask_offset, source_h, source_w]
                bar.update(1)
                if packer.nbytes >= limit:
                    return

        written = atomic_write(self.cache_dir / name, fill, what="cache shard")
        return written, entries

    # --- serving ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def source_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of item ``index``'s image as decoded from its file, before resizing."""
        entry = self._entries[index]
        return entry[6], entry[7]

    def image(self, index: int) -> Tensor:
        """The cached image ``index`` as ``float32`` ``(1, h, w)`` in ``[0, 1]``."""
        shard, offset, h, w, bits, *_ = self._entries[index]
        dtype, top = ("uint8", 255.0) if bits <= 8 else ("uint16", 65535.0)
        arr = self._reader.array(shard, offset, (h, w), dtype)
        return torch.from_numpy(arr.astype(np.float32) / np.float32(top))[None]

    def __getitem__(self, index: int) -> Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        shard, _, h, w, _, mask_offset, *_ = self._entries[index]
        mask = None
        if mask_offset >= 0:
            mask = torch.from_numpy(self._reader.array(shard, mask_offset, (h, w), "uint8"))[None]
        return self.base.item_from(self._base_index[index], self.image(index), mask)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} images of {type(self.base).__name__}, "
            f"long_side={self.long_side}, cache_dir={str(self.cache_dir)!r})"
        )
