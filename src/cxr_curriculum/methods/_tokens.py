"""What a method must know about a ViT backbone: its patch size, and sizes it can take.

A ViT (:class:`~cxr_curriculum.backbones.Backbone` with ``is_token_model``) takes images
whose sides its patch size divides. Methods check the sizes their transforms produce when
they are set up on a ViT (``setup`` runs before ``make_transform`` in a Curriculum), so a
wrong size fails when the stage starts, with the sizes that work, not inside a DataLoader.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["check_token_size", "token_patch_size"]


def token_patch_size(backbone: nn.Module | None) -> int | None:
    """The patch size of a ViT backbone; ``None`` for a CNN or no backbone yet."""
    if backbone is None or not bool(getattr(backbone, "is_token_model", False)):
        return None
    return int(backbone.patch_size)  # type: ignore[arg-type]


def _same(size: int) -> int:
    return size


def check_token_size(
    method: str,
    what: str,
    image_size: int,
    patch: int | None,
    size_for: Callable[[int], int] = _same,
) -> None:
    """Refuse an ``image_size`` whose views (or tiles) a ViT with patch ``patch`` cannot take.

    Args:
        method: The method's name, for the message.
        what: What is checked (``"image_size"``, ``"jigsaw tiles"``, ...).
        image_size: The stage's image size.
        patch: The ViT's patch size (``None``: no check).
        size_for: The side checked for an image size (the image itself by default; a
            tile's side for Jigsaw).

    Raises:
        ValueError: ``patch`` does not divide ``size_for(image_size)``; the message lists
            the nearest image sizes that work.
    """
    size = size_for(image_size)
    if patch is None or (size >= patch and size % patch == 0):
        return
    ok = [s for s in range(8, 4 * image_size + 8 * patch) if _fits(size_for(s), patch)]
    near = sorted(sorted(ok, key=lambda s: abs(s - image_size))[:4])
    hint = f"; image sizes that work: {near}" if near else ""
    given = "" if size_for is _same else f" (image_size={image_size})"
    raise ValueError(
        f"{method}: {what} of {size} px{given} on a ViT with patch size {patch}: the patch "
        f"size must divide it{hint}"
    )


def _fits(size: int, patch: int) -> bool:
    return size >= patch and size % patch == 0
