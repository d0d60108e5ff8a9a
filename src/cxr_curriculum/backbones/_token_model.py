"""The token (Vision Transformer) part of the :class:`~cxr_curriculum.backbones.Backbone`
contract: patch size, prefix tokens, patch grid, the token sequence and its map."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from ._vit import TimmTokens, tokens_to_map

__all__ = ["TokenModelMixin"]


class TokenModelMixin:
    """ViT methods of a backbone whose ``body`` may be a :class:`~._vit.TimmTokens`.

    CNN bodies answer ``False`` / ``None`` / 0 to the questions and refuse the token
    methods with a ``ValueError``.
    """

    if TYPE_CHECKING:
        body: nn.Module
        _name: str

        def _standardise(self, x: Tensor) -> Tensor: ...

    @property
    def is_token_model(self) -> bool:
        """Whether this is a Vision Transformer (token model)."""
        return isinstance(self.body, TimmTokens)

    def _tokens_body(self) -> TimmTokens:
        if not isinstance(self.body, TimmTokens):
            raise ValueError(f"{self._name!r} is a CNN, not a token model (ViT)")
        return self.body

    @property
    def patch_size(self) -> int | None:
        """A ViT's patch side ``p`` (``None`` for CNNs)."""
        return self.body.patch_size if isinstance(self.body, TimmTokens) else None

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before a ViT's patch tokens (1: the CLS token; 0 for CNNs)."""
        return self.body.num_prefix_tokens if isinstance(self.body, TimmTokens) else 0

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """A ViT's patch grid ``(H / p, W / p)`` for ``H x W`` inputs.

        Raises:
            ValueError: A CNN, or sides that the patch size does not divide.
        """
        return self._tokens_body().grid(height, width)

    def forward_tokens(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """A ViT's final-normed token sequence.

        Args:
            x: Images ``(B, in_chans, H, W)`` in ``[0, 1]``, sides multiples of :attr:`patch_size`.
            keep: Optional ``(B, K)`` indices of the patch tokens to encode (MAE's visible
                patches); prefix tokens are always kept.

        Returns:
            ``(B, P + N, D)``: :attr:`num_prefix_tokens` prefix tokens (the CLS token first),
            then the ``N = h * w`` patch tokens in row-major grid order (``(B, P + K, D)``
            with ``keep``).

        Raises:
            ValueError: A CNN, a wrong input shape, or sides the patch size does not divide.
        """
        return self._tokens_body().tokens(self._standardise(x), keep)

    def tokens_to_map(self, tokens: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Lay out a ViT's ``(B, P + N, D)`` tokens on the patch grid of an input size.

        Drops the prefix tokens and reshapes, as pytorch-grad-cam's ``reshape_transform``
        does: the result is ``(B, D, H / p, W / p)``. Works on activations and gradients.
        """
        return tokens_to_map(tokens, self.patch_grid(*image_size), self.num_prefix_tokens)
