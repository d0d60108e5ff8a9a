"""Backbone contract, parametrised over every supported family (tiny 64 px inputs).

ViTs (``timm:vit_*``) keep the same contract with two documented differences: their
feature map is the patch-token grid (``64 / patch`` cells a side) and their pooled output is
the CLS token; their CAM layer (the last block's ``norm1``) returns tokens, which
``Backbone.tokens_to_map`` lays out on that grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision.models as tvm
from torch import Tensor, nn

from cxr_curriculum.backbones import IMAGENET_GRAY_NORM, Backbone

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = [
    "resnet18",
    "resnet34",
    "resnet50",
    "densenet121",
    "efficientnet_b0",
    "timm:resnet10t",
    "timm:vit_tiny_patch16_224",
    "timm:vit_small_patch8_224",
]
SIZE = 64


def _grid(backbone: Backbone) -> int:
    """Cells per side of the last feature map at ``SIZE`` px."""
    return SIZE // (backbone.patch_size or 32)


@pytest.fixture(scope="module", params=NAMES)
def backbone(request: pytest.FixtureRequest) -> Backbone:
    torch.manual_seed(0)
    return Backbone(request.param).eval()


@pytest.fixture()
def x() -> Tensor:
    return torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _reference_rgb_model(name: str) -> tuple[nn.Module, dict[str, Tensor]]:
    """The library's own 3-channel model (random weights) and its full state dict."""
    if name.startswith("timm:"):
        arch = name.removeprefix("timm:")
        kwargs = {"dynamic_img_size": True} if arch.startswith("vit_") else {}
        model = timm.create_model(arch, in_chans=3, num_classes=0, **kwargs)
        return model.eval(), model.state_dict()
    model = tvm.get_model(name, weights=None)
    state = model.state_dict()  # includes the classifier, which Backbone must ignore
    if name.startswith("resnet"):
        model.fc = nn.Identity()
    else:
        model.classifier = nn.Identity()
    return model.eval(), state


