"""Shared view makers for joint-embedding methods (per sample and batched on the device)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cxr_curriculum.transforms import BatchedXRayAugment, MultiView, Resize, XRayAugment

__all__ = [
    "BatchedViews",
    "Chain",
    "PassThrough",
    "inputs_and_targets",
    "two_view_transform",
    "two_views",
]


class BatchedViews(nn.Module):
    """Apply each batched augmentation to the whole batch: ``(B, 1, H, W) -> [views]``.

    Args:
        augments: One batched augmentation per view (e.g. two :class:`BatchedXRayAugment`).
    """

    def __init__(self, augments: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(augments) < 1:
            raise ValueError("BatchedViews needs at least one augmentation")
        self.augments = nn.ModuleList(augments)

    def forward(self, batch: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """Return one ``(B, 1, S, S)`` view per augmentation, on ``batch.device``."""
        return [aug(batch, generator=generator) for aug in self.augments]


class PassThrough(nn.Module):
    """The batch transform of methods whose inputs are made per sample (Jigsaw, patches)."""

    def forward(self, batch: Any, generator: torch.Generator | None = None) -> Any:
        """Return ``batch`` unchanged."""
        return batch


def two_view_transform(
    image_size: int,
    strength: float,
    batched: bool,
    view_kwargs: Sequence[dict[str, Any]] = ({}, {}),
) -> tuple[Callable[..., Any], nn.Module | None]:
    """The per-sample transform and optional batch transform of a multi-view method.

    Args:
        image_size: Side of the square views.
        strength: Augmentation strength multiplier.
        batched: Make the views on the device (see returns).
        view_kwargs: Extra :class:`~cxr_curriculum.transforms.XRayAugment` arguments per
            view, e.g. BYOL's asymmetric blur ``({"blur_p": 1.0}, {"blur_p": 0.1})``.

    Returns:
        ``(transform, batch_transform)``: without ``batched``, ``transform`` returns a list
        of augmented views and ``batch_transform`` is None; with ``batched``, ``transform``
        only resizes and ``batch_transform`` makes the views on the device.
    """
    if batched:
        views = BatchedViews(
            [
                BatchedXRayAugment(image_size=image_size, strength=strength, **kw)
                for kw in view_kwargs
            ]
        )
        return Resize(image_size), views
    augs = [XRayAugment(image_size=image_size, strength=strength, **kw) for kw in view_kwargs]
    return MultiView(augs), None


def two_views(batch: object) -> tuple[Tensor, Tensor]:
    """Check and unpack a two-view batch ``[view0, view1, ...]`` of ``(B, 1, S, S)`` tensors."""
    if not isinstance(batch, list | tuple) or len(batch) < 2:
        raise ValueError(f"expected a batch [view0, view1], got {type(batch).__name__}")
    x0, x1 = batch[0], batch[1]
    if not isinstance(x0, Tensor) or not isinstance(x1, Tensor) or x0.shape != x1.shape:
        raise ValueError("the two views must be tensors of the same shape (B, 1, S, S)")
    return x0, x1


class Chain:
    """Apply callables one after the other (picklable, unlike a lambda, for DataLoader workers).

    Args:
        steps: Callables; each one's output is the next one's input.
    """

    def __init__(self, *steps: Callable[..., Any]) -> None:
        if not steps:
            raise ValueError("Chain needs at least one step")
        self.steps = steps

    def __call__(self, x: Any, *, generator: torch.Generator | None = None) -> Any:
        """Run the steps in order, passing ``generator`` to each one."""
        for step in self.steps:
            x = step(x, generator=generator)
        return x

    def __repr__(self) -> str:
        return f"Chain({', '.join(repr(s) for s in self.steps)})"


def inputs_and_targets(batch: object) -> tuple[Tensor, Tensor]:
    """Check and unpack a pretext batch ``[inputs, targets]`` of tensors."""
    if isinstance(batch, list | tuple) and len(batch) == 2:
        x, y = batch
        if isinstance(x, Tensor) and isinstance(y, Tensor):
            return x, y
    raise ValueError(f"expected a batch [inputs, targets], got {type(batch).__name__}")
