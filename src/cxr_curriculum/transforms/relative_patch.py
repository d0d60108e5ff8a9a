"""Relative patch location pretext task (Doersch, Gupta & Efros, ICCV 2015,
"Unsupervised visual representation learning by context prediction")."""

from __future__ import annotations

import torch

from ._checks import check_image

__all__ = ["RELATIVE_POSITIONS", "RelativePatchPretext"]

#: ``(row, col)`` offset of the neighbour for each target, in patch steps:
#: 0 top-left, 1 top, 2 top-right, 3 left, 4 right, 5 bottom-left, 6 bottom, 7 bottom-right.
RELATIVE_POSITIONS: tuple[tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1),
)  # fmt: skip


class RelativePatchPretext:
    """Cut a centre patch and one of its 8 neighbours; the target is the neighbour's position.

    Patches of side ``p`` lie on a 3x3 layout with ``gap`` pixels between them, placed
    at a random position in the image; each patch is then moved by up to ``jitter``
    pixels in each direction (Doersch et al.: 96 px patches, 48 px gap, up to 7 px
    jitter), so that the network cannot match edges or continue lines. The neighbour's
    top-left corner is ``(p + gap) * RELATIVE_POSITIONS[position]`` from the centre's,
    up to the jitter.

    Args:
        patch_size: Patch side ``p``; ``None`` picks ``floor(min(H, W) / 4.2)`` per image.
        gap: Gap between patches; ``None`` gives ``p // 2``.
        jitter: Largest shift of a patch; ``None`` gives ``p // 14``.

    Example:
        >>> rp = RelativePatchPretext()
        >>> patches, pos = rp(torch.rand(1, 64, 64), generator=torch.Generator().manual_seed(0))
        >>> patches.shape, pos in range(8)
        (torch.Size([2, 1, 15, 15]), True)
    """

    n_classes: int = 8

    def __init__(
        self, patch_size: int | None = None, gap: int | None = None, jitter: int | None = None
    ) -> None:
        for name, value, low in (
            ("patch_size", patch_size, 1),
            ("gap", gap, 0),
            ("jitter", jitter, 0),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise ValueError(f"{name} must be None or an int >= {low}, got {value!r}")
        self.patch_size = patch_size
        self.gap = gap
        self.jitter = jitter

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(patch_size={self.patch_size}, gap={self.gap}, "
            f"jitter={self.jitter})"
        )

    def layout(self, height: int, width: int) -> tuple[int, int, int]:
        """``(patch_size, gap, jitter)`` used for a ``(height, width)`` image.

        Raises:
            ValueError: if the 3x3 layout plus jitter does not fit in the image.
        """
        p = self.patch_size if self.patch_size is not None else int(min(height, width) / 4.2)
        gap = self.gap if self.gap is not None else p // 2
        jitter = self.jitter if self.jitter is not None else p // 14
        extent = 3 * p + 2 * gap + 2 * jitter
        if p < 1 or extent > min(height, width):
            raise ValueError(
                f"3 patches of {p} px with gap {gap} and jitter {jitter} need {extent} px, "
                f"image is {height}x{width}"
            )
        return p, gap, jitter

    def __call__(
        self, image: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, int]:
        """Return ``(patches (2, 1, p, p) = [centre, neighbour], position in 0..7)``."""
        check_image(image)
        h, w = image.shape[-2:]
        p, gap, jitter = self.layout(h, w)
        step = p + gap
        extent = 3 * p + 2 * gap
        u = torch.rand(2, generator=generator)
        y0 = jitter + int(u[0] * (h - extent - 2 * jitter + 1))
        x0 = jitter + int(u[1] * (w - extent - 2 * jitter + 1))
        position = int(torch.randint(0, 8, (1,), generator=generator).item())
        shifts = torch.randint(-jitter, jitter + 1, (2, 2), generator=generator).tolist()
        dr, dc = RELATIVE_POSITIONS[position]
        corners = [(y0 + step, x0 + step), (y0 + (1 + dr) * step, x0 + (1 + dc) * step)]
        patches = [
            image[:, y + sy : y + sy + p, x + sx : x + sx + p]
            for (y, x), (sy, sx) in zip(corners, shifts, strict=True)
        ]
        return torch.stack(patches).contiguous(), position
