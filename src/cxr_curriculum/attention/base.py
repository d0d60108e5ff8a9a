"""The saliency-method contract shared by CAMs and input-gradient methods.

A saliency method is built around a model and called on a batch:
``method(images (B, C, H, W), targets) -> (B, H, W)`` float maps at the input
resolution, one per image, never min-max normalised (so that mass-based metrics see
the method's own scale; see :mod:`cxr_curriculum.attention.metrics`).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .targets import Target, TargetsLike, resolve_target

__all__ = ["SaliencyMethod", "check_unit_images", "eval_mode"]


def check_unit_images(images: Any) -> None:
    """Refuse what is not a finite float ``(B, C, H, W)`` batch in ``[0, 1]``.

    Images outside ``[0, 1]`` (0-255 values, ImageNet-normalised tensors) give wrong
    masks and wrong scores without any error, so they are refused with the range found.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float (B, 1, H, W) tensor in [0, 1], got {got}")
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image")
    if not bool(torch.isfinite(images).all()):
        bad = (~torch.isfinite(images)).flatten(1).any(1).nonzero()[:, 0].tolist()
        raise ValueError(f"images hold NaN or infinite values (image(s) {bad[:5]})")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"images must have values in [0, 1] (the library's image convention), found "
            f"[{low:g}, {high:g}]; divide 8-bit data by 255 and put any normalisation "
            "inside the model"
        )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode and restore each submodule's training flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


class SaliencyMethod(ABC):
    """Base class: validates the batch, sets eval mode and resolves the targets.

    Subclasses implement :meth:`attribute`; the model's training flags and
    ``requires_grad`` settings are left as they were, and parameter ``.grad`` fields
    are never touched (gradients come from :func:`torch.autograd.grad`).

    Args:
        model: Any ``nn.Module`` mapping ``(B, C, H, W)`` to logits ``(B, K)`` or ``(B,)``.
    """

    #: Short name used in reports.
    name: str = "saliency"

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model

    def __call__(self, images: Tensor, targets: TargetsLike = None) -> Tensor:
        """Compute saliency maps.

        Args:
            images: ``(B, C, H, W)`` float batch (the library's images are ``C = 1``).
            targets: ``None`` (predicted class), a class index, one index per image, or a
                :class:`~cxr_curriculum.attention.targets.Target` callable.

        Returns:
            ``(B, H, W)`` float32 saliency maps at the input resolution.
        """
        if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a float (B, C, H, W) tensor, got {shape}")
        if images.shape[0] == 0:
            raise ValueError("images must hold at least one image")
        with eval_mode(self.model), torch.enable_grad():
            maps = self.attribute(images.detach(), targets)
        if maps.shape != (images.shape[0], *images.shape[-2:]):
            raise RuntimeError(f"{type(self).__name__} returned shape {tuple(maps.shape)}")
        return maps.detach().float()

    def _score(self, outputs: Tensor, targets: TargetsLike) -> Tensor:
        """Resolve ``targets`` against ``outputs`` and return the ``(B,)`` scores."""
        target: Target = resolve_target(targets, outputs)
        scores = target(outputs)
        if scores.shape != (outputs.shape[0],):
            raise ValueError(
                f"a target must return one score per image (shape ({outputs.shape[0]},)), "
                f"got {tuple(scores.shape)}"
            )
        return scores

    @abstractmethod
    def attribute(self, images: Tensor, targets: TargetsLike) -> Tensor:
        """Return ``(B, H, W)`` maps; called in eval mode with gradients enabled."""
