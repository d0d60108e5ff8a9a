"""Rotation prediction (Gidaris, Singh & Komodakis 2018, "Unsupervised Representation
Learning by Predicting Image Rotations", arXiv 1803.07728)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxr_curriculum.methods._tokens import check_token_size, token_patch_size
from cxr_curriculum.methods._views import Chain, inputs_and_targets
from cxr_curriculum.methods.base import OptimizerHint, SSLMethod
from cxr_curriculum.methods.heads import ClassificationHead
from cxr_curriculum.transforms import BatchedXRayAugment, Resize, RotationPretext, XRayAugment

__all__ = ["BatchedRandomRotation", "Rotation", "rotate_all"]

N_ROTATIONS = 4


def rotate_all(x: Tensor) -> tuple[Tensor, Tensor]:
    """All four 90-degree rotations of a square batch.

    Args:
        x: ``(B, C, S, S)`` images.

    Returns:
        ``(4B, C, S, S)`` images (block ``k`` rotated by ``k * 90`` degrees
        counter-clockwise) and their labels ``(4B,)``.
    """
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"expected square images (B, C, S, S), got {tuple(x.shape)}")
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(N_ROTATIONS)])
    labels = torch.arange(N_ROTATIONS, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


class BatchedRandomRotation(nn.Module):
    """Rotate each image of a square batch by a random multiple of 90 degrees, on its device."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(B, C, S, S) -> (rotated (B, C, S, S), k (B,))``."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        k = torch.randint(N_ROTATIONS, (x.shape[0],), generator=generator, device=gen_device)
        k = k.to(x.device)
        rotated, labels = rotate_all(x)
        index = k * x.shape[0] + torch.arange(x.shape[0], device=x.device)
        return rotated[index], labels[index]


class _BatchedAugmentThenRotate(nn.Module):
    def __init__(self, augment: nn.Module) -> None:
        super().__init__()
        self.augment = augment
        self.rotate = BatchedRandomRotation()

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        out: tuple[Tensor, Tensor] = self.rotate(self.augment(x, generator=generator), generator)
        return out


class Rotation(SSLMethod):
    """Predict which of 0, 90, 180, 270 degrees an image was rotated by (4-way softmax).

    Batch: with ``all_rotations`` (the paper found feeding all four rotated copies of an
    image together better than sampling one rotation), a tensor ``(B, 1, S, S)`` of
    upright views that :meth:`training_step` rotates four ways; otherwise
    ``[rotated (B, 1, S, S), k (B,)]``.

    Args:
        all_rotations: Train on all four rotations of every image (4x the batch).
        hidden_dim: Hidden width of the classifier; ``None`` is a linear classifier on
            the pooled features.
    """

    name: ClassVar[str] = "rotation"
    #: SGD, lr 0.1 for batch 128, momentum 0.9, weight decay 5e-4 (the paper's CIFAR setting).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint(
        "sgd", lr=0.1, weight_decay=5e-4, momentum=0.9, reference_batch=128
    )

    def __init__(self, all_rotations: bool = True, hidden_dim: int | None = None) -> None:
        super().__init__(all_rotations=all_rotations, hidden_dim=hidden_dim)
        if hidden_dim is not None and hidden_dim < 1:
            raise ValueError(f"hidden_dim must be None or >= 1, got {hidden_dim}")

    def build_heads(self, num_features: int) -> None:
        self.classifier = ClassificationHead(num_features, N_ROTATIONS, self.hparams["hidden_dim"])

    def make_transform(
        self, image_size: int, strength: float = 1.0, batched: bool = False
    ) -> Callable[[Tensor], Any]:
        self._check_transform_args(image_size, strength)
        check_token_size("Rotation", "image_size", image_size, token_patch_size(self.backbone))
        all_rot = self.hparams["all_rotations"]
        if batched:
            augment = BatchedXRayAugment(image_size=image_size, strength=strength)
            self._set_batch_transform(augment if all_rot else _BatchedAugmentThenRotate(augment))
            return Resize(image_size)
        self._set_batch_transform(None)
        aug = XRayAugment(image_size=image_size, strength=strength)
        return aug if all_rot else Chain(aug, RotationPretext())

    def _inputs_and_labels(self, batch: Any) -> tuple[Tensor, Tensor]:
        if isinstance(batch, Tensor):
            if not self.hparams["all_rotations"]:
                raise ValueError("all_rotations=False expects a batch [rotated, k]")
            return rotate_all(batch)
        images, k = inputs_and_targets(batch)
        return images, k.long()

    def chance_loss(self, batch_size: int) -> float:
        """``log 4``: cross-entropy of a uniform guess over the four rotations."""
        return math.log(N_ROTATIONS)

    def training_step(self, batch: Any) -> Tensor:
        backbone = self._require_setup()
        images, labels = self._inputs_and_labels(batch)
        logits = self.classifier(backbone(images).flatten(1))
        return F.cross_entropy(logits, labels.to(logits.device))
