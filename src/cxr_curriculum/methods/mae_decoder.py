"""MAE's light transformer decoder (He et al. 2022, Sec. 3 "MAE decoder").

The decoder sees the full set of tokens: the encoded visible patches (projected to the
decoder width) and a shared, learned mask token at every masked position, plus fixed
2-D sine-cosine positional embeddings (zero for the prefix tokens), then a few
transformer blocks, a LayerNorm and a linear projection to the pixels of a patch.
The positional embeddings are computed for the patch grid of each batch, so the decoder
works at any image size the patch divides.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from cxr_curriculum.methods.masking import gather_tokens, scatter_tokens

__all__ = ["MAEDecoder", "sincos_2d"]


def _sincos_1d(dim: int, positions: Tensor) -> Tensor:
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    out = positions.reshape(-1, 1).double() * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int], num_prefix_tokens: int = 0) -> Tensor:
    """Fixed 2-D sine-cosine positional embeddings of a patch grid (MAE's ``pos_embed.py``).

    Half of the channels encode the column, half the row, each as ``[sin, cos]`` of the
    position times ``1 / 10000^(2i / (dim / 2))``; prefix tokens get zeros.

    Args:
        dim: Embedding dimension (a multiple of 4).
        grid: ``(h, w)`` patch grid.
        num_prefix_tokens: Zero rows prepended.

    Returns:
        ``(num_prefix_tokens + h * w, dim)`` float32.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for 2-D sin-cos embeddings, got {dim}")
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    emb = torch.cat([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], dim=1)
    return torch.cat([torch.zeros(num_prefix_tokens, dim, dtype=emb.dtype), emb]).float()


def _init_weights(module: nn.Module) -> None:
    """The official initialisation: xavier-uniform linear layers, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MAEDecoder(nn.Module):
    """Reconstructs the pixels of masked patches from the encoded visible ones.

    Args:
        embed_dim: Encoder token width ``D``.
        patch_pixels: ``p * p * C``, the values predicted per patch.
        num_prefix_tokens: Prefix (CLS) tokens in the encoder's output.
        decoder_dim: Decoder width (512 in the paper).
        depth: Decoder blocks (8 in the paper).
        num_heads: Attention heads (16).
        mlp_ratio: MLP width over block width (4).

    Shapes:
        ``forward(latent (B, P + K, D), keep (B, K), masked (B, M), grid)`` ->
        ``(B, M, patch_pixels)``, with ``K + M = h * w``.
    """

    def __init__(
        self,
        embed_dim: int,
        patch_pixels: int,
        num_prefix_tokens: int = 1,
        decoder_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block  # timm: the ViT's own blocks

        for name, value in (("embed_dim", embed_dim), ("patch_pixels", patch_pixels),
                            ("decoder_dim", decoder_dim), ("num_heads", num_heads)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if depth < 0 or decoder_dim % num_heads:
            raise ValueError(
                f"need depth >= 0 and num_heads dividing decoder_dim, got depth={depth}, "
                f"decoder_dim={decoder_dim}, num_heads={num_heads}"
            )
        self.num_prefix_tokens = num_prefix_tokens
        self.embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        blocks = [
            Block(decoder_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)  # type: ignore[arg-type]
            for _ in range(depth)
        ]
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.predict = nn.Linear(decoder_dim, patch_pixels)
        self.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(
        self, latent: Tensor, keep: Tensor, masked: Tensor, grid: tuple[int, int]
    ) -> Tensor:
        """Predicted pixels of the masked patches, ``(B, M, patch_pixels)``."""
        p = self.num_prefix_tokens
        x = self.embed(latent)
        b, n = x.shape[0], grid[0] * grid[1]
        if keep.shape[1] + masked.shape[1] != n or x.shape[1] != p + keep.shape[1]:
            raise ValueError(
                f"{x.shape[1]} encoded tokens, {keep.shape[1]} kept and {masked.shape[1]} "
                f"masked patches do not fit a {grid[0]}x{grid[1]} grid with {p} prefix tokens"
            )
        patches = scatter_tokens(self.mask_token.expand(b, n, -1).to(x.dtype), keep, x[:, p:])
        pos = sincos_2d(x.shape[-1], grid, p).to(device=x.device, dtype=x.dtype)
        x = self.norm(self.blocks(torch.cat([x[:, :p], patches], dim=1) + pos))
        out: Tensor = self.predict(gather_tokens(x[:, p:], masked))
        return out
