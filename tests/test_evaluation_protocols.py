"""Downstream protocols: logistic-regression parity, label fractions, real Kermany runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from cxr_curriculum.data import LabeledImage
from cxr_curriculum.evaluation import (
    LABEL_FRACTIONS,
    Classifier,
    EvalResult,
    FrozenFeatures,
    fine_tune,
    fit_logistic_regression,
    knn_evaluate,
    linear_probe,
    train_subset,
)


class _Bright(Dataset[LabeledImage]):
    """Synthetic two-class set: class 1 has a bright square; two images per patient."""

    classes = ("dark", "bright")

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = [i % 2 for i in range(n)]
        self.patient_ids = [f"p{seed}_{i // 2}" for i in range(n)]
        self.images = [0.3 * torch.rand(1, 40, 40, generator=g) for _ in range(n)]
        for img, y in zip(self.images, self.labels, strict=True):
            if y:
                img[:, 10:30, 10:30] += 0.6

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> LabeledImage:
        return LabeledImage(self.images[i], self.labels[i], self.patient_ids[i])


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_regression_matches_sklearn(n_classes: int) -> None:
    lm = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 120)
    x = rng.normal(size=(120, 5)) + np.eye(n_classes, 5)[y] * 1.5
    l2 = 0.05
    head, _ = fit_logistic_regression(torch.from_numpy(x), torch.from_numpy(y), n_classes, l2)
    # sklearn minimises sum CE + ||w||^2 / (2C); binary sklearn has one weight vector w,
    # the softmax pair (w1, w0) = (w/2, -w/2) pays half its penalty, hence C * 2.
    c = 1.0 / (l2 * len(y)) * (2.0 if n_classes == 2 else 1.0)
    ref = lm.LogisticRegression(C=c, tol=1e-10, max_iter=5000).fit(x, y)
    with torch.no_grad():
        ours = torch.softmax(head(torch.from_numpy(x).float()), 1).numpy()
    np.testing.assert_allclose(ours, ref.predict_proba(x), atol=2e-4)


def test_logistic_regression_rejects_bad_input() -> None:
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fit_logistic_regression(x, y + 1, 2)
    with pytest.raises(ValueError, match="l2"):
        fit_logistic_regression(x, y, 2, l2=-1.0)


def test_train_subset_fractions() -> None:
    ds = _Bright(200, seed=0)
    assert train_subset(ds, 1.0) is ds
    small, big = train_subset(ds, 0.05, seed=1), train_subset(ds, 0.5, seed=1)
    assert isinstance(small, Subset) and isinstance(big, Subset)
    assert set(small.indices) <= set(big.indices)
    assert list(train_subset(ds, 0.05, seed=1).indices) == list(small.indices)
    assert LABEL_FRACTIONS == (0.01, 0.1, 1.0)
    with pytest.raises(ValueError, match="fraction"):
        train_subset(ds, 0.0)


@pytest.mark.slow
def test_fine_tune_learns_a_separable_task_and_is_reproducible() -> None:
    train, test = _Bright(32, seed=0), _Bright(16, seed=1)
    backbone = _tiny_cnn()
    before = [p.clone() for p in backbone.parameters()]
    kw = {"image_size": 32, "batch_size": 8}
    res = fine_tune(backbone, train, test, steps=40, lr=3e-2, **kw)
    assert isinstance(res, EvalResult) and isinstance(res.model, Classifier)
    assert res.metrics()["accuracy"] == 1.0 and res.metrics()["auroc"] == 1.0
    assert res.train_loss[-1] < res.train_loss[0]
    assert all(torch.equal(a, b) for a, b in zip(before, backbone.parameters(), strict=True))
    one = fine_tune(backbone, train, test, steps=3, seed=0, **kw)
    assert torch.equal(one.scores, fine_tune(backbone, train, test, steps=3, seed=0, **kw).scores)
    assert not torch.equal(
        one.scores, fine_tune(backbone, train, test, steps=3, seed=1, **kw).scores
    )
    with pytest.raises(ValueError, match="lr"):
        fine_tune(backbone, train, test, lr=0.0)


def test_linear_probe_and_knn_on_separable_features() -> None:
    train, test = _Bright(40, seed=0), _Bright(20, seed=1)

    class MeanFeature(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.stack([x.mean((1, 2, 3)), x[:, :, 10:30, 10:30].mean((1, 2, 3))], 1)

    probe = linear_probe(MeanFeature(), train, test, image_size=40)
    assert probe.metrics()["accuracy"] == 1.0 and probe.n_train == 40
    assert torch.allclose(probe.scores.sum(1), torch.ones(20))
    assert probe.model is not None
    with torch.no_grad():
        direct = torch.softmax(probe.model(torch.stack([test[i].image for i in range(20)])), 1)
    assert torch.allclose(direct, probe.scores, atol=1e-5)
    ci = probe.confidence_interval("accuracy", n_resamples=50)
    assert ci.low == ci.high == 1.0  # every resample is classified perfectly
    with pytest.raises(ValueError, match="unknown metric"):
        probe.confidence_interval("precision")
    knn = knn_evaluate(MeanFeature(), train, test, image_size=40, k=5)
    assert knn.metrics()["accuracy"] == 1.0 and knn.protocol == "knn"
    assert knn.patient_ids == tuple(test.patient_ids)


@pytest.fixture(scope="module")
def kermany_small(data_root: Path) -> tuple[Dataset[LabeledImage], Subset[LabeledImage]]:
    from cxr_curriculum.data import KermanyPneumonia

    def first(ds: KermanyPneumonia, n: int) -> Subset[LabeledImage]:
        return Subset(
            ds, [i for c in (0, 1) for i in [j for j, y in enumerate(ds.labels) if y == c][:n]]
        )

    root = data_root / "kermany-pneumonia"
    return first(KermanyPneumonia(root, split="train"), 20), first(
        KermanyPneumonia(root, split="test"), 8
    )


@pytest.mark.realdata
@pytest.mark.slow
def test_protocols_on_real_kermany_images(kermany_small: tuple[Dataset, Subset]) -> None:
    from cxr_curriculum.backbones import Backbone

    train, test = kermany_small
    backbone = Backbone("resnet18", in_chans=1)
    kw = {"fraction": 0.5, "seed": 0, "image_size": 32}
    results = [
        knn_evaluate(backbone, train, test, k=10, **kw),
        linear_probe(backbone, train, test, max_iter=50, **kw),
        fine_tune(backbone, train, test, steps=2, batch_size=10, **kw),
    ]
    for res in results:
        assert 20 <= res.n_train <= 24  # half of 40 images, whole patients per label
        assert res.scores.shape == (16, 2) and res.patient_ids is not None
        metrics = res.metrics()
        assert set(metrics) == {
            "auroc",
            "accuracy",
            "balanced_accuracy",
            "f1",
            "sensitivity",
            "specificity",
        }
        assert all(np.isfinite(v) for v in metrics.values())
        assert all(np.isfinite(v) for v in res.train_loss)
    cis = results[1].confidence_intervals(n_resamples=100)
    assert cis["auroc"].low <= cis["auroc"].estimate <= cis["auroc"].high
    assert results[0].to_dict()["n_test"] == 16


@pytest.mark.realdata
def test_precomputed_features_give_the_same_results(kermany_small: tuple[Dataset, Subset]) -> None:
    from cxr_curriculum.backbones import Backbone

    train, test = kermany_small
    torch.manual_seed(0)
    backbone = Backbone("resnet18", in_chans=1)
    calls = 0
    forward = backbone.forward

    def counted(x: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return forward(x)

    backbone.forward = counted  # type: ignore[method-assign]
    feats = FrozenFeatures.compute(backbone, train, test, image_size=32, batch_size=64)
    assert feats.train_x.shape == (40, backbone.num_features) and feats.test_x.shape[0] == 16
    after_compute = calls
    for fraction in (0.5, 1.0):
        kw = {"fraction": fraction, "seed": 0, "image_size": 32}
        for protocol in (knn_evaluate, linear_probe):
            cached = protocol(backbone, train, test, features=feats, **kw)
            assert calls == after_compute  # no forward pass with features given
            fresh = protocol(backbone, train, test, **kw)
            assert cached.n_train == fresh.n_train
            torch.testing.assert_close(cached.scores, fresh.scores, atol=1e-5, rtol=1e-4)
            assert torch.equal(cached.labels, fresh.labels)
            calls = after_compute


def test_precomputed_features_must_match_the_call() -> None:
    train, test = _Bright(10, seed=0), _Bright(6, seed=1)
    feats = FrozenFeatures.compute(_tiny_cnn(), train, test, image_size=40)
    with pytest.raises(ValueError, match="train_ds, which has 12 items"):
        knn_evaluate(_tiny_cnn(), _Bright(12, seed=0), test, image_size=40, features=feats)
    with pytest.raises(ValueError, match="image_size=32"):
        linear_probe(_tiny_cnn(), train, test, image_size=32, features=feats)


def test_features_for_a_label_fraction_only_extract_that_subset() -> None:
    train, test = _Bright(40, seed=0), _Bright(8, seed=1)
    net = _tiny_cnn().eval()
    seen = 0

    def count(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        nonlocal seen
        seen += args[0].shape[0]

    net.register_forward_pre_hook(count)
    feats = FrozenFeatures.compute(net, train, test, image_size=40, fraction=0.5, seed=3)
    subset = train_subset(train, 0.5, seed=3)
    assert seen == len(subset) + len(test) < len(train) + len(test)
    assert feats.train_x.shape[0] == len(subset) and feats.train_size == 40
    for fraction in (0.5, 0.25):  # nested subsets: the 25 % rows are among the 50 % rows
        kw = {"fraction": fraction, "seed": 3, "image_size": 40}
        cached = knn_evaluate(net, train, test, k=3, features=feats, **kw)
        fresh = knn_evaluate(net, train, test, k=3, **kw)
        torch.testing.assert_close(cached.scores, fresh.scores)
        assert cached.n_train == fresh.n_train == len(train_subset(train, fraction, 3))
    with pytest.raises(ValueError, match="computed with a label fraction"):
        linear_probe(net, train, test, image_size=40, features=feats)  # needs all 40
    with pytest.raises(ValueError, match="same seed"):
        knn_evaluate(net, train, test, fraction=0.5, seed=4, image_size=40, features=feats)
