"""``Backbone``: a one-channel torchvision or timm CNN, or a timm ViT, with a small contract."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._io import load_backbone, save_backbone
from ._loading import WeightsArg, load_weights
from ._parts import Parts
from ._timm import TIMM_PREFIX, build_timm, timm_names
from ._token_model import TokenModelMixin
from ._torchvision import TORCHVISION_NAMES, build_torchvision
from ._vit import TimmTokens

__all__ = ["IMAGENET_GRAY_NORM", "POOLS", "Backbone", "WeightsArg"]

#: Pooling of :meth:`Backbone.forward`: ``"avg"`` (mean of the feature map, or of a ViT's
#: patch tokens) or ``"token"`` (a ViT's CLS token).
POOLS = ("avg", "token")

#: Grey-level mean and std of ImageNet (the RGB means and stds averaged), used to
#: standardise ``[0, 1]`` X-rays inside :meth:`Backbone.forward_features`.
IMAGENET_GRAY_NORM: tuple[float, float] = (0.449, 0.226)


class _DefaultNorm:
    """Type of :data:`_DEFAULT_NORM`, the ``input_norm`` a caller gets by passing none."""

    def __repr__(self) -> str:
        return "<default: the pretrained weights' statistics, else IMAGENET_GRAY_NORM>"


#: ``input_norm`` not given: timm's pretrained statistics for ``weights="imagenet"`` on a
#: ``timm:`` model, :data:`IMAGENET_GRAY_NORM` otherwise.
_DEFAULT_NORM = _DefaultNorm()


def _build(name: str, in_chans: int) -> Parts:
    if name.startswith(TIMM_PREFIX):
        return build_timm(name.removeprefix(TIMM_PREFIX), in_chans)
    if name in TORCHVISION_NAMES:
        return build_torchvision(name, in_chans)
    raise ValueError(
        f"unknown backbone {name!r}: use a torchvision name {TORCHVISION_NAMES} or "
        f"'timm:<model name>' for any convolutional timm model (e.g. 'timm:resnet10t') or "
        "timm ViT (e.g. 'timm:vit_small_patch16_224')"
    )


class Backbone(TokenModelMixin, nn.Module):
    """A CNN or ViT feature extractor for ``(B, in_chans, H, W)`` X-rays in ``[0, 1]``.

    Wraps (does not subclass) a torchvision model (``"resnet18"``, ``"resnet34"``,
    ``"resnet50"``, ``"densenet121"``, ``"efficientnet_b0"``, ... see :meth:`available`),
    any convolutional timm model named ``"timm:<name>"`` (e.g. ``"timm:resnet10t"``), or a
    timm Vision Transformer (``"timm:vit_tiny_patch16_224"``, ``"timm:vit_small_patch16_224"``,
    ``"timm:vit_base_patch16_224"``, ``"timm:vit_small_patch8_224"``, ``"timm:deit_*"``).
    The first convolution (a ViT's patch embedding) takes ``in_chans`` channels; RGB
    weights are adapted by summing the kernels (exact for a grey image replicated to RGB),
    as in timm's ``adapt_input_conv``. Inputs are standardised inside the backbone with
    ``input_norm = (mean, std)`` (by default ImageNet grey statistics, or for a ``timm:``
    model with ``weights="imagenet"`` the statistics its pretrained weights expect), so
    callers pass images in ``[0, 1]`` as the rest of the package produces them.

    ViTs (:attr:`is_token_model`) take any image whose sides the patch size divides
    (positional embeddings resampled to the grid as timm's ``dynamic_img_size`` does);
    :meth:`forward_tokens` gives the token sequence ``(B, P + N, D)``,
    :meth:`forward_features` the patch tokens laid out on the patch grid
    ``(B, D, H / p, W / p)``, :meth:`forward` the CLS token (``pool="token"``, the
    default) or the mean of the patch tokens (``pool="avg"``), and :attr:`target_layer`
    is the last block's ``norm1`` (its output is tokens: CAM methods reshape them with
    :meth:`tokens_to_map`).

    Args:
        name: Architecture name (see above).
        in_chans: Input channels (1 for X-rays).
        weights: ``None`` (random init), ``"imagenet"`` (torchvision's default ImageNet
            weights from the torch hub cache, downloaded if online; for ``timm:`` names
            timm's default pretrained weights), a path to a ``.safetensors`` or torch
            checkpoint (read with ``weights_only=True``), or a state dict. Checkpoints may
            use this class's keys (``body.*``, as :meth:`save` writes) or the library's own
            keys (``conv1.weight``; classifier keys are ignored); a 3-channel first conv is
            adapted to ``in_chans``.
        input_norm: ``(mean, std)`` applied to inputs, or ``None`` for no standardisation.
            Not given: :data:`IMAGENET_GRAY_NORM`, except for a ``timm:`` model with
            ``weights="imagenet"``, which takes the grey-level mean and std of timm's
            pretrained config (RGB values averaged; ``(0.5, 0.5)`` for the augreg
            ``vit_tiny/small/base_patch16_224``, ImageNet's for DeiT and DINO weights).
            Recorded in the sidecar (:attr:`input_norm`).
        seed: Seed of the random initialisation (``None``: torch's global RNG, as
            torchvision does). With a seed the weights do not depend on, and do not
            consume, the global RNG; the seed is recorded in the sidecar by :meth:`save`.
        pool: Pooling of :meth:`forward` (:data:`POOLS`): ``None`` is ``"avg"`` for CNNs
            and ``"token"`` (the CLS token, as timm's and DINO's ViTs) for ViTs with a
            CLS token; ``"avg"`` averages a ViT's patch tokens (MAE's fine-tuning choice).
            Recorded in the sidecar.

    Raises:
        ValueError: Unknown name, bad ``in_chans``/``input_norm``/``pool``, or weights that
            do not match the architecture (the message lists missing/unexpected keys).
        WeightsNotAvailableError: ``weights="imagenet"`` offline without a cached file.

    Example:
        >>> bb = Backbone("resnet18")
        >>> bb(torch.rand(2, 1, 64, 64)).shape
        torch.Size([2, 512])
        >>> bb.forward_features(torch.rand(2, 1, 64, 64)).shape
        torch.Size([2, 512, 2, 2])
    """

    def __init__(
        self,
        name: str,
        in_chans: int = 1,
        weights: WeightsArg = None,
        *,
        input_norm: tuple[float, float] | _DefaultNorm | None = _DEFAULT_NORM,
        seed: int | None = None,
        pool: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
        if input_norm is not None and not isinstance(input_norm, _DefaultNorm):
            if len(input_norm) != 2 or not float(input_norm[1]) > 0:
                raise ValueError(f"input_norm must be (mean, std) with std > 0, got {input_norm}")
            input_norm = (float(input_norm[0]), float(input_norm[1]))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
        if seed is None:
            parts = _build(name, in_chans)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                parts = _build(name, in_chans)
        self.seed = seed
        self._name = name
        self._in_chans = in_chans
        self._num_features = parts.num_features
        if isinstance(input_norm, _DefaultNorm):
            imagenet = isinstance(weights, str) and weights == "imagenet"
            input_norm = (imagenet and parts.pretrained_norm) or IMAGENET_GRAY_NORM
        self.input_norm: tuple[float, float] | None = input_norm
        self.body = parts.body
        self.pool = self._check_pool(pool)
        # Stored by name: registering the module twice would duplicate state-dict keys.
        self._target_name = "body." + next(
            n for n, m in parts.body.named_modules() if m is parts.target_layer
        )
        self.weights_source: str | None = None
        if weights is not None:
            self.weights_source = load_weights(parts, weights, in_chans, name)

    def _check_pool(self, pool: str | None) -> str:
        has_cls = isinstance(self.body, TimmTokens) and self.body.has_class_token
        if pool is None:
            return "token" if has_cls else "avg"
        if pool not in POOLS or (pool == "token" and not has_cls):
            allowed = POOLS if has_cls else ("avg",)
            raise ValueError(f"pool={pool!r} is not available for {self._name!r}; use {allowed}")
        return pool

    @property
    def name(self) -> str:
        """The architecture name given at construction (e.g. ``"resnet18"``)."""
        return self._name

    @property
    def in_chans(self) -> int:
        """Input channels."""
        return self._in_chans

    @property
    def num_features(self) -> int:
        """Channels ``C`` of the feature map, and size of the pooled features."""
        return self._num_features

    @property
    def target_layer(self) -> nn.Module:
        """The module whose output is the last feature map (what CAM methods explain)."""
        return self.get_submodule(self._target_name)

    @property
    def fine_target_layer(self) -> nn.Module:
        """A layer one stage before :attr:`target_layer`, with a map twice as fine.

        At CPU-sized inputs (64 px) a ResNet's last map is 2x2, too coarse for Grad-CAM to
        tell the lungs from the rest; ``layer3`` gives 4x4. Backbones without a named
        earlier stage (DenseNet, EfficientNet, timm CNNs) and ViTs (every block works on
        the same patch grid) return :attr:`target_layer`.
        """
        layer = getattr(self.body, "layer3", None)
        return layer if isinstance(layer, nn.Module) else self.target_layer

    # ------------------------------------------------------------------ forward
    def _standardise(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self._in_chans:
            raise ValueError(
                f"{self._name} expects (B, {self._in_chans}, H, W) input, got {tuple(x.shape)}"
            )
        if self.input_norm is not None:
            x = (x - self.input_norm[0]) / self.input_norm[1]
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        """Last feature map.

        Args:
            x: Images ``(B, in_chans, H, W)`` in ``[0, 1]`` (any memory format).

        Returns:
            Feature map ``(B, num_features, h, w)``, e.g. ``h = H / 32`` for ResNets; for a
            ViT the final-normed patch tokens on the patch grid, ``h = H / patch_size``.
        """
        out: Tensor = self.body(self._standardise(x))
        if out.ndim != 4:
            raise ValueError(
                f"{self._name} returned features of shape {tuple(out.shape)}, not a (B, C, h, w) "
                "map; only convolutional models and ViTs are supported"
            )
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features.

        Args:
            x: Images ``(B, in_chans, H, W)`` in ``[0, 1]``.

        Returns:
            ``(B, num_features)``: the spatial mean of :meth:`forward_features` (``pool="avg"``),
            or a ViT's CLS token (``pool="token"``).
        """
        if isinstance(self.body, TimmTokens):
            tokens = self.forward_tokens(x)
            if self.pool == "token":
                return tokens[:, 0]
            return tokens[:, self.body.num_prefix_tokens :].mean(dim=1)
        return torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1)

    @staticmethod
    def available(timm: bool = False) -> list[str]:
        """Backbone names: the torchvision ones, plus every ``"timm:<name>"`` if ``timm``.

        timm names include token (transformer) models; ViTs (``vit_*``, ``deit_*``) are
        supported, other token models are refused at construction.
        """
        names = list(TORCHVISION_NAMES)
        return names + timm_names() if timm else names

    def extra_repr(self) -> str:
        return (
            f"name={self._name!r}, in_chans={self._in_chans}, num_features={self._num_features}, "
            f"pool={self.pool!r}, weights={self.weights_source!r}"
        )

    def save(self, path: str | os.PathLike[str], **meta: Any) -> Path:
        """Write the weights as safetensors plus a JSON sidecar (``path.with_suffix('.json')``).

        Both files are written atomically; the sidecar records the weights file's sha256,
        which loading verifies.

        Args:
            path: Weights file, conventionally ``*.safetensors``.
            **meta: JSON-serialisable free-form provenance (e.g. ``produced_by="SimCLR stage 2"``).

        Returns:
            The weights file's path (``Path(path)``); its sidecar is
            ``path.with_suffix(".json")``.

        Raises:
            ValueError: ``meta`` is not JSON-serialisable or ``path`` ends in ``.json``.
            ArtefactWriteError: The disk is full or the folder is not writable.
        """
        return save_backbone(self, path, meta)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Backbone:
        """Rebuild a backbone written by :meth:`save` (architecture from the sidecar).

        The result is the same as ``Backbone(name, weights=path, ...)`` with the sidecar's
        settings: its :attr:`weights_source` is ``"file:<file name>"``.

        Raises:
            FileNotFoundError: Neither the file nor its sidecar exists.
            ArtefactIntegrityError: The file does not match the sha256 its sidecar or
                header records (changed, corrupted or cut short), or the sidecar is not
                valid JSON; the message names the file.
            ValueError: The file exists but was not written by :meth:`save` (a torch
                checkpoint, a safetensors file without our header); the message says to
                load it with ``Backbone(name, weights=path)``.
        """
        return load_backbone(cls, path)
