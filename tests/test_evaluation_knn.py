"""kNN classification and feature extraction: brute-force reference and real X-rays."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from cxr_curriculum.evaluation import UNLABELLED, extract_features, knn_accuracy, knn_predict


def _reference_knn(
    train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int, t: float, n_classes: int
) -> np.ndarray:
    """One test row at a time, straight from Wu et al. 2018 Sec. 3.4."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    out = np.zeros((len(test), n_classes))
    for i, x in enumerate(test):
        sims = train @ (x / np.linalg.norm(x))
        order = np.argsort(-sims, kind="stable")[:k]
        for j in order:
            out[i, labels[j]] += math.exp(sims[j] / t)
        out[i] /= out[i].sum()
    return out


@pytest.mark.parametrize(("k", "t"), [(1, 0.07), (5, 0.07), (7, 0.5), (200, 1.0)])
def test_knn_predict_matches_brute_force(k: int, t: float) -> None:
    g = torch.Generator().manual_seed(1)
    train = torch.randn(60, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (60,), generator=g)
    test = torch.randn(25, 8, generator=g, dtype=torch.float64)
    got = knn_predict(train, labels, test, k=k, temperature=t, chunk_size=7)
    ref = _reference_knn(train.numpy(), labels.numpy(), test.numpy(), min(k, 60), t, 3)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-5)
    assert torch.allclose(got.sum(1), torch.ones(25, dtype=got.dtype))


def test_knn_accuracy_separable_and_scale_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    labels = torch.arange(3).repeat_interleave(20)
    feats = centres[labels] + 0.3 * torch.randn(60, 3, generator=g)
    test_labels = torch.arange(3).repeat(5)
    test = centres[test_labels] + 0.3 * torch.randn(15, 3, generator=g)
    assert knn_accuracy(feats, labels, test, test_labels, k=5) == 1.0
    # Cosine similarity ignores the norm of each feature.
    assert knn_accuracy(feats * 7.0, labels, test * 0.1, test_labels, k=5) == 1.0
    # Wrong labels for the test set: accuracy 0.
    assert knn_accuracy(feats, labels, test, (test_labels + 1) % 3, k=5) == 0.0


def test_knn_is_stable_at_low_temperature() -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    probs = knn_predict(
        train, torch.tensor([0, 1]), torch.tensor([[1.0, 0.1]]), k=2, temperature=1e-4
    )
    assert torch.isfinite(probs).all()
    assert probs[0, 0] > 0.99


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be"),
        ({"temperature": 0.0}, "temperature"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_knn_predict_rejects_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=match):
        knn_predict(x, torch.tensor([0, 1, 0, 1]), x, **kwargs)  # type: ignore[arg-type]


def test_knn_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="dims differ"):
        knn_predict(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), torch.randn(2, 5))
    with pytest.raises(ValueError, match="train_labels"):
        knn_predict(torch.randn(4, 3), torch.zeros(3, dtype=torch.long), torch.randn(2, 3))
    with pytest.raises(ValueError, match=">= 0"):
        knn_predict(torch.randn(2, 3), torch.tensor([0, -1]), torch.randn(2, 3))
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy(
            torch.randn(4, 3),
            torch.zeros(4, dtype=torch.long),
            torch.randn(2, 3),
            torch.zeros(3, dtype=torch.long),
        )


class _Item(NamedTuple):
    image: Tensor
    label: int
    patient_id: str


class _ListDataset(torch.utils.data.Dataset[_Item]):
    def __init__(self, items: list[_Item]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> _Item:
        return self.items[i]


class _MeanStd(nn.Module):
    """A parameter-free 'backbone' with features we can compute by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1)


def test_extract_features_order_labels_and_mode() -> None:
    g = torch.Generator().manual_seed(0)
    items = [_Item(torch.rand(1, 40 + i, 50, generator=g), i % 2, f"p{i}") for i in range(7)]
    model = _MeanStd().train()
    feats, labels = extract_features(model, _ListDataset(items), image_size=32, batch_size=3)
    assert feats.shape == (7, 2) and feats.dtype == torch.float32
    assert labels.tolist() == [i % 2 for i in range(7)]
    assert model.training  # the caller's mode is restored
    assert not torch.is_inference_mode_enabled()
    means = torch.tensor([it.image.mean().item() for it in items])
    assert torch.allclose(feats[:, 0], means, atol=0.02)  # resizing keeps the mean roughly


def test_extract_features_unlabelled_and_errors() -> None:
    images = [torch.rand(1, 32, 32) for _ in range(3)]
    feats, labels = extract_features(_MeanStd(), images, image_size=32, normalize=True)  # type: ignore[arg-type]
    assert (labels == UNLABELLED).all()
    assert torch.allclose(feats.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="empty"):
        extract_features(_MeanStd(), [], image_size=32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size"):
        extract_features(_MeanStd(), images, image_size=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        extract_features(nn.Identity(), images, image_size=32)  # type: ignore[arg-type]


@pytest.mark.realdata
def test_knn_on_real_kermany_features_is_finite(data_root: Path) -> None:
    from PIL import Image

    items = []
    for label, cls in enumerate(["NORMAL", "PNEUMONIA"]):
        files = sorted((data_root / "kermany-pneumonia" / "train" / cls).glob("*.jpeg"))[:12]
        for f in files:
            arr = np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255.0
            items.append(_Item(torch.from_numpy(arr)[None], label, f.stem))
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    feats, labels = extract_features(net, _ListDataset(items), image_size=32, batch_size=8)
    assert feats.shape == (24, 8) and torch.isfinite(feats).all()
    idx = torch.arange(24)
    train, test = idx % 3 != 0, idx % 3 == 0
    acc = knn_accuracy(feats[train], labels[train], feats[test], labels[test], k=5)
    assert 0.0 <= acc <= 1.0
