"""timm Vision Transformers as the body of a :class:`~cxr_curriculum.backbones.Backbone`.

A ViT (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929) cuts an image into ``p x p``
patches, embeds each one linearly (the patch embedding is a ``p x p`` convolution with
stride ``p``), adds learned positional embeddings, prepends a CLS token and runs a stack
of transformer blocks. The models are timm's ``VisionTransformer`` (``vit_*``, ``deit_*``),
built with ``dynamic_img_size=True``: the positional embeddings of the checkpoint's grid
(14x14 for a 224 px, patch-16 model) are resampled bicubically to the input's grid in
every forward pass, exactly as timm does, so one model (and one checkpoint) takes any
image size that the patch divides. A checkpoint saved at another grid is resampled once
when loaded (:func:`resample_pos_embed_state`).

Token layout: ``(B, P + N, D)`` with ``P`` prefix tokens (1, the CLS token, for ViTs; 2
for distilled DeiTs) followed by the ``N = h * w`` patch tokens in row-major order of the
patch grid ``(h, w) = (H / p, W / p)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "VIT_MODULES",
    "TimmTokens",
    "is_vit_arch",
    "resample_pos_embed_state",
    "tokens_to_map",
]

#: timm model modules whose models are plain ``VisionTransformer``s (token models that
#: :class:`TimmTokens` supports).
VIT_MODULES = ("vision_transformer", "deit")


def is_vit_arch(timm: Any, arch: str) -> bool:
    """Whether timm architecture ``arch`` (a pretrained tag such as ``.dino`` allowed) is a ViT."""
    base = arch.split(".", 1)[0]
    try:
        module = str(timm.models.model_entrypoint(base).__module__)
    except (RuntimeError, KeyError):
        return False
    return module.rsplit(".", 1)[-1] in VIT_MODULES


def tokens_to_map(tokens: Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> Tensor:
    """Drop the prefix tokens and lay the patch tokens out on their grid.

    The same reshape as pytorch-grad-cam's ``reshape_transform`` for ViTs
    (``tutorials/vision_transformers.md``), for any grid and prefix length.

    Args:
        tokens: ``(B, P + h * w, D)`` tokens (activations or their gradients).
        grid: The patch grid ``(h, w)``.
        num_prefix_tokens: ``P``.

    Returns:
        ``(B, D, h, w)``.
    """
    h, w = grid
    if tokens.ndim != 3 or tokens.shape[1] != num_prefix_tokens + h * w:
        raise ValueError(
            f"expected tokens (B, {num_prefix_tokens} + {h}*{w}, D) for a {h}x{w} patch grid, "
            f"got {tuple(tokens.shape)}"
        )
    patches = tokens[:, num_prefix_tokens:]
    return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


class TimmTokens(nn.Module):
    """A timm ``VisionTransformer`` as a Backbone body.

    ``forward`` returns the final-normed patch tokens laid out on the patch grid,
    ``(B, D, h, w)``, through the identity layer ``out`` (so that code written for CNN
    feature maps keeps working); :meth:`tokens` gives the token sequence itself.

    Args:
        model: A timm ``VisionTransformer`` built with ``dynamic_img_size=True`` and
            ``num_classes=0``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for attr in ("patch_embed", "blocks", "norm", "_pos_embed", "num_prefix_tokens"):
            if not hasattr(model, attr):
                raise ValueError(f"{type(model).__name__} is not a timm VisionTransformer ({attr})")
        self.model = model
        self.out = nn.Identity()

    @property
    def patch_size(self) -> int:
        """Side ``p`` of the square patches."""
        size: Any = getattr(self.model.patch_embed, "patch_size", 0)
        return int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens (CLS, distillation and register tokens)."""
        return int(getattr(self.model, "num_prefix_tokens", 0))

    @property
    def has_class_token(self) -> bool:
        """Whether token 0 is a CLS token."""
        return getattr(self.model, "cls_token", None) is not None

    @property
    def blocks(self) -> nn.Sequential:
        """The transformer blocks, input end first."""
        blocks = self.model.blocks
        assert isinstance(blocks, nn.Sequential)
        return blocks

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid ``(H / p, W / p)`` of an ``H x W`` input.

        Raises:
            ValueError: The patch size does not divide ``H`` and ``W``.
        """
        p = self.patch_size
        if height % p or width % p or height < p or width < p:
            raise ValueError(
                f"a ViT with patch size {p} needs image sides that are multiples of {p}, got "
                f"{height}x{width}; resize to e.g. {max(p, round(height / p) * p)} px"
            )
        return height // p, width // p

    def embed(self, x: Tensor) -> Tensor:
        """Patch embedding, prefix tokens and positional embeddings: ``(B, P + N, D)``."""
        self.grid(int(x.shape[-2]), int(x.shape[-1]))
        out: Tensor = self.model._pos_embed(self.model.patch_embed(x))  # type: ignore[operator]
        return out

    def encode(self, tokens: Tensor) -> Tensor:
        """Transformer blocks and final norm on a token sequence ``(B, T, D)``."""
        m = self.model
        x = m.norm_pre(m.patch_drop(tokens))  # type: ignore[operator]
        out: Tensor = m.norm(m.blocks(x))  # type: ignore[operator]
        return out

    def tokens(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Final-normed tokens of images ``x`` ``(B, C, H, W)``.

        Args:
            x: Images, already standardised.
            keep: Optional ``(B, K)`` indices (in ``[0, N)``) of the patch tokens to keep,
                as MAE's encoder does; the prefix tokens are always kept, first.

        Returns:
            ``(B, P + N, D)``, or ``(B, P + K, D)`` with ``keep``.
        """
        tokens = self.embed(x)
        if keep is not None:
            p = self.num_prefix_tokens
            if keep.ndim != 2 or keep.shape[0] != tokens.shape[0]:
                raise ValueError(f"keep must be (B, K) patch indices, got {tuple(keep.shape)}")
            index = keep.to(tokens.device)[..., None].expand(-1, -1, tokens.shape[-1])
            tokens = torch.cat([tokens[:, :p], torch.gather(tokens[:, p:], 1, index)], dim=1)
        return self.encode(tokens)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> final-normed patch tokens on the grid ``(B, D, H / p, W / p)``."""
        grid = self.grid(int(x.shape[-2]), int(x.shape[-1]))
        return self.out(tokens_to_map(self.tokens(x), grid, self.num_prefix_tokens))


def resample_pos_embed_state(
    state: Mapping[str, Tensor], body: TimmTokens, key: str = "model.pos_embed"
) -> dict[str, Tensor]:
    """Resample a checkpoint's positional embeddings to ``body``'s grid (timm's rule).

    A ViT checkpoint trained at another image size (or a timm one from another grid) has
    ``pos_embed`` of another length; timm's ``checkpoint_filter_fn`` resamples it
    bicubically (``resample_abs_pos_embed``), and so does this. Other keys are unchanged.
    """
    out = dict(state)
    value = out.get(key)
    expected = body.model.pos_embed
    if value is None or not isinstance(expected, Tensor) or value.shape == expected.shape:
        return out
    if value.ndim != 3 or value.shape[-1] != expected.shape[-1]:
        return out  # left for the strict loader to report
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(body.model, "no_embed_class", False) else body.num_prefix_tokens
    grid = tuple(getattr(body.model.patch_embed, "grid_size", ()))
    out[key] = resample_abs_pos_embed(value, list(grid), num_prefix_tokens=prefix)
    return out
