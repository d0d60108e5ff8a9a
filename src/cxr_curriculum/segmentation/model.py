"""The lung-segmentation network: an smp U-Net wrapped with its input normalisation.

The network follows Ronneberger et al., "U-Net: Convolutional Networks for Biomedical
Image Segmentation" (MICCAI 2015, arXiv:1505.04597) as implemented by
segmentation-models-pytorch, with a small RegNetX-200MF encoder (Radosavovic et al.,
"Designing Network Design Spaces", CVPR 2020, arXiv:2003.13678) trained from scratch on
one-channel radiographs. Each image is standardised by its own mean and standard
deviation inside the module, so the network takes the project's ``[0, 1]`` images as is.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["CLASSES", "LungNet", "ModelSpec", "count_parameters"]

#: Output classes of the network, in channel order.
CLASSES: tuple[str, ...] = ("background", "right_lung", "left_lung")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a lung network (enough to rebuild it before loading weights).

    Attributes:
        arch: smp architecture class name (``"Unet"``).
        encoder: smp encoder name.
        decoder_channels: Channels of the decoder blocks, deepest first.
        classes: Number of output classes (background, right lung, left lung).
    """

    arch: str = "Unet"
    encoder: str = "timm-regnetx_002"
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8)
    classes: int = 3

    def __post_init__(self) -> None:
        if self.arch != "Unet":
            raise ValueError(f"arch must be 'Unet' (the only one trained), got {self.arch!r}")
        if len(self.decoder_channels) != 5 or min(self.decoder_channels) < 1:
            raise ValueError(
                f"decoder_channels must be 5 positive ints, got {self.decoder_channels!r}"
            )
        if self.classes != len(CLASSES):
            raise ValueError(f"classes must be {len(CLASSES)} {CLASSES}, got {self.classes}")


class LungNet(nn.Module):
    """U-Net that maps ``[0, 1]`` images to three-class lung logits.

    Args:
        spec: The architecture; the default is the bundled model's.

    Shapes:
        ``forward``: ``(B, 1, H, W)`` float in ``[0, 1]`` -> ``(B, 3, H, W)`` logits,
        H and W multiples of 32.
    """

    def __init__(self, spec: ModelSpec | None = None) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp  # heavy import, only when a net is built

        self.spec = spec if spec is not None else ModelSpec()
        with warnings.catch_warnings():
            # smp >= 0.5 deprecates the ``timm-`` encoder names; the weights' keys use it.
            warnings.filterwarnings("ignore", message=".*timm-. encoders are deprecated")
            self.net = smp.Unet(
                self.spec.encoder,
                encoder_weights=None,
                in_channels=1,
                classes=self.spec.classes,
                decoder_channels=self.spec.decoder_channels,
            )

    def forward(self, x: Tensor) -> Tensor:
        """Standardise each image by its own statistics and return logits ``(B, 3, H, W)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a (B, 1, H, W) batch, got shape {tuple(x.shape)}")
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
        out: Tensor = self.net((x - mean) / std)
        return out


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(int(p.numel()) for p in model.parameters())
