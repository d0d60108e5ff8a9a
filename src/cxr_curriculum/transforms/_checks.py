"""Argument checks shared by the transforms (eager, with clear messages)."""

from __future__ import annotations

import torch

__all__ = ["as_size", "check_image", "check_mask"]


def as_size(image_size: int | tuple[int, int], name: str = "image_size") -> tuple[int, int]:
    """Return ``(height, width)`` from an int or a pair of positive ints.

    Raises:
        ValueError: if the size is not a positive int or a pair of positive ints.
    """
    if isinstance(image_size, bool):
        raise ValueError(f"{name} must be a positive int or (height, width), got {image_size!r}")
    if isinstance(image_size, int):
        size = (image_size, image_size)
    elif (
        isinstance(image_size, tuple | list)
        and len(image_size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"{name} must be a positive int or (height, width), got {image_size!r}")
    if min(size) < 1:
        raise ValueError(f"{name} must be positive, got {image_size!r}")
    return size


def check_image(image: torch.Tensor, name: str = "image") -> None:
    """Check that ``image`` is a floating tensor of shape ``(1, H, W)``.

    Raises:
        ValueError: naming the wrong type, shape or dtype.
    """
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (1, H, W), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] != 1:
        raise ValueError(f"{name} must have shape (1, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {image.dtype}")


def check_mask(mask: torch.Tensor, image: torch.Tensor, name: str = "mask") -> None:
    """Check that ``mask`` is a ``uint8`` tensor with the spatial size of ``image``.

    Raises:
        ValueError: naming the wrong type, dtype or shape.
    """
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.uint8:
        raise ValueError(f"{name} must be torch.uint8 (0, 1, 255 = ignore), got {mask.dtype}")
    if mask.ndim != image.ndim or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"{name} shape {tuple(mask.shape)} does not match image shape {tuple(image.shape)}"
        )
