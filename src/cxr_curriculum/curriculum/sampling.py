"""What a stage feeds its method: seeded per-sample views, a resumable sampler, a fingerprint.

Reproducibility rests on one rule: every random draw of the data pipeline is a pure
function of ``(seed, stage, epoch, sample index)``. The sampler's permutation is seeded
by ``(seed, stage) + epoch`` (as ``DistributedSampler`` does), and each sample's
augmentation runs under a torch RNG seeded from its own key. Views therefore do not
depend on the number of worker processes, on how DDP splits a batch over ranks, or on
whether a run was interrupted and resumed mid-epoch.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, DistributedSampler, Subset

__all__ = [
    "ResumableDistributedSampler",
    "StageDataset",
    "data_fingerprint",
    "item_source",
    "mix_seed",
]

_MASK64 = (1 << 64) - 1


def mix_seed(*keys: int) -> int:
    """Hash integers into one 63-bit seed (SplitMix64 finaliser, Steele et al. 2014).

    Args:
        *keys: integers (seed, stage index, epoch, sample index, ...).

    Returns:
        A seed in ``[0, 2**63)``; different key tuples give unrelated seeds.
    """
    h = 0x9E3779B97F4A7C15
    for k in keys:
        h = (h ^ (int(k) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


def first_image(item: Any, index: int) -> Tensor:
    """The image of a dataset item: the item itself or its first field.

    Raises:
        TypeError: if neither is a tensor.
    """
    image = item if isinstance(item, Tensor) else None
    if image is None and isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        image = item[0]
    if image is None:
        raise TypeError(
            f"dataset item {index} is a {type(item).__name__}; a stage needs items that are an "
            "image tensor (1, H, W) or a tuple/NamedTuple whose first field is one"
        )
    return image


def item_source(data: Any, index: int) -> str | None:
    """The file behind item ``index`` of a dataset, through ``Subset``/``ConcatDataset``.

    Returns:
        The path from the innermost dataset's ``files`` list, or ``None`` if it has none.
    """
    for _ in range(16):
        if isinstance(data, Subset):
            data, index = data.dataset, int(data.indices[index])
        elif isinstance(data, ConcatDataset):
            part = bisect.bisect_right(data.cumulative_sizes, index)
            index -= data.cumulative_sizes[part - 1] if part else 0
            data = data.datasets[part]
        else:
            break
    files = getattr(data, "files", None)
    if isinstance(files, (list, tuple)) and 0 <= index < len(files):
        return str(files[index])
    return None


def _check_pixels(data: Any, index: int, image: Tensor) -> None:
    """Refuse an image with NaN or inf pixels, naming the item and its file."""
    if not image.is_floating_point() or bool(torch.isfinite(image).all()):
        return
    bad = int((~torch.isfinite(image)).sum())
    source = item_source(data, index)
    where = f" ({source})" if source is not None else ""
    raise ValueError(
        f"item {index} of the stage's data{where} has {bad} non-finite pixel(s) (NaN or inf) "
        f"in its {tuple(image.shape)} image; fix or remove it (a NaN input makes the loss NaN)"
    )


class StageDataset(Dataset[Any]):
    """Apply a method's per-sample transform to a dataset's images, with seeded randomness.

    Item ``i`` of epoch ``e`` is ``transform(image_i)`` computed with torch's default CPU
    generator seeded to ``mix_seed(seed, e, i)``; its previous state is restored after,
    so the caller's RNG is untouched (like ``torch.random.fork_rng``, about 40x cheaper).
    Transforms must draw from torch's RNG (the project convention), not from Python's
    ``random`` or numpy. An image with a NaN or inf pixel raises ``ValueError`` naming the
    item and, where the dataset lists them (``files``), its file.

    Args:
        data: the stage's dataset (labels and other fields are dropped).
        transform: ``method.make_transform(...)``: image ``(1, H, W)`` -> method input.
        seed: the stage's seed.
    """

    def __init__(self, data: Dataset[Any], transform: Callable[[Tensor], Any], seed: int) -> None:
        self.data = data
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        image = first_image(self.data[index], index)
        _check_pixels(self.data, index, image)
        gen = torch.default_generator  # what the transforms draw from (CPU)
        saved = gen.get_state()
        try:
            gen.manual_seed(mix_seed(self.seed, self.epoch, index))
            return self.transform(image)
        finally:
            gen.set_state(saved)


class ResumableDistributedSampler(DistributedSampler[Any]):
    """``DistributedSampler`` (shuffle, ``drop_last=True``) that can start mid-epoch.

    Rank ``r`` of ``w`` gets ``perm[r::w]`` of the epoch's permutation, so one global
    batch of ``w * m`` samples is the same set as a single process's batch of ``w * m``.
    Set :attr:`skip` to the number of this rank's samples already consumed this epoch.

    Args:
        dataset: the dataset to index.
        num_replicas: world size.
        rank: this process's rank.
        seed: permutation seed (the epoch is added, as in ``DistributedSampler``).
    """

    def __init__(self, dataset: Dataset[Any], num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.skip = 0

    def __iter__(self) -> Iterator[Any]:
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


def _describe(data: Any, depth: int = 0) -> Any:
    if depth > 8:
        return type(data).__name__
    if isinstance(data, Subset):
        return {"subset": [int(i) for i in data.indices], "of": _describe(data.dataset, depth + 1)}
    if isinstance(data, ConcatDataset):
        return {"concat": [_describe(d, depth + 1) for d in data.datasets]}
    desc: dict[str, Any] = {"type": type(data).__qualname__, "len": len(data)}
    files = getattr(data, "files", None)
    if isinstance(files, (list, tuple)):
        # parent/name only, so moving the data folder keeps the fingerprint
        desc["files"] = [f"{Path(f).parent.name}/{Path(f).name}" for f in files]
    for attr in ("image_size", "split"):
        value = getattr(data, attr, None)
        if isinstance(value, (int, str, tuple)) or hasattr(value, "__fspath__"):
            desc[attr] = str(value)
    return desc


def data_fingerprint(data: Dataset[Any]) -> str:
    """A short hash that changes when a stage's data changes.

    Hashes the dataset's type, length and, where the dataset exposes them, its
    ``files`` list (folder and file names; the ``cxr_curriculum.data`` datasets have
    one), ``Subset`` indices and ``ConcatDataset`` parts. Image contents are not read.

    Returns:
        16 hex digits.
    """
    blob = json.dumps(_describe(data), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
