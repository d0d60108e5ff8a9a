"""Shared pieces of the lung-attention tests: real films with V7 masks, small models."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def covid_films(root: Path, n: int, size: int) -> tuple[Tensor, Tensor, list[str]]:
    """The first ``n`` covid-chestxray films with V7 lung masks, at ``size`` px.

    Returns:
        Images ``(n, 1, size, size)`` (bilinear, antialiased; not clamped), masks
        ``(n, size, size)`` uint8 with the V7 values 0 / 1 / 255 (nearest-exact), and
        the patient ids.
    """
    from cxr_curriculum.data import CovidChestXray

    ds = CovidChestXray(root / "covid-chestxray", with_masks=True)
    items = [ds[i] for i in range(n)]
    images = torch.cat([F.interpolate(it.image[None], (size, size), mode="bilinear",
                                      antialias=True) for it in items])  # fmt: skip
    masks = torch.cat([F.interpolate(it.mask[None].float(), (size, size), mode="nearest-exact")
                       for it in items])  # fmt: skip
    return images, masks[:, 0].byte(), [it.patient_id for it in items]


class SmallNet(nn.Module):
    """Two strided convolutions and a linear head: a 16x16 CAM map (``features.2``) at 64 px.

    With ``out`` > 2 it is a multi-label model: one logit per finding.
    """

    def __init__(self, out: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()
        )
        self.fc = nn.Linear(16, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def resnet18_1ch(num_classes: int) -> nn.Module:
    """A torchvision ResNet-18 with a one-channel stem, seeded (0), in eval mode."""
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return m.eval()


def corr(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two maps (flattened)."""
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
