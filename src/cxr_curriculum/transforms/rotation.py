"""Rotation pretext task (Gidaris et al., ICLR 2018, "Unsupervised representation
learning by predicting image rotations")."""

from __future__ import annotations

import torch

from ._checks import check_image

__all__ = ["RotationPretext"]


class RotationPretext:
    """Rotate an image by ``k * 90`` degrees counter-clockwise; the target is ``k``.

    ``k`` is drawn uniformly from ``{0, 1, 2, 3}`` with the given torch generator.
    ``torch.rot90(view, -k, dims=(-2, -1))`` recovers the input. A non-square image
    has height and width swapped for odd ``k``; resize to a square first for batching.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> view, k = RotationPretext()(torch.rand(1, 32, 32), generator=g)
        >>> view.shape, k in range(4)
        (torch.Size([1, 32, 32]), True)
    """

    n_classes: int = 4

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(
        self, image: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, int]:
        """Return ``(rotated (1, H, W) or (1, W, H), k)``."""
        check_image(image)
        k = int(torch.randint(0, 4, (1,), generator=generator).item())
        return torch.rot90(image, k, dims=(-2, -1)).contiguous(), k
