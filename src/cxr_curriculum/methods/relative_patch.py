"""Relative patch location (Doersch, Gupta & Efros 2015, "Unsupervised Visual
Representation Learning by Context Prediction", arXiv 1505.05192)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cxr_curriculum.methods._tokens import check_token_size, token_patch_size
from cxr_curriculum.methods._views import Chain, PassThrough, inputs_and_targets
from cxr_curriculum.methods.base import OptimizerHint, SSLMethod, preserved_buffers
from cxr_curriculum.methods.heads import ClassificationHead
from cxr_curriculum.methods.jigsaw import standardize_patches
from cxr_curriculum.transforms import RelativePatchPretext, XRayAugment

__all__ = ["RelativePatchLocation"]

N_POSITIONS = 8


class RelativePatchLocation(SSLMethod):
    """Predict where a neighbouring patch lies relative to a centre patch (8 classes).

    Both patches go through the shared backbone; their features are concatenated and
    classified by an MLP (the paper's late-fusion fc7/fc8).

    Batch: ``[patches (B, 2, 1, p, p) = [centre, neighbour], position (B,)]`` from
    :class:`~cxr_curriculum.transforms.RelativePatchPretext` (patch side about
    ``image_size / 4.2``, gap half a patch, jitter ``p / 14``: the paper's 96/48/7 px
    proportions). Patches are cut per sample, so with ``batched=True`` the per-sample transform is
    the same and :attr:`batch_transform` passes the batch through. On a ViT the patch side
    must be a multiple of the ViT's patch size (e.g. 68 px images give 16 px patches).

    Args:
        hidden_dim: Width of the fused hidden layer (4096, the paper's fc7).
        normalize_patches: Standardise each patch independently (the paper subtracts
            each patch's mean).
        patch_size: Patch side; ``None`` scales with the image as above.
        gap: Gap between patches; ``None`` is half a patch.
        jitter: Largest random shift; ``None`` is ``patch_size // 14``.
    """

    name: ClassVar[str] = "relative_patch"
    #: SGD, lr 0.01 for batch 128, momentum 0.9, weight decay 5e-4 (AlexNet-era setting).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint(
        "sgd", lr=0.01, weight_decay=5e-4, reference_batch=128
    )

    def __init__(
        self,
        hidden_dim: int = 4096,
        normalize_patches: bool = True,
        patch_size: int | None = None,
        gap: int | None = None,
        jitter: int | None = None,
    ) -> None:
        super().__init__(
            hidden_dim=hidden_dim,
            normalize_patches=normalize_patches,
            patch_size=patch_size,
            gap=gap,
            jitter=jitter,
        )
        if hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {hidden_dim}")
        self.pretext = RelativePatchPretext(patch_size, gap, jitter)  # validates the layout

    def build_heads(self, num_features: int) -> None:
        self.classifier = ClassificationHead(
            2 * num_features, N_POSITIONS, hidden_dim=self.hparams["hidden_dim"]
        )

    def make_transform(
        self, image_size: int, strength: float = 1.0, batched: bool = False
    ) -> Callable[..., Any]:
        self._check_transform_args(image_size, strength)
        self.pretext.layout(image_size, image_size)  # fail now, not inside a DataLoader
        check_token_size(
            "RelativePatchLocation", "patches", image_size, token_patch_size(self.backbone),
            size_for=self._patch_side,
        )  # fmt: skip
        self._set_batch_transform(PassThrough() if batched else None)
        return Chain(XRayAugment(image_size=image_size, strength=strength), self.pretext)

    def _patch_side(self, image_size: int) -> int:
        """The patch side for ``image_size`` images (0 if the layout does not fit)."""
        try:
            return self.pretext.layout(image_size, image_size)[0]
        except ValueError:
            return 0

    def _pair_features(self, patches: Tensor) -> Tensor:
        if patches.dim() != 5 or patches.shape[1] != 2:
            raise ValueError(f"expected patches (B, 2, 1, p, p), got {tuple(patches.shape)}")
        if self.hparams["normalize_patches"]:
            patches = standardize_patches(patches)
        b = patches.shape[0]
        return self._features(patches.flatten(0, 1)).view(b, 2, -1)

    def chance_loss(self, batch_size: int) -> float:
        """``log 8``: cross-entropy of a uniform guess over the eight positions."""
        return math.log(N_POSITIONS)

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        patches, position = inputs_and_targets(batch)
        logits = self.classifier(self._pair_features(patches).flatten(1))
        return F.cross_entropy(logits, position.to(logits.device).long())

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """Features ``(B, num_features)`` of the centre patches."""
        with preserved_buffers(self):
            return self._pair_features(inputs_and_targets(batch)[0])[:, 0]
