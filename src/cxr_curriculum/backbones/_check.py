"""Checking a backbone name (and an image size for it) without building real weights."""

from __future__ import annotations

import torch

from .backbone import Backbone

__all__ = ["check_backbone"]


def check_backbone(name: str, image_size: int | None = None) -> None:
    """Fail early on a backbone name, or an image size, that a run could not use.

    The architecture is built on the ``meta`` device (no memory, no initialisation cost),
    so config files can be validated (``--check``) before anything trains.

    Args:
        name: A :class:`Backbone` name (``"resnet18"``, ``"timm:vit_small_patch16_224"``, ...).
        image_size: Side of the square inputs the run will use; a ViT needs a multiple of
            its patch size.

    Raises:
        ValueError: An unknown name, a refused timm model, or an image size that the ViT's
            patch size does not divide (the message says what is allowed).
    """
    with torch.device("meta"):
        backbone = Backbone(name)
    if image_size is not None and backbone.is_token_model:
        backbone.patch_grid(image_size, image_size)
