"""Projection, prediction and classification heads of the SSL methods.

Every joint-embedding head is a :class:`ProjectionHead` built from a list of blocks
``(in_dim, out_dim, batch_norm, activation)``; each subclass quotes the paper's head.
Pretext tasks use :class:`ClassificationHead` (and :class:`JigsawHead`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BYOLPredictionHead",
    "BYOLProjectionHead",
    "BarlowTwinsProjectionHead",
    "ClassificationHead",
    "DINOProjectionHead",
    "JigsawHead",
    "MoCoV2ProjectionHead",
    "ProjectionHead",
    "SimCLRProjectionHead",
    "SimSiamPredictionHead",
    "SimSiamProjectionHead",
    "VICRegProjectionHead",
]

Block = tuple[int, int, "nn.Module | None", "nn.Module | None"]


def _check_dims(**dims: int) -> None:
    for name, value in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


class ProjectionHead(nn.Module):
    """A stack of ``Linear -> [BatchNorm1d] -> [activation]`` blocks.

    Args:
        blocks: ``(in_dim, out_dim, batch_norm or None, activation or None)`` per layer.
            A linear layer followed by batch norm has no bias (the norm's shift replaces it).

    Shapes:
        ``(B, blocks[0].in_dim) -> (B, blocks[-1].out_dim)``.
    """

    def __init__(self, blocks: Sequence[Block]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("a ProjectionHead needs at least one block")
        layers: list[nn.Module] = []
        prev_out: int | None = None
        for in_dim, out_dim, norm, act in blocks:
            _check_dims(in_dim=in_dim, out_dim=out_dim)
            if prev_out is not None and in_dim != prev_out:
                raise ValueError(f"block input {in_dim} does not match previous output {prev_out}")
            layers.append(nn.Linear(in_dim, out_dim, bias=norm is None))
            if norm is not None:
                layers.append(norm)
            if act is not None:
                layers.append(act)
            prev_out = out_dim
        self.layers = nn.Sequential(*layers)
        self.in_dim = blocks[0][0]
        self.out_dim = blocks[-1][1]

    def forward(self, x: Tensor) -> Tensor:
        """Project ``x`` of shape ``(B, in_dim)`` to ``(B, out_dim)``."""
        out: Tensor = self.layers(x)
        return out


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR's head (Chen et al. 2020, arXiv 2002.05709, Sec. 2.1).

    "We use a MLP with one hidden layer to obtain z_i = g(h_i) = W(2) sigma(W(1) h_i)";
    128-d output, hidden width equal to the representation width (batch norm as in
    the released code).
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128):
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                (hidden_dim, output_dim, None, None),
            ]
        )


class MoCoV2ProjectionHead(ProjectionHead):
    """MoCo v2's head (Chen et al. 2020, arXiv 2003.04297).

    "we replace the fc head in MoCo with a 2-layer MLP head (hidden layer 2048-d,
    with ReLU)"; 128-d output, no batch norm.
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 128):
        super().__init__(
            [
                (input_dim, hidden_dim, None, nn.ReLU(inplace=True)),
                (hidden_dim, output_dim, None, None),
            ]
        )


class BYOLProjectionHead(ProjectionHead):
    """BYOL's projector (Grill et al. 2020, arXiv 2006.07733, Sec. 3.3).

    "a linear layer with output size 4096 followed by batch normalization, rectified
    linear units (ReLU), and a final linear layer with output dimension 256".
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 4096, output_dim: int = 256):
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                (hidden_dim, output_dim, None, None),
            ]
        )


class BYOLPredictionHead(BYOLProjectionHead):
    """BYOL's predictor: "uses the same architecture" as the projector (256 -> 4096 -> 256)."""

    def __init__(self, input_dim: int = 256, hidden_dim: int = 4096, output_dim: int = 256):
        super().__init__(input_dim, hidden_dim, output_dim)


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam's projector (Chen & He 2021, arXiv 2011.10566, Sec. 4).

    "The projection MLP has BN applied to each fully-connected (fc) layer, including its
    output fc. Its output fc has no ReLU. The hidden fc is 2048-d. This MLP has 3 layers."
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 2048, output_dim: int = 2048):
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                (hidden_dim, output_dim, nn.BatchNorm1d(output_dim, affine=False), None),
            ]
        )