def _layer_outputs(backbone: Backbone, layer: nn.Module, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """Outputs ``layer`` gave during one ``forward_features(x)``, and that feature map."""
    seen: list[Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            fmap = backbone.forward_features(x)
    finally:
        handle.remove()
    return seen, fmap


class TestBackboneContract:
    def test_shapes_and_attributes(self, backbone: Backbone, x: Tensor) -> None:
        with torch.no_grad():
            fmap = backbone.forward_features(x)
            pooled = backbone(x)
        c = backbone.num_features
        assert isinstance(c, int) and c > 0
        assert fmap.shape == (2, c, _grid(backbone), _grid(backbone))
        assert pooled.shape == (2, c)
        assert backbone.in_chans == 1 and backbone.name in NAMES
        first_conv = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
        assert first_conv.in_channels == 1

    def test_forward_is_mean_of_feature_map(self, backbone: Backbone, x: Tensor) -> None:
        with torch.no_grad():
            expected = backbone.forward_features(x).mean(dim=(2, 3))
            if backbone.is_token_model:  # pool="token" by default: the CLS token
                assert backbone.pool == "token"
                torch.testing.assert_close(backbone(x), backbone.forward_tokens(x)[:, 0])
                backbone.pool = "avg"  # the other setting is the mean of the patch tokens
                try:
                    torch.testing.assert_close(backbone(x), expected)
                finally:
                    backbone.pool = "token"
            else:
                torch.testing.assert_close(backbone(x), expected)

    def test_target_layer_output_is_feature_map(self, backbone: Backbone, x: Tensor) -> None:
        assert any(m is backbone.target_layer for m in backbone.modules())
        seen, fmap = _layer_outputs(backbone, backbone.target_layer, x)
        assert len(seen) == 1
        if backbone.is_token_model:  # the last block's norm1: tokens on the same patch grid
            assert backbone.target_layer is backbone.body.model.blocks[-1].norm1
            grid = backbone.tokens_to_map(seen[0], (SIZE, SIZE))
            assert grid.shape == fmap.shape
        else:
            torch.testing.assert_close(seen[0], fmap, rtol=0, atol=0)

    def test_fine_target_layer_is_finer_or_the_target(self, backbone: Backbone, x: Tensor) -> None:
        seen, fmap = _layer_outputs(backbone, backbone.fine_target_layer, x)
        assert len(seen) == 1
        if backbone.is_token_model:
            assert backbone.fine_target_layer is backbone.target_layer
        elif backbone.name.startswith("resnet"):
            assert seen[0].shape[-2:] == (2 * fmap.shape[-2], 2 * fmap.shape[-1])
        else:
            assert backbone.fine_target_layer is backbone.target_layer

    def test_gradients_reach_input_and_every_parameter(self, backbone: Backbone) -> None:
        backbone.zero_grad()
        x = torch.rand(2, 1, SIZE, SIZE, requires_grad=True)
        backbone(x).square().mean().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        no_grad = [n for n, p in backbone.named_parameters() if p.grad is None]
        assert no_grad == []
        backbone.zero_grad(set_to_none=True)

    def test_same_features_as_library_model_on_gray_replicated_to_rgb(
        self, backbone: Backbone, x: Tensor
    ) -> None:
        # Independent reference: the untouched torchvision/timm RGB model. A grey image
        # copied into R, G, B must give the same pooled features as the 1-channel model
        # whose first-conv kernels are the summed RGB kernels.
        torch.manual_seed(3)
        reference, state = _reference_rgb_model(backbone.name)
        adapted = Backbone(backbone.name, weights=state).eval()
        mean, std = IMAGENET_GRAY_NORM
        with torch.no_grad():
            expected = reference(((x - mean) / std).expand(-1, 3, -1, -1))
            torch.testing.assert_close(adapted(x), expected, rtol=1e-4, atol=1e-4)

    def test_save_and_from_file_round_trip(
        self, backbone: Backbone, x: Tensor, tmp_path: Path
    ) -> None:
        path = tmp_path / "bb.safetensors"
        assert backbone.save(path, produced_by="test", stage=2) == path and path.is_file()
        sidecar = tmp_path / "bb.json"
        info = json.loads(sidecar.read_text())
        assert info["name"] == backbone.name and info["in_chans"] == 1
        assert info["num_features"] == backbone.num_features
        assert info["meta"] == {"produced_by": "test", "stage": 2}
        assert "cxr_curriculum" in info["versions"]
        loaded = Backbone.from_file(path).eval()
        assert loaded.name == backbone.name
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), backbone(x), rtol=0, atol=0)

    def test_weights_as_state_dict_and_torch_file(
        self, backbone: Backbone, x: Tensor, tmp_path: Path
    ) -> None:
        state = {k: v.clone() for k, v in backbone.state_dict().items()}
        torch.save({"state_dict": state}, tmp_path / "ckpt.pt")
        from_dict = Backbone(backbone.name, weights=state).eval()
        from_path = Backbone(backbone.name, weights=tmp_path / "ckpt.pt").eval()
        with torch.no_grad():
            expected = backbone(x)
            torch.testing.assert_close(from_dict(x), expected, rtol=0, atol=0)
            torch.testing.assert_close(from_path(x), expected, rtol=0, atol=0)
        assert from_path.weights_source == "file:ckpt.pt"

    def test_channels_last(self, backbone: Backbone, x: Tensor) -> None:
        cl = Backbone(backbone.name, weights=backbone.state_dict()).eval()
        cl = cl.to(memory_format=torch.channels_last)
        with torch.no_grad():
            expected = backbone(x)
            out = cl(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_available_lists_required_torchvision_names_and_timm() -> None:
    names = Backbone.available()
    for required in NAMES[:5]:
        assert required in names
    assert "timm:resnet10t" in Backbone.available(timm=True)


@pytest.mark.slow
def test_every_listed_torchvision_name_builds_and_has_the_contract() -> None:
    # Builds only (no forward); the large EfficientNets take seconds to initialise.
    for name in Backbone.available():
        bb = Backbone(name)
        assert any(m is bb.target_layer for m in bb.modules()), name
        assert bb.num_features > 0


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "timm:resnet10t"])
def test_target_layer_works_with_pytorch_grad_cam(name: str, x: Tensor) -> None:
    # Independent consumer of `target_layer`: pytorch-grad-cam's hooks must capture the
    # same map as forward_features (densenet's ReLU module and timm's identity included).
    grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    bb = Backbone(name).eval()
    head = nn.Linear(bb.num_features, 2)
    model = nn.Sequential(bb, head).eval()
    with grad_cam.GradCAM(model=model, target_layers=[bb.target_layer]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(1)] * 2)
        captured = cam.activations_and_grads.activations[0]
        gradients = cam.activations_and_grads.gradients[0]
    assert maps.shape == (2, SIZE, SIZE)
    with torch.no_grad():
        fmap = bb.forward_features(x)
    torch.testing.assert_close(captured, fmap)
    # d logit_1 / d map = w_1 / (h*w) for every position: the pooled-linear head's gradient.
    expected = (head.weight[1] / (fmap.shape[2] * fmap.shape[3]))[None, :, None, None]
    torch.testing.assert_close(gradients, expected.expand_as(fmap).detach())
