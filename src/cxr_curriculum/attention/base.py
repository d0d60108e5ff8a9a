"""The saliency-method contract shared by CAMs and input-gradient methods.

A saliency method is built around a model and called on a batch:
``method(images (B, C, H, W), targets) -> (B, H, W)`` float maps at the input
resolution, one per image, never min-max normalised (so that mass-based metrics see
the method's own scale; see :mod:`cxr_curriculum.attention.metrics`).
"""

from __future__ import annotations

import contextlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from .targets import Target, TargetsLike, resolve_target

__all__ = [
    "SaliencyMethod",
    "as_model_dtype",
    "check_saliency",
    "check_unit_images",
    "eval_mode",
    "model_dtype",
    "same_aspect",
]


def same_aspect(h: int, w: int, height: int, width: int) -> bool:
    """Whether an ``h x w`` map or mask has the ``height x width`` images' aspect ratio
    within one pixel (of either size): ``|h/w - H/W| <= (H/W) max(1/h, 1/w, 1/H, 1/W)``.

    Saliency maps (:func:`check_saliency`) and lung masks (:func:`~.masks.fit_masks`)
    share this tolerance. An empty side (``h`` or ``w`` zero) never matches.
    """
    if h <= 0 or w <= 0 or height <= 0 or width <= 0:
        return False
    slack = (height / width) * max(1 / h, 1 / w, 1 / height, 1 / width)
    return abs(h / w - height / width) <= slack


def check_unit_images(images: Any) -> None:
    """Refuse what is not a finite float ``(B, C, H, W)`` batch in ``[0, 1]``.

    Images outside ``[0, 1]`` (0-255 values, ImageNet-normalised tensors) give wrong
    masks and wrong scores without any error, so they are refused with the range found;
    so are batches without pixels (a zero height or width).
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float (B, 1, H, W) tensor in [0, 1], got {got}")
    if images.shape[0] == 0:
        raise ValueError("images must hold at least one image")
    if min(images.shape[1:]) == 0:
        raise ValueError(
            f"images must have at least one channel and a height and width of at least 1 "
            f"pixel, got shape {tuple(images.shape)}"
        )
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


def check_saliency(saliency: Any, n: int, size: tuple[int, int], source: str) -> Tensor:
    """Refuse saliency maps that cannot be scored against ``n`` images of ``size``.

    Args:
        saliency: ``(n, h, w)`` float maps; ``(h, w)`` may differ from the images' size
            (a CAM map at its layer's resolution) but not in aspect ratio (within one
            pixel), because a map is laid over the image by bilinear resizing.
        n: Number of images.
        size: ``(H, W)`` of the images.
        source: Where the maps came from, for the messages (``"supplied"``, a method).

    Returns:
        The maps as float32.

    Raises:
        ValueError: Not a float ``(n, h, w)`` tensor, an empty map, another aspect
            ratio, or NaN/inf values (named by image; they would make every score NaN).
    """
    if not isinstance(saliency, Tensor) or saliency.ndim != 3 or saliency.shape[0] != n:
        got = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(f"saliency ({source}) must be ({n}, H, W), got {got}")
    if not saliency.is_floating_point():
        raise ValueError(f"saliency ({source}) must be a float tensor, got {saliency.dtype}")
    h, w = int(saliency.shape[1]), int(saliency.shape[2])
    height, width = size
    if h == 0 or w == 0:
        raise ValueError(f"saliency ({source}) maps are empty: shape {tuple(saliency.shape)}")
    if not same_aspect(h, w, height, width):
        raise ValueError(
            f"saliency ({source}) maps are {h}x{w} but the images {height}x{width}: their "
            "aspect ratios differ, so a map cannot be laid over its image"
        )
    bad = ~torch.isfinite(saliency.detach()).flatten(1).all(1)
    if bool(bad.any()):
        which = bad.nonzero()[:, 0].tolist()
        raise ValueError(
            f"saliency ({source}) holds NaN or infinite values in image(s) {which[:5]}"
            f"{' ...' if len(which) > 5 else ''}: every score of those images would be NaN"
        )
    return saliency.detach().float()


def model_dtype(model: nn.Module | None) -> torch.dtype:
    """The dtype of ``model``'s first floating-point parameter or buffer (float32 if none)."""
    if model is not None:
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.is_floating_point():
                return t.dtype
    return torch.float32


def as_model_dtype(images: Tensor, model: nn.Module | None) -> Tensor:
    """Floating-point ``images`` in the dtype of ``model``'s parameters (float32 without
    a model).

    float64, float16 and bfloat16 batches would otherwise fail inside torch ("expected
    scalar type Double but found Float"); values in ``[0, 1]`` survive the conversion
    (to float32 exactly from float16/bfloat16, to 7 significant digits from float64).
    """
    dtype = model_dtype(model)
    return images if images.dtype == dtype else images.to(dtype)


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
        if images.shape[0] == 0 or min(images.shape[1:]) == 0:
            raise ValueError(f"images must hold at least one pixel, got {tuple(images.shape)}")
        images = as_model_dtype(images, self.model)
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
