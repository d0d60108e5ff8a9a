"""Images for a lung-attention report, picked from a dataset and segmented natively.

:func:`pick_indices` draws a seeded, class-balanced sample of a labelled dataset;
:func:`load_sample` reads those images, predicts their lung masks at the images' own
(native) resolution, where the segmenter is most accurate, and resizes images and masks
to the classifier's input size with :class:`~cxr_curriculum.transforms.Resize`
(antialiased bilinear for the image, ``nearest-exact`` for the masks). Patient ids, file
names and labels travel with the images into the report's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.data.splits import dataset_files, dataset_labels, dataset_patient_ids
from cxr_curriculum.transforms import Resize

from .masks import predict_lung_masks

__all__ = ["DatasetSample", "load_sample", "pick_indices"]


@dataclass(frozen=True)
class DatasetSample:
    """Images picked from a dataset with their lung masks, at the classifier's size.

    Attributes:
        indices: Dataset indices, ascending.
        images: ``(n, 1, h, w)`` float in ``[0, 1]``.
        masks: ``(n, 2, h, w)`` bool (right lung, left lung), predicted at native size.
        quality_ok: The segmenter's verdict per image (``None`` if it gives none).
        quality_reasons: Failed quality checks per image (``""`` where none).
        native_sizes: ``(H, W)`` of each image as read.
        patient_ids: Per image, or ``None`` if the dataset has none.
        files: Image file per image (``str``), or ``None`` if the dataset has none.
        labels: Per image, or ``None`` if the dataset has none.
    """

    indices: list[int]
    images: Tensor
    masks: Tensor
    quality_ok: list[bool | None]
    quality_reasons: list[str]
    native_sizes: list[tuple[int, int]]
    patient_ids: list[str] | None
    files: list[str] | None
    labels: list[int] | None

    def describe(self, dataset: Any, stratify: bool, seed: int) -> dict[str, Any]:
        """Report metadata: where the images and masks came from."""
        return {
            "mask_source": "predicted",
            "lung_split": "channels",
            "dataset": type(dataset).__name__,
            "n_dataset": len(dataset),
            "selection": f"{'balanced by class' if stratify else 'uniform'}, seed {seed}",
            "image_size": list(self.images.shape[-2:]),
            "masks": "predicted at native resolution, resized nearest-exact",
        }

    def columns(self) -> dict[str, list[Any]]:
        """Per-image report columns: ``image_id`` (file name, else the index),
        ``patient_id``, ``file``, ``index``, ``label`` and ``native_size``."""
        k = len(self.indices)
        names = [Path(f).name for f in self.files] if self.files else None
        return {
            "image_id": names or [str(i) for i in self.indices],
            "patient_id": self.patient_ids or [None] * k,
            "file": self.files or [None] * k,
            "index": list(self.indices),
            "label": self.labels or [None] * k,
            "native_size": [f"{h}x{w}" for h, w in self.native_sizes],
        }


def pick_indices(dataset: Any, n: int | None, seed: int = 0, stratify: bool = True) -> list[int]:
    """A seeded sample of ``n`` dataset indices, balanced across classes.

    With labels and ``stratify``, the classes take turns (in class order, each drawing
    from its own shuffled list) until ``n`` images are picked, so every class gets
    ``n / K`` images, or all it has when it has fewer (the others fill the gap).
    Without labels, or with ``stratify=False``, a uniform sample.

    Args:
        dataset: Any sized dataset (``.labels`` is read if present; ``Subset`` works).
        n: Number of images; ``None`` takes the whole dataset.
        seed: Seed of the ``torch.Generator`` that shuffles.
        stratify: Balance the classes.

    Returns:
        Indices in ascending order.

    Raises:
        ValueError: ``n`` is not between 1 and ``len(dataset)``.
    """
    size = len(dataset)
    if n is None:
        return list(range(size))
    if not 1 <= n <= size:
        raise ValueError(f"n must be between 1 and len(dataset) = {size}, got {n}")
    gen = torch.Generator().manual_seed(seed)
    labels = dataset_labels(dataset) if stratify else None
    if labels is None:
        return sorted(torch.randperm(size, generator=gen)[:n].tolist())
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    queues = [
        [members[j] for j in torch.randperm(len(members), generator=gen).tolist()]
        for _, members in sorted(by_class.items())
    ]
    return sorted(take_in_turn(queues, n))


def take_in_turn(queues: list[list[int]], n: int) -> list[int]:
    """Up to ``n`` items, the queues (one per class) taking turns from their fronts; a
    queue that runs out leaves its turns to the others."""
    queues = [list(q) for q in queues]
    picked: list[int] = []
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def _image_of(item: Any, index: int) -> Tensor:
    """The image of a dataset item: the item itself or its first field."""
    image = item if isinstance(item, Tensor) else getattr(item, "image", None)
    if image is None and isinstance(item, tuple | list) and item:
        image = item[0]
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 1:
        raise ValueError(
            f"dataset item {index} must be (or start with) an image tensor (1, H, W); "
            f"got {type(item).__name__}"
        )
    return image


def _segment_chunk(
    chunk: list[Tensor], resize: Resize, segmenter: Any, batch_size: int
) -> list[tuple[Tensor, Tensor, bool | None, str]]:
    """Segment images of one size together; return resized (image, masks, ok, reasons)."""
    done: dict[int, tuple[Tensor, Tensor, bool | None, str]] = {}
    by_size: dict[tuple[int, int], list[int]] = {}
    for j, image in enumerate(chunk):
        by_size.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(j)
    for members in by_size.values():
        batch = torch.stack([chunk[j] for j in members])
        lungs, ok, why = predict_lung_masks(segmenter, batch, batch_size)
        for k, j in enumerate(members):
            small, small_lungs = resize(chunk[j], lungs[k].to(torch.uint8))
            done[j] = (small, small_lungs.bool(), ok[k], why[k])
    return [done[j] for j in range(len(chunk))]


def load_sample(
    dataset: Any,
    indices: list[int],
    image_size: int | tuple[int, int],
    segmenter: Any,
    batch_size: int = 16,
) -> DatasetSample:
    """Read ``dataset[indices]``, segment each image natively, resize images and masks.

    Images are read ``batch_size`` at a time and images of one size are segmented
    together, so memory holds one chunk of native images at a time.

    Args:
        dataset: Items are images ``(1, H, W)`` or tuples starting with one (any
            dataset of :mod:`cxr_curriculum.data`). Give it without a resizing
            ``transform``, so that the lungs are segmented at full resolution.
        indices: Which items.
        image_size: The classifier's input size (int or ``(h, w)``).
        segmenter: ``predict(images) -> (B, 2, H, W) bool`` (and optionally
            ``predict_with_quality``), e.g. :class:`~cxr_curriculum.segmentation.LungSegmenter`.
        batch_size: Images per read-and-segment chunk.
    """
    resize = Resize(image_size)
    results: list[tuple[Tensor, Tensor, bool | None, str]] = []
    sizes: list[tuple[int, int]] = []
    for start in range(0, len(indices), batch_size):
        chunk = [_image_of(dataset[i], i) for i in indices[start : start + batch_size]]
        sizes += [(int(im.shape[-2]), int(im.shape[-1])) for im in chunk]
        results += _segment_chunk(chunk, resize, segmenter, batch_size)
    labels = dataset_labels(dataset)
    files = dataset_files(dataset)
    try:
        patients: list[str] | None = dataset_patient_ids(dataset)
    except ValueError:  # the dataset has no patient ids
        patients = None
    return DatasetSample(
        indices=list(indices),
        images=torch.stack([r[0] for r in results]),
        masks=torch.stack([r[1] for r in results]),
        quality_ok=[r[2] for r in results],
        quality_reasons=[r[3] for r in results],
        native_sizes=sizes,
        patient_ids=None if patients is None else [patients[i] for i in indices],
        files=None if files is None else [str(Path(files[i])) for i in indices],
        labels=None if labels is None else [int(labels[i]) for i in indices],
    )
