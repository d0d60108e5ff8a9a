"""Backbone weights: ImageNet (offline error, hub cache), checkpoints, sidecars, adaptation.

Every test runs offline (`conftest._no_downloads`): nothing here downloads.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from timm.models import adapt_input_conv

from cxr_curriculum.backbones import (
    IMAGENET_GRAY_NORM,
    Backbone,
    WeightsNotAvailableError,
    adapt_conv_weight,
    load_checkpoint,
    read_sidecar,
)
from cxr_curriculum.backbones import _weights as weights_module

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME; returns its hub checkpoint folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return Path(torch.hub.get_dir()) / "checkpoints"


def _imagenet_file_name(name: str) -> str:
    return os.path.basename(urlparse(tvm.get_model_weights(name).DEFAULT.url).path)


def test_imagenet_offline_fails_at_once_with_file_and_folder(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dead(*args: object, **kwargs: object) -> socket.socket:
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", dead)
    start = time.monotonic()
    with pytest.raises(WeightsNotAvailableError) as err:
        Backbone("resnet18", weights="imagenet")
    assert time.monotonic() - start < 5.0
    message = str(err.value)
    assert _imagenet_file_name("resnet18") in message  # resnet18-f37072fd.pth
    assert str(torch_home) in message
    assert "weights=" in message


def test_imagenet_failed_download_is_the_same_clear_error(
    torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host answers but the download itself fails (proxy, firewall, truncated file).
    monkeypatch.setattr(weights_module, "can_reach", lambda url, timeout=3.0: True)
    with pytest.raises(WeightsNotAvailableError, match="download failed") as err:
        Backbone("efficientnet_b0", weights="imagenet")
    assert _imagenet_file_name("efficientnet_b0") in str(err.value)
    assert str(torch_home) in str(err.value)


def test_timm_imagenet_offline_fails_with_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_module, "can_reach", lambda url, timeout=3.0: False)
    monkeypatch.setattr(weights_module, "_hf_cached_file", lambda arch: None)
    with pytest.raises(WeightsNotAvailableError, match=r"resnet10t.*weights="):
        Backbone("timm:resnet10t", weights="imagenet")


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_imagenet_loads_from_hub_cache(name: str, torch_home: Path) -> None:
    # A correctly keyed torchvision checkpoint under torchvision's own file name. The
    # hash in the file name is only checked by torch.hub when it downloads, so a
    # cached file needs no hash switch. torchvision's DenseNet files use legacy keys
    # ('norm.1') and have no num_batches_tracked buffers: mimic that.
    torch.manual_seed(5)
    state = tvm.get_model(name, weights=None).state_dict()
    if name.startswith("densenet"):
        state = {
            k.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.")
            if "denselayer" in k
            else k: v
            for k, v in state.items()
            if not k.endswith("num_batches_tracked")
        }
        assert any(".norm.1." in k for k in state)
    torch_home.mkdir(parents=True)
    torch.save(state, torch_home / _imagenet_file_name(name))
    bb = Backbone(name, weights="imagenet")
    assert bb.weights_source is not None and "IMAGENET1K" in bb.weights_source
    assert bb.input_norm == IMAGENET_GRAY_NORM  # torchvision: ImageNet grey, unchanged
    conv_key = "conv1.weight" if name.startswith("resnet") else "features.conv0.weight"
    torch.testing.assert_close(
        bb.body.state_dict()[conv_key], state[conv_key].sum(dim=1, keepdim=True)
    )
    last = next(k for k in reversed(list(state)) if not k.startswith(("fc.", "classifier.")))
    torch.testing.assert_close(bb.body.state_dict()[last], state[last])


@pytest.mark.parametrize("in_chans", [1, 2, 3, 5])
def test_adapt_conv_weight_matches_timm(in_chans: int) -> None:
    weight = torch.randn(8, 3, 7, 7)
    ours = adapt_conv_weight(weight, in_chans)
    torch.testing.assert_close(ours, adapt_input_conv(in_chans, weight.clone()))


def test_summed_kernels_are_exact_for_gray_replicated_to_rgb() -> None:
    weight = torch.randn(4, 3, 3, 3)
    gray = torch.rand(2, 1, 16, 16)
    rgb_out = torch.nn.functional.conv2d(gray.expand(-1, 3, -1, -1), weight, padding=1)
    gray_out = torch.nn.functional.conv2d(gray, adapt_conv_weight(weight, 1), padding=1)
    torch.testing.assert_close(gray_out, rgb_out, rtol=1e-5, atol=1e-5)


def test_adapt_conv_weight_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="in_chans"):
        adapt_conv_weight(torch.randn(4, 3, 3, 3), 0)
    with pytest.raises(ValueError, match="shape"):
        adapt_conv_weight(torch.randn(4, 2, 3, 3), 1)


def test_mismatched_checkpoint_names_file_and_keys(tmp_path: Path) -> None:
    file = tmp_path / "r18.safetensors"
    Backbone("resnet18").save(file)
    with pytest.raises(ValueError) as err:
        Backbone("resnet34", weights=file)
    message = str(err.value)
    assert str(file) in message and "resnet34" in message
    assert "missing keys" in message and "layer1.2." in message

    state = Backbone("resnet18").state_dict()
    state["body.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected keys: extra\.weight"):
        Backbone("resnet18", weights=state)


def test_in_chans_mismatch_is_a_shape_error() -> None:
    state = Backbone("resnet18", in_chans=1).state_dict()
    with pytest.raises(ValueError, match=r"shape mismatches: conv1\.weight \(64, 1, 7, 7\)"):
        Backbone("resnet18", in_chans=2, weights=state)


def test_rgb_checkpoint_is_adapted_to_in_chans_two() -> None:
    state = tvm.resnet18().state_dict()
    bb = Backbone("resnet18", in_chans=2, weights=state)
    expected = adapt_input_conv(2, state["conv1.weight"].clone())
    torch.testing.assert_close(bb.body.state_dict()["conv1.weight"], expected)


def test_ddp_prefixed_checkpoint_loads() -> None:
    bb = Backbone("resnet18")
    state = {f"module.{k}": v for k, v in bb.state_dict().items()}
    other = Backbone("resnet18", weights=state)
    torch.testing.assert_close(other.state_dict(), bb.state_dict())


def test_invalid_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet19'.*timm:"):
        Backbone("resnet19")
    with pytest.raises(ValueError, match="in_chans"):
        Backbone("resnet18", in_chans=0)
    with pytest.raises(ValueError, match="neither 'imagenet' nor an existing file"):
        Backbone("resnet18", weights="imagnet")
    with pytest.raises(ValueError, match="weights must be"):
        Backbone("resnet18", weights=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_norm"):
        Backbone("resnet18", input_norm=(0.5, 0.0))
    with pytest.raises(ValueError, match="unknown timm model"):
        Backbone("timm:no_such_model")
    with pytest.raises(ValueError, match=r"token.*not a plain Vision Transformer"):
        Backbone("timm:swin_tiny_patch4_window7_224")
    bb = Backbone("resnet18")
    with pytest.raises(ValueError, match=r"expects \(B, 1, H, W\)"):
        bb(torch.rand(2, 3, 32, 32))


def test_load_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt"):
        load_checkpoint(bad)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ValueError, match=r"list\.pt"):
        load_checkpoint(listed)


def test_lone_safetensors_rebuilds_from_header_and_input_norm_is_kept(tmp_path: Path) -> None:
    bb = Backbone("resnet18", input_norm=None).eval()
    file = tmp_path / "w.safetensors"
    assert bb.save(file, produced_by="unit test") == file
    (tmp_path / "w.json").unlink()
    info = read_sidecar(file)
    assert info["meta"] == {"produced_by": "unit test"} and info["input_norm"] is None
    loaded = Backbone.from_file(file).eval()
    assert loaded.input_norm is None
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), bb(x), rtol=0, atol=0)


def test_save_rejects_bad_meta_and_json_path(tmp_path: Path) -> None:
    bb = Backbone("resnet18")
    with pytest.raises(ValueError, match="JSON"):
        bb.save(tmp_path / "a.safetensors", produced_by=object())
    with pytest.raises(ValueError, match="sidecar"):
        bb.save(tmp_path / "a.json")


@pytest.mark.realdata
def test_features_of_real_kermany_xrays_are_finite(data_root: Path) -> None:
    from PIL import Image

    files = sorted((data_root / "kermany-pneumonia" / "test" / "PNEUMONIA").glob("*.jpeg"))[:2]
    files += sorted((data_root / "kermany-pneumonia" / "test" / "NORMAL").glob("*.jpeg"))[:2]
    assert len(files) == 4
    images = [
        torch.from_numpy(np.array(Image.open(f).convert("L").resize((64, 64)))).float()[None]
        / 255.0
        for f in files
    ]
    batch = torch.stack(images)
    for name in ("resnet18", "timm:resnet10t"):
        bb = Backbone(name).eval()
        with torch.no_grad():
            fmap, pooled = bb.forward_features(batch), bb(batch)
        assert torch.isfinite(fmap).all() and torch.isfinite(pooled).all()
        # Different X-rays give different features (not a constant output).
        assert torch.cdist(pooled, pooled).triu(1).max() > 0


def test_timm_imagenet_loads_from_local_hf_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline with the weights in the Hugging Face cache: timm reads the file itself
    # (its own first-conv adaptation) and nothing touches the network.
    import timm

    torch.manual_seed(7)
    rgb = timm.create_model("resnet10t", in_chans=3)
    file = tmp_path / "model.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(file))
    monkeypatch.setattr(weights_module, "can_reach", lambda url, timeout=3.0: False)
    monkeypatch.setattr(weights_module, "_hf_cached_file", lambda arch: file)
    bb = Backbone("timm:resnet10t", weights="imagenet")
    expected = rgb.state_dict()["conv1.0.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(bb.body.state_dict()["model.conv1.0.weight"], expected)
    torch.testing.assert_close(
        bb.body.state_dict()["model.layer4.0.conv2.weight"],
        rgb.state_dict()["layer4.0.conv2.weight"],
    )
    # timm's pretrained config of resnet10t has ImageNet statistics: the grey ones
    assert bb.input_norm == pytest.approx(IMAGENET_GRAY_NORM, abs=1e-6)


def test_deepcopy_keeps_its_own_target_layer() -> None:
    # Momentum methods (BYOL, MoCo) deep-copy the backbone as a teacher.
    import copy

    bb = Backbone("resnet18")
    teacher = copy.deepcopy(bb)
    assert teacher.target_layer is teacher.body.layer4
    assert teacher.target_layer is not bb.target_layer
    assert len(teacher.state_dict()) == len(bb.state_dict())
