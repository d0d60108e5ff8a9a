"""Jigsaw puzzles (Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations
by Solving Jigsaw Puzzles", arXiv 1603.09246)."""

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
from cxr_curriculum.methods.heads import JigsawHead
from cxr_curriculum.transforms import JigsawPretext, XRayAugment

__all__ = ["Jigsaw", "standardize_patches"]


def standardize_patches(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean and unit standard deviation per patch ``(..., C, h, w)``.

    Noroozi & Favaro normalise "the mean and the standard deviation of each patch
    independently" so that low-level statistics cannot reveal a tile's position.
    """
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    std = x.std(dim=(-3, -2, -1), keepdim=True)
    return (x - mean) / (std + eps)


class Jigsaw(SSLMethod):
    """Predict which permutation shuffled the ``grid x grid`` tiles of an image.

    A shared backbone ("context-free network") embeds every tile; the tile features go
    through a shared ``fc6``, are concatenated and classified into one of
    ``n_permutations`` classes (:class:`~cxr_curriculum.methods.heads.JigsawHead`).

    Batch: ``[tiles (B, grid**2, 1, t, t), permutation index (B,)]`` from
    :class:`~cxr_curriculum.transforms.JigsawPretext`. Tiles are cut per sample on the CPU,
    so ``make_transform(batched=True)`` returns the same per-sample transform and
    :attr:`batch_transform` passes the batch through. On a ViT the tile side
    (``int(0.85 * image_size // grid)``) must be a multiple of the patch size: e.g. 57 px
    images give 16 px tiles for a patch-16 ViT; other sizes are refused with the sizes
    that work.

    Args:
        grid: Tiles per side (3).
        n_permutations: Number of permutation classes, chosen for large Hamming distance
            (1000, the paper's choice; choosing them takes about a second, once).
        tile_dim: Width of the per-tile ``fc6`` (512).
        hidden_dim: Width of ``fc7`` (4096).
        normalize_tiles: Standardise each tile independently (paper).
        seed: Seed of the permutation set (part of the task definition).
    """

    name: ClassVar[str] = "jigsaw"
    #: SGD, lr 0.01, momentum 0.9, weight decay 5e-4 (a conventional AlexNet-era setting).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("sgd", lr=0.01, weight_decay=5e-4)

    def __init__(
        self,
        grid: int = 3,
        n_permutations: int = 1000,
        tile_dim: int = 512,
        hidden_dim: int = 4096,
        normalize_tiles: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            grid=grid,
            n_permutations=n_permutations,
            tile_dim=tile_dim,
            hidden_dim=hidden_dim,
            normalize_tiles=normalize_tiles,
            seed=seed,
        )
        for name in ("grid", "n_permutations", "tile_dim", "hidden_dim"):
            if self.hparams[name] < (2 if name == "grid" else 1):
                raise ValueError(f"{name} is too small: {self.hparams[name]}")
        self._pretext: JigsawPretext | None = None

    @property
    def pretext(self) -> JigsawPretext:
        """The tile-shuffling transform (its permutation set is built on first use)."""
        if self._pretext is None:
            hp = self.hparams
            self._pretext = JigsawPretext(hp["grid"], hp["n_permutations"], hp["seed"])
        return self._pretext

    def build_heads(self, num_features: int) -> None:
        hp = self.hparams
        self.classifier = JigsawHead(
            num_features, hp["n_permutations"], hp["grid"] ** 2, hp["tile_dim"], hp["hidden_dim"]
        )

    def make_transform(
        self, image_size: int, strength: float = 1.0, batched: bool = False
    ) -> Callable[..., Any]:
        self._check_transform_args(image_size, strength)
        pretext = self.pretext
        check_token_size(
            "Jigsaw", "tiles", image_size, token_patch_size(self.backbone),
            size_for=lambda size: pretext.tile_size(size, size),
        )  # fmt: skip
        self._set_batch_transform(PassThrough() if batched else None)
        return Chain(XRayAugment(image_size=image_size, strength=strength), pretext)

    def _tile_features(self, tiles: Tensor) -> Tensor:
        if tiles.dim() != 5 or tiles.shape[1] != self.hparams["grid"] ** 2:
            raise ValueError(
                f"expected tiles (B, {self.hparams['grid'] ** 2}, 1, t, t), got "
                f"{tuple(tiles.shape)}"
            )
        if self.hparams["normalize_tiles"]:
            tiles = standardize_patches(tiles)
        b, n = tiles.shape[:2]
        return self._features(tiles.flatten(0, 1)).view(b, n, -1)

    def chance_loss(self, batch_size: int) -> float:
        """``log n_permutations``: cross-entropy of a uniform guess over the permutations."""
        return math.log(self.hparams["n_permutations"])

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        tiles, index = inputs_and_targets(batch)
        logits = self.classifier(self._tile_features(tiles))
        return F.cross_entropy(logits, index.to(logits.device).long())

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """Mean tile feature ``(B, num_features)`` per image."""
        with preserved_buffers(self):
            return self._tile_features(inputs_and_targets(batch)[0]).mean(dim=1)
