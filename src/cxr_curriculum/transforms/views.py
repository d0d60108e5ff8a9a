"""Several random views of one image, for joint-embedding methods (SimCLR, BYOL, ...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ._checks import check_image

__all__ = ["MultiView"]

ViewTransform = Callable[..., torch.Tensor]


class MultiView:
    """Return a list of views of one image ``(1, H, W)``.

    ``MultiView(aug, n_views=2)`` applies one transform ``n_views`` times (independent
    draws); ``MultiView([aug_a, aug_b])`` applies each transform once, as for methods
    with asymmetric views (BYOL, DINO global/local crops). Every transform is called as
    ``t(image, generator=generator)``, so one seeded generator reproduces all views.

    Args:
        transforms: One transform or a sequence of transforms.
        n_views: Number of views when one transform is given; must be omitted (or equal
            the sequence length) when a sequence is given.

    Example:
        >>> from cxr_curriculum.transforms import XRayAugment
        >>> views = MultiView(XRayAugment(32), n_views=2)(torch.rand(1, 48, 48))
        >>> [tuple(v.shape) for v in views]
        [(1, 32, 32), (1, 32, 32)]
    """

    def __init__(
        self, transforms: ViewTransform | Sequence[ViewTransform], n_views: int | None = None
    ) -> None:
        if isinstance(transforms, Sequence):
            if not transforms or not all(callable(t) for t in transforms):
                raise ValueError("transforms must be a non-empty sequence of callables")
            if n_views is not None and n_views != len(transforms):
                raise ValueError(
                    f"n_views={n_views} does not match the {len(transforms)} transforms given"
                )
            self.transforms: list[ViewTransform] = list(transforms)
        elif callable(transforms):
            n = 2 if n_views is None else n_views
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"n_views must be a positive int, got {n_views!r}")
            self.transforms = [transforms] * n
        else:
            raise ValueError(f"transforms must be callable or a sequence, got {transforms!r}")

    @property
    def n_views(self) -> int:
        """Number of views produced."""
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms!r})"

    def __call__(
        self, image: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """The list of ``n_views`` views of ``image``, in transform order."""
        check_image(image)
        return [t(image, generator=generator) for t in self.transforms]
