"""MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022,
arXiv 2111.06377): mask most patches, encode the rest, reconstruct the missing pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from cxr_curriculum.losses import MAELoss, patchify
from cxr_curriculum.methods._tokens import check_token_size, token_patch_size
from cxr_curriculum.methods.base import OptimizerHint, SSLMethod
from cxr_curriculum.methods.mae_decoder import MAEDecoder
from cxr_curriculum.methods.masking import gather_tokens, random_patch_mask
from cxr_curriculum.transforms import BatchedXRayAugment, Resize, XRayAugment

__all__ = ["MAE", "mae_augment_kwargs"]


def mae_augment_kwargs(strength: float) -> dict[str, Any]:
    """MAE's only augmentation, a random resized crop of 20-100 % of the area.

    The paper (Sec. A.1) uses random resized crops (and a horizontal flip, which this
    package leaves off for chest X-rays); masking is the regulariser, not the views.
    """
    return {
        "scale": (0.2, 1.0),
        "rotation": 0.0,
        "brightness": 0.0,
        "contrast": 0.0,
        "gamma": (1.0, 1.0),
        "blur_p": 0.0,
        "noise_std": 0.0,
        "strength": strength,
    }


class MAE(SSLMethod):
    """Masked autoencoder: a ViT encodes the visible patches, a light decoder predicts the rest.

    A random ``mask_ratio`` of each image's patches is removed (:func:`random_patch_mask`,
    drawn from torch's CPU generator, so a seeded run and a resumed run mask alike); the
    backbone encodes only the visible patches and its prefix (CLS) token
    (:meth:`~cxr_curriculum.backbones.Backbone.forward_tokens` with ``keep``); the decoder
    (:class:`~cxr_curriculum.methods.mae_decoder.MAEDecoder`) fills the masked positions
    with a learned mask token and predicts their pixels; the loss (:class:`MAELoss`) is the
    mean squared error on the masked patches, against per-patch normalised pixels by
    default. The encoder keeps the backbone's own learned positional embeddings (timm's
    ViTs); the decoder's are fixed 2-D sine-cosine, as in the paper.

    ViT backbones only: a CNN has no patch tokens to drop, so :meth:`setup` refuses it.

    Batch: images ``(B, 1, S, S)``, ``S`` a multiple of the patch size (MAE's random
    resized crop per sample, or on the device with ``batched=True``).

    Args:
        mask_ratio: Fraction of patches masked (0.75).
        decoder_dim: Decoder width (512).
        decoder_depth: Decoder blocks (8; the paper's Table 1a shows 1 block is nearly as
            good for fine-tuning and much cheaper).
        decoder_heads: Decoder attention heads (16).
        norm_pix_loss: Normalise each target patch by its mean and variance (True).
    """

    name: ClassVar[str] = "mae"
    #: AdamW, base lr 1.5e-4 x batch/256, weight decay 0.05 (paper, Table 8; betas 0.9,
    #: 0.95 there, torch's defaults 0.9, 0.999 here).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint(
        "adamw", lr=1.5e-4, weight_decay=0.05
    )

    def __init__(
        self,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__(
            mask_ratio=mask_ratio,
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            decoder_heads=decoder_heads,
            norm_pix_loss=norm_pix_loss,
        )
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if decoder_dim < 1 or decoder_heads < 1 or decoder_dim % decoder_heads:
            raise ValueError(
                f"decoder_dim ({decoder_dim}) must be a positive multiple of decoder_heads "
                f"({decoder_heads})"
            )
        if decoder_dim % 4:
            raise ValueError(f"decoder_dim must be a multiple of 4 (sin-cos), got {decoder_dim}")
        if decoder_depth < 0:
            raise ValueError(f"decoder_depth must be >= 0, got {decoder_depth}")

    def _patch(self) -> int:
        patch = token_patch_size(self.backbone)
        if patch is None:
            name = getattr(self.backbone, "name", type(self.backbone).__name__)
            raise ValueError(
                f"MAE needs a ViT backbone (e.g. Backbone('timm:vit_tiny_patch16_224')): it masks "
                f"patch tokens, which the CNN {name!r} does not have"
            )
        return patch

    def build_heads(self, num_features: int) -> None:
        patch = self._patch()
        hp = self.hparams
        in_chans = int(getattr(self.backbone, "in_chans", 1))
        self.decoder = MAEDecoder(
            num_features,
            patch * patch * in_chans,
            num_prefix_tokens=int(getattr(self.backbone, "num_prefix_tokens", 1)),
            decoder_dim=hp["decoder_dim"],
            depth=hp["decoder_depth"],
            num_heads=hp["decoder_heads"],
        )
        self.criterion = MAELoss(norm_pix_loss=hp["norm_pix_loss"])

    def make_transform(
        self, image_size: int, strength: float = 1.0, batched: bool = False
    ) -> Callable[..., Any]:
        """MAE's random resized crop (:func:`mae_augment_kwargs`), per sample or batched."""
        self._check_transform_args(image_size, strength)
        check_token_size("MAE", "image_size", image_size, token_patch_size(self.backbone))
        kwargs = mae_augment_kwargs(strength)
        if batched:
            self._set_batch_transform(BatchedXRayAugment(image_size=image_size, **kwargs))
            return Resize(image_size)
        self._set_batch_transform(None)
        return XRayAugment(image_size=image_size, **kwargs)

    def reconstruct(self, images: Tensor, keep: Tensor, masked: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted and true pixels of the masked patches, both ``(B, M, p * p * C)``.

        Args:
            images: ``(B, C, S, S)`` in ``[0, 1]``.
            keep: ``(B, K)`` indices of the visible patches.
            masked: ``(B, M)`` indices of the masked patches.
        """
        backbone = self._require_setup()
        patch = self._patch()
        grid = backbone.patch_grid(int(images.shape[-2]), int(images.shape[-1]))  # type: ignore[operator]
        latent = backbone.forward_tokens(images, keep)  # type: ignore[operator]
        pred = self.decoder(latent, keep, masked, grid)
        target = gather_tokens(patchify(images, patch), masked.to(images.device))
        return pred, target

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        if not isinstance(batch, Tensor) or batch.ndim != 4:
            raise ValueError(
                f"MAE expects a batch of images (B, C, S, S), got {type(batch).__name__}"
            )
        grid = self.backbone.patch_grid(int(batch.shape[-2]), int(batch.shape[-1]))  # type: ignore[union-attr, operator]
        keep, masked = random_patch_mask(
            batch.shape[0], grid[0] * grid[1], self.hparams["mask_ratio"], device=batch.device
        )
        pred, target = self.reconstruct(batch, keep, masked)
        loss: Tensor = self.criterion(pred, target)
        return loss

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """Pooled backbone features ``(B, D)`` of the whole (unmasked) images."""
        return super().embedding_for_monitor(batch)
