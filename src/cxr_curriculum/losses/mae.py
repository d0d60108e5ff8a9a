"""MAE's reconstruction loss (He et al., "Masked Autoencoders Are Scalable Vision Learners",
CVPR 2022, arXiv 2111.06377, Sec. 3 "Reconstruction target")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cxr_curriculum.losses._precision import float32_loss

__all__ = ["MAELoss", "normalize_pixels", "patchify"]


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches, row-major over the patch grid.

    Args:
        images: ``(B, C, H, W)``; ``patch_size`` must divide ``H`` and ``W``.
        patch_size: Side ``p`` of the patches.

    Returns:
        ``(B, (H / p) * (W / p), p * p * C)``, each patch flattened in ``(p, p, C)`` order
        (the layout of the official code and of ``lightly.models.utils.patchify``).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    b, c, h, w = images.shape
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise ValueError(f"patch_size {patch_size} must divide the image sides {h}x{w}")
    gh, gw = h // patch_size, w // patch_size
    patches = images.reshape(b, c, gh, patch_size, gw, patch_size)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch_size * patch_size * c)


def normalize_pixels(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalise every patch by its own pixel mean and variance (MAE's "norm_pix_loss").

    ``(x - mean) / sqrt(var + eps)`` over the last dimension, with the unbiased variance,
    as the official code (``models_mae.py: forward_loss``) and lightly's
    ``normalize_mean_var``.
    """
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


class MAELoss(nn.Module):
    """Mean squared error between predicted and true pixels of the masked patches.

    ``forward(pred, target)`` takes the decoder's predictions and the true patches of the
    masked positions, both ``(B, M, p * p * C)``; with ``norm_pix_loss`` the targets are
    normalised per patch (:func:`normalize_pixels`), which the paper found to improve
    representations (Table 1d). The loss is the mean over pixels, patches and images
    (every image has the same number ``M`` of masked patches), computed in float32.

    Args:
        norm_pix_loss: Normalise each target patch (True, the paper's choice).
        eps: Added to the patch variance.
    """

    def __init__(self, norm_pix_loss: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.norm_pix_loss = norm_pix_loss
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar loss of ``(B, M, D)`` predictions against ``(B, M, D)`` true patches."""
        if pred.shape != target.shape:
            raise ValueError(
                f"pred and target must have the same shape, got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        with float32_loss(pred):
            pred, target = pred.float(), target.float()
            if self.norm_pix_loss:
                target = normalize_pixels(target, self.eps)
            return torch.mean((pred - target) ** 2)