class SimSiamPredictionHead(ProjectionHead):
    """SimSiam's predictor: "The prediction MLP has BN applied to its hidden fc layers.

    Its output fc does not have BN or ReLU. This MLP has 2 layers. The dimension of h's
    input and output is d = 2048, and h's hidden layer's dimension is 512".
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 512, output_dim: int = 2048):
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                (hidden_dim, output_dim, None, None),
            ]
        )


class BarlowTwinsProjectionHead(ProjectionHead):
    """Barlow Twins' projector (Zbontar et al. 2021, arXiv 2103.03230, Sec. 2).

    "The projector network has three linear layers, each with 8192 output units. The
    first two layers of the projector are followed by a batch normalization layer and
    rectified linear units."
    """

    def __init__(self, input_dim: int = 2048, hidden_dim: int = 8192, output_dim: int = 8192):
        super().__init__(
            [
                (input_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                (hidden_dim, output_dim, None, None),
            ]
        )


class VICRegProjectionHead(BarlowTwinsProjectionHead):
    """VICReg's expander (Bardes et al. 2022, arXiv 2105.04906, Sec. 4.2).

    "The expander h_phi is composed of two fully-connected layers with batch normalization
    (BN) and ReLU, and a third linear layer. The sizes of all 3 layers were set to 8192."
    """


class DINOProjectionHead(nn.Module):
    """DINO's head (Caron et al. 2021, arXiv 2104.14294, Sec. 3.1 and Appendix).

    "The projection head consists of a 3-layer multi-layer perceptron (MLP) with hidden
    dimension 2048 followed by l2 normalization and a weight normalized fully connected
    layer with K dimensions". GELU activations, a 256-d bottleneck; the last layer's
    weight norm is fixed to 1 (``norm_last_layer=True`` of the official code), i.e. its
    rows are L2-normalised.

    Shapes:
        ``(B, input_dim) -> (B, output_dim)`` logits.
    """

    def __init__(
        self,
        input_dim: int = 2048,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        output_dim: int = 65536,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_dims(input_dim=input_dim, hidden_dim=hidden_dim)
        _check_dims(bottleneck_dim=bottleneck_dim, output_dim=output_dim)

        def norm() -> nn.Module | None:
            return nn.BatchNorm1d(hidden_dim) if batch_norm else None

        self.mlp = ProjectionHead(
            [
                (input_dim, hidden_dim, norm(), nn.GELU()),
                (hidden_dim, hidden_dim, norm(), nn.GELU()),
                (hidden_dim, bottleneck_dim, None, None),
            ]
        )
        self.last_layer = nn.Parameter(torch.empty(output_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_layer, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, output_dim)`` of features ``(B, input_dim)``."""
        z = F.normalize(self.mlp(x), dim=1)
        return z @ F.normalize(self.last_layer, dim=1).T


class ClassificationHead(nn.Module):
    """Linear (or one-hidden-layer MLP) classifier for a pretext task.

    Args:
        input_dim: Feature width.
        num_classes: Number of pretext classes (4 rotations, 8 positions, P permutations).
        hidden_dim: Hidden width; ``None`` gives a single linear layer.

    Shapes:
        ``(B, input_dim) -> (B, num_classes)`` logits.
    """

    def __init__(self, input_dim: int, num_classes: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        _check_dims(input_dim=input_dim, num_classes=num_classes)
        layers: list[nn.Module] = []
        if hidden_dim is not None:
            _check_dims(hidden_dim=hidden_dim)
            layers += [
                nn.Linear(input_dim, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
            input_dim = hidden_dim
        layers.append(nn.Linear(input_dim, num_classes))
        self.layers = nn.Sequential(*layers)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for features ``(B, input_dim)``."""
        out: Tensor = self.layers(x)
        return out


class JigsawHead(nn.Module):
    """Context-free network head of Noroozi & Favaro 2016 (arXiv 1603.09246, Fig. 3).

    Each tile's feature goes through a shared ``fc6`` (``tile_dim`` units, 512 in the
    paper); the ``n_tiles`` outputs are concatenated and classified by ``fc7``
    (``hidden_dim``, 4096 in the paper) and ``fc8`` (one logit per permutation).

    Shapes:
        ``(B, n_tiles, input_dim) -> (B, num_classes)``.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        n_tiles: int = 9,
        tile_dim: int = 512,
        hidden_dim: int = 4096,
    ) -> None:
        super().__init__()
        _check_dims(input_dim=input_dim, num_classes=num_classes, n_tiles=n_tiles)
        _check_dims(tile_dim=tile_dim, hidden_dim=hidden_dim)
        self.n_tiles = n_tiles
        self.fc6 = nn.Sequential(nn.Linear(input_dim, tile_dim), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(
            nn.Linear(n_tiles * tile_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Permutation logits ``(B, num_classes)`` for tile features ``(B, n_tiles, D)``."""
        if x.dim() != 3 or x.shape[1] != self.n_tiles:
            raise ValueError(f"expected (B, {self.n_tiles}, D) tile features, got {tuple(x.shape)}")
        out: Tensor = self.classifier(torch.flatten(self.fc6(x), 1))
        return out
