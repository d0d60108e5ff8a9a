"""Frozen-feature extraction from a backbone over a labelled (or unlabelled) dataset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["UNLABELLED", "extract_features", "resize_collate", "split_item"]

#: Label given to items of a dataset that carries no labels (``UnlabeledImages``).
UNLABELLED = -1


def split_item(item: Any) -> tuple[Tensor, int | Tensor]:
    """Return ``(image, label)`` from one dataset item.

    Datasets of this package return ``NamedTuple``s whose first field is the image
    (``LabeledImage(image, label, patient_id)``) or the image tensor itself
    (``UnlabeledImages``). A plain ``(image, label)`` tuple works too.

    Args:
        item: One item of a dataset.

    Returns:
        The ``(1, H, W)`` float image and its label: an ``int`` class index
        (``UNLABELLED`` if none), or for a multi-label item its ``(C,)`` float32
        target vector (1 present, 0 absent, NaN unknown).

    Raises:
        ValueError: If the item holds no image tensor or a label of another shape.
    """
    if isinstance(item, Tensor):
        return item, UNLABELLED
    if isinstance(item, tuple) and item and isinstance(item[0], Tensor):
        if hasattr(item, "_fields"):  # a NamedTuple: only a field called `label` counts
            label = getattr(item, "label", UNLABELLED)
        else:
            label = item[1] if len(item) > 1 else UNLABELLED
        if isinstance(label, Tensor):
            if label.numel() == 1:
                return item[0], int(label.item())
            if label.ndim != 1:
                raise ValueError(
                    "a label must be a scalar or a (C,) multi-label target vector; "
                    f"got shape {tuple(label.shape)}"
                )
            return item[0], label.float()
        return item[0], int(label)
    raise ValueError(
        "a dataset item must be an image tensor (1, H, W) or a tuple whose first field is "
        f"the image; got {type(item).__name__}"
    )


def _stack_labels(labels: Sequence[int | Tensor]) -> Tensor:
    """``(B,)`` int64 class indices, or ``(B, C)`` float32 multi-label targets."""
    kinds = {isinstance(lab, Tensor) for lab in labels}
    if kinds == {True}:
        return torch.stack([lab for lab in labels if isinstance(lab, Tensor)])
    if kinds == {False}:
        return torch.tensor(labels, dtype=torch.long)
    raise ValueError("a batch mixes class-index labels and multi-label target vectors")


def _resize(image: Tensor, image_size: int) -> Tensor:
    if image.ndim != 3:
        raise ValueError(f"an image must have shape (C, H, W); got {tuple(image.shape)}")
    if tuple(image.shape[-2:]) == (image_size, image_size):
        return image.float()
    out = F.interpolate(
        image[None].float(),
        size=(image_size, image_size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return out[0].clamp_(0.0, 1.0)


def resize_collate(image_size: int) -> Any:
    """Build a ``collate_fn`` that resizes each image to a square and stacks a batch.

    The deterministic evaluation resize: bilinear with antialiasing, no crop (the
    Kermany files were already squashed to 224x224, so aspect is not preserved
    either way).

    Args:
        image_size: Side of the square output in pixels (> 0).

    Returns:
        A function ``items -> (images (B, 1, S, S) float32, labels)``; labels are
        ``(B,)`` int64, or ``(B, C)`` float32 targets for multi-label items.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be a positive int; got {image_size}")

    def collate(items: Sequence[Any]) -> tuple[Tensor, Tensor]:
        pairs = [split_item(it) for it in items]
        images = torch.stack([_resize(img, image_size) for img, _ in pairs])
        return images, _stack_labels([lab for _, lab in pairs])

    return collate


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset[Any],
    image_size: int = 64,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    normalize: bool = False,
) -> tuple[Tensor, Tensor]:
    """Compute pooled backbone features for every item of a dataset, in order.

    The backbone runs in eval mode (batch-norm statistics frozen) and its previous
    train/eval mode is restored afterwards. Images are resized to
    ``image_size x image_size`` with :func:`resize_collate`.

    Args:
        backbone: A module mapping ``(B, 1, S, S)`` to pooled features ``(B, D)``,
            e.g. :class:`cxr_curriculum.Backbone`.
        dataset: A map-style dataset whose items are images or tuples with the image
            first and, for labelled datasets, a ``label`` field second.
        image_size: Side of the square input in pixels.
        batch_size: Images per forward pass.
        device: Where to run the backbone; defaults to the device of its parameters.
        num_workers: ``DataLoader`` workers for reading images.
        normalize: If true, L2-normalise each feature vector.

    Returns:
        ``(features, labels)``: float32 ``(N, D)`` and int64 ``(N,)`` on the CPU, in
        dataset order; labels are ``UNLABELLED`` (-1) for unlabelled items, and
        ``(N, C)`` float32 targets (NaN unknown) for a multi-label dataset.

    Raises:
        ValueError: On an empty dataset, a non-positive size, or a backbone output
            that is not ``(B, D)``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int; got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0; got {num_workers}")
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("cannot extract features from an empty dataset")
    if device is None:
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=resize_collate(image_size),
    )
    was_training = backbone.training
    backbone.eval()
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        for images, batch_labels in loader:
            out = backbone(images.to(device))
            if out.ndim != 2:
                raise ValueError(
                    f"the backbone must return pooled features (B, D); got {tuple(out.shape)}"
                )
            feats.append(out.float().cpu())
            labels.append(batch_labels)
    finally:
        backbone.train(was_training)
    features = torch.cat(feats)
    if normalize:
        features = F.normalize(features, dim=1)
    return features, torch.cat(labels)
