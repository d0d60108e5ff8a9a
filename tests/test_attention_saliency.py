"""Saliency methods: parity with pytorch-grad-cam on real X-rays, hooks, targets, gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _attention import corr, covid_films, resnet18_1ch
from cxr_curriculum.attention import (
    BinaryLogitTarget,
    ClassTarget,
    GradCAM,
    GradCAMPlusPlus,
    Gradients,
    HiResCAM,
    IntegratedGradients,
    SmoothGrad,
    make_saliency,
)


class TinyNet(nn.Module):
    """Small smooth CNN (softplus) for the gradient methods."""

    def __init__(self, out: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.Softplus(), nn.Conv2d(8, 8, 3, padding=1)
        )
        self.head = nn.Linear(8, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.softplus(self.features(x)).mean((2, 3))).squeeze(-1)


@pytest.fixture(scope="module")
def xrays(data_root: Path) -> torch.Tensor:
    """Four real covid-chestxray images at 64 px (bilinear, antialiased)."""
    return covid_films(data_root, 4, 64)[0]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return resnet18_1ch(3)


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name",
    [
        "GradCAM",
        pytest.param("GradCAMPlusPlus", marks=pytest.mark.slow),
        pytest.param("HiResCAM", marks=pytest.mark.slow),
    ],
)
def test_cam_parity_with_pytorch_grad_cam(
    xrays: torch.Tensor, resnet: nn.Module, name: str
) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours_cls = {"GradCAM": GradCAM, "GradCAMPlusPlus": GradCAMPlusPlus, "HiResCAM": HiResCAM}
    x, model = xrays, resnet
    with torch.no_grad():
        pred = model(x).argmax(1).tolist()
    ours = ours_cls[name](model, "layer4")(x, pred)
    with getattr(pgc, name)(model, [model.layer4]) as cam:
        ref = torch.from_numpy(cam(x, [ClassifierOutputTarget(k) for k in pred]))
    checked = 0
    for i in range(len(x)):
        if ref[i].std() > 0 and ours[i].std() > 0:
            assert corr(ours[i], ref[i]) > 0.99
            checked += 1
        else:  # both empty or neither
            assert ref[i].std() == 0 and ours[i].max() == 0
    assert checked >= 2


def test_hooks_released_after_errors() -> None:
    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    layer = nn.Conv2d(1, 4, 3)
    model = nn.Sequential(layer, Boom())
    with pytest.raises(RuntimeError, match="boom"):
        GradCAM(model, layer)(torch.rand(2, 1, 8, 8), 0)
    assert not layer._forward_hooks
    model2 = nn.Sequential(layer, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="out of range"):
        GradCAM(model2, "0")(torch.rand(2, 1, 8, 8), 7)
    assert not layer._forward_hooks
    maps = GradCAM(model2, "0")(torch.rand(2, 1, 8, 8), 1)
    assert maps.shape == (2, 8, 8) and not layer._forward_hooks


def test_dotted_name_module_and_backbone_head_agree() -> None:
    from cxr_curriculum.backbones import Backbone

    bb = Backbone("resnet18", in_chans=1)
    model = nn.Sequential(bb, nn.Linear(bb.num_features, 2)).eval()
    x = torch.rand(3, 1, 64, 48)
    by_attr = GradCAM(model)(x, [0, 1, 0])  # finds bb.target_layer
    by_module = GradCAM(model, bb.target_layer)(x, [0, 1, 0])
    name = next(n for n, m in model.named_modules() if m is bb.target_layer)
    by_name = GradCAM(model, name)(x, ClassTarget([0, 1, 0]))
    assert by_attr.shape == (3, 64, 48)
    torch.testing.assert_close(by_attr, by_module)
    torch.testing.assert_close(by_attr, by_name)
    with pytest.raises(ValueError, match="no submodule"):
        GradCAM(model, "0.nope")
    with pytest.raises(ValueError, match="target_layer"):
        GradCAM(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_model_state_untouched() -> None:
    model = TinyNet().train()
    model.requires_grad_(False)  # a frozen model still gets maps
    maps = GradCAM(model, "features.2")(torch.rand(2, 1, 16, 16), 0)
    assert maps.shape == (2, 16, 16)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


def test_binary_logit_target_negative_logit() -> None:
    torch.manual_seed(1)
    net = TinyNet(out=1)
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        net.head.bias.fill_(-5.0)  # every logit negative
        assert (net(x) < 0).all()
    neg = Gradients(net)(x, BinaryLogitTarget(-1))
    pos = Gradients(net)(x, BinaryLogitTarget(1))
    assert neg.abs().sum() > 0
    torch.testing.assert_close(neg, pos)  # |grad| of -f equals |grad| of f
    # Grad-CAM: explaining -f flips the channel weights; maps differ and are non-empty.
    cam_neg = GradCAM(net, "features.2")(x, BinaryLogitTarget(-1))
    cam_pos = GradCAM(net, "features.2")(x, BinaryLogitTarget(1))
    negated = GradCAM(nn.Sequential(net, _Negate()), "0.features.2")(x, BinaryLogitTarget(1))
    torch.testing.assert_close(cam_neg, negated)
    assert not torch.allclose(cam_neg, cam_pos)
    # None picks the sign of the logit per image: here -1 everywhere.
    torch.testing.assert_close(GradCAM(net, "features.2")(x), cam_neg)
    with pytest.raises(ValueError, match="single-output"):
        BinaryLogitTarget(1)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="sign"):
        BinaryLogitTarget(0)


class _Negate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def test_gradients_match_per_image_autograd() -> None:
    net = TinyNet()
    x = torch.rand(3, 1, 12, 10)
    maps = Gradients(net)(x, [1, 0, 1])
    for i, k in enumerate([1, 0, 1]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        net(xi)[0, k].backward()
        assert xi.grad is not None
        torch.testing.assert_close(maps[i], xi.grad[0, 0].abs())


def test_integrated_gradients_completeness() -> None:
    net = TinyNet()
    x = torch.rand(2, 1, 12, 12)
    ig = IntegratedGradients(net, steps=32)(x, 1)
    with torch.no_grad():
        delta = net(x)[:, 1] - net(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(ig.sum((1, 2)), delta, rtol=2e-2, atol=1e-4)


def test_smoothgrad_reproducible_and_zero_noise_is_gradients() -> None:
    net = TinyNet()
    x = torch.rand(2, 1, 10, 10)
    a = SmoothGrad(net, n_samples=3, seed=5)(x, 0)
    torch.testing.assert_close(a, SmoothGrad(net, n_samples=3, seed=5)(x, 0))
    assert not torch.allclose(a, SmoothGrad(net, n_samples=3, seed=6)(x, 0))
    torch.testing.assert_close(SmoothGrad(net, 2, noise_level=0.0)(x, 0), Gradients(net)(x, 0))


def test_factory_and_validation() -> None:
    net = TinyNet()
    assert isinstance(make_saliency("hirescam", net, "features.2"), HiResCAM)
    with pytest.raises(ValueError, match="choose from"):
        make_saliency("lime", net)
    with pytest.raises(ValueError, match="no target_layer"):
        make_saliency("gradients", net, "features.2")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        Gradients(net)(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match=">= 1"):
        IntegratedGradients(net, steps=0)
