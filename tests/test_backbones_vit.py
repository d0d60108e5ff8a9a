"""ViT backbones: tokens, patch grid, any image size, pooling, weights and ImageNet loading.

The shared contract (shapes, grey-to-RGB parity with timm, save/load, channels_last) is in
``test_backbones.py``; this file checks what only token models have, against timm itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

import cxr_curriculum.backbones._weights as weights_module
from cxr_curriculum.backbones import IMAGENET_GRAY_NORM, Backbone, WeightsNotAvailableError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "timm:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def vit() -> Backbone:
    torch.manual_seed(0)
    return Backbone(TINY).eval()


def _rgb_file(tmp_path: Path) -> Path:
    """A timm RGB ViT-Tiny checkpoint (random weights) as a safetensors file."""
    torch.manual_seed(7)
    rgb = timm.create_model("vit_tiny_patch16_224", in_chans=3)
    file = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(file))
    return file


def test_tokens_grid_and_feature_map_agree(vit: Backbone) -> None:
    x = torch.rand(2, 1, 48, 80)  # not square: a 3x5 patch grid
    with torch.no_grad():
        tokens = vit.forward_tokens(x)
        fmap = vit.forward_features(x)
    assert vit.is_token_model and vit.patch_size == 16 and vit.num_prefix_tokens == 1
    assert vit.patch_grid(48, 80) == (3, 5)
    assert tokens.shape == (2, 1 + 15, 192) and fmap.shape == (2, 192, 3, 5)
    # row-major grid: patch (r, c) is token 1 + 5 r + c
    torch.testing.assert_close(fmap[:, :, 1, 4], tokens[:, 1 + 5 * 1 + 4])
    torch.testing.assert_close(vit.tokens_to_map(tokens, (48, 80)), fmap)


def test_sides_must_be_multiples_of_the_patch(vit: Backbone) -> None:
    with pytest.raises(ValueError, match=r"patch size 16.*multiples of 16.*40x48"):
        vit(torch.rand(1, 1, 40, 48))
    with pytest.raises(ValueError, match="CNN, not a token model"):
        Backbone("resnet18").forward_tokens(torch.rand(1, 1, 32, 32))
    assert Backbone("resnet18").patch_size is None


def test_224_weights_give_timm_outputs_at_other_sizes(tmp_path: Path) -> None:
    # timm itself, built at 64 px and loading the 224 px RGB checkpoint, resamples the
    # positional embeddings once (checkpoint_filter_fn) and sums the RGB patch kernels;
    # the backbone keeps the 224 grid and resamples at every forward pass.
    file = _rgb_file(tmp_path)
    ours = Backbone(TINY, weights=file).eval()
    mean, std = IMAGENET_GRAY_NORM
    for size in (64, 96):
        ref = timm.create_model("vit_tiny_patch16_224", pretrained=True, img_size=size,
                                in_chans=1, num_classes=0,
                                pretrained_cfg_overlay={"file": str(file)}).eval()  # fmt: skip
        x = torch.rand(2, 1, size, size)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), ref((x - mean) / std), rtol=1e-4, atol=1e-4)


def test_checkpoint_of_another_grid_is_resampled_on_load(tmp_path: Path) -> None:
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(2)
    at_128 = timm.create_model("vit_tiny_patch16_224", img_size=128, in_chans=1, num_classes=0)
    state = at_128.state_dict()
    assert state["pos_embed"].shape == (1, 1 + 64, 192)
    bb = Backbone(TINY, weights=state)
    expected = resample_abs_pos_embed(state["pos_embed"], [14, 14], num_prefix_tokens=1)
    torch.testing.assert_close(bb.body.model.pos_embed.detach(), expected)
    wrong = dict(state, pos_embed=torch.zeros(1, 65, 100))
    with pytest.raises(ValueError, match="pos_embed"):
        Backbone(TINY, weights=wrong)


def test_pool_setting_is_checked_and_saved(tmp_path: Path) -> None:
    bb = Backbone(TINY, pool="avg").eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb(x), bb.forward_tokens(x)[:, 1:].mean(1))
    weights = bb.save(tmp_path / "bb.safetensors")
    sidecar = weights.with_suffix(".json")
    assert json.loads(sidecar.read_text())["pool"] == "avg"
    loaded = Backbone.from_file(tmp_path / "bb.safetensors").eval()
    assert loaded.pool == "avg"
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), bb(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"pool='token'.*resnet18.*\('avg',\)"):
        Backbone("resnet18", pool="token")
    with pytest.raises(ValueError, match="pool='max'"):
        Backbone(TINY, pool="max")
    assert Backbone("resnet18").pool == "avg"


def test_imagenet_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_module, "can_reach", lambda url, timeout=3.0: False)
    monkeypatch.setattr(weights_module, "_hf_cached_file", lambda arch: None)
    with pytest.raises(WeightsNotAvailableError, match=r"vit_tiny_patch16_224.*weights="):
        Backbone(TINY, weights="imagenet")


def test_imagenet_from_hf_cache_sums_the_patch_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.torch import load_file

    file = _rgb_file(tmp_path)
    rgb = load_file(str(file))
    monkeypatch.setattr(weights_module, "can_reach", lambda url, timeout=3.0: False)
    monkeypatch.setattr(weights_module, "_hf_cached_file", lambda arch: file)
    bb = Backbone(TINY, weights="imagenet")
    state = bb.body.state_dict()
    expected = rgb["patch_embed.proj.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(state["model.patch_embed.proj.weight"], expected)
    key = "blocks.11.attn.qkv.weight"
    torch.testing.assert_close(state["model." + key], rgb[key])
    assert bb.weights_source is not None and "pretrained" in bb.weights_source
    assert bb.input_norm == (0.5, 0.5)  # augreg ViT-Tiny: timm's mean = std = 0.5


def _timm_grey(arch: str) -> tuple[float, float]:
    cfg = timm.models.get_pretrained_cfg(arch)
    assert cfg is not None
    return (sum(cfg.mean) / 3, sum(cfg.std) / 3)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("timm:vit_small_patch16_224", (0.5, 0.5)),  # augreg weights
        ("timm:deit_tiny_patch16_224", IMAGENET_GRAY_NORM),
        ("timm:vit_small_patch16_224.dino", IMAGENET_GRAY_NORM),
    ],
)
def test_imagenet_vit_takes_the_input_norm_of_timm_pretrained_config(
    name: str, expected: tuple[float, float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The weight-loading step is faked: only the standardisation is under test, and
    # reading timm's pretrained config must not download (conftest blocks the network).
    import cxr_curriculum.backbones.backbone as backbone_module

    monkeypatch.setattr(backbone_module, "load_weights", lambda *args: "fake pretrained")
    bb = Backbone(name, weights="imagenet")
    assert bb.input_norm == pytest.approx(expected, abs=1e-6)
    assert bb.input_norm == pytest.approx(_timm_grey(name.removeprefix("timm:")), abs=1e-6)
    x = torch.rand(1, 1, 32, 32)
    mean, std = expected
    torch.testing.assert_close(bb._standardise(x), (x - mean) / std)
    # recorded in the sidecar and kept by from_file
    path = bb.save(tmp_path / "bb.safetensors")
    assert json.loads(path.with_suffix(".json").read_text())["input_norm"] == list(bb.input_norm)
    assert Backbone.from_file(path).input_norm == bb.input_norm
    # an explicit input_norm wins; random init keeps the ImageNet grey default
    assert Backbone(name, weights="imagenet", input_norm=(0.1, 0.2)).input_norm == (0.1, 0.2)
    assert Backbone(name, weights="imagenet", input_norm=None).input_norm is None
    assert Backbone(name).input_norm == IMAGENET_GRAY_NORM


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "width", "patch"),
    [
        ("timm:vit_small_patch16_224", 384, 16),
        ("timm:vit_base_patch16_224", 768, 16),
        ("timm:deit_tiny_distilled_patch16_224", 192, 16),
    ],
)
def test_small_base_and_distilled_vits(name: str, width: int, patch: int) -> None:
    bb = Backbone(name).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        tokens = bb.forward_tokens(x)
        assert bb(x).shape == (1, width) and bb.forward_features(x).shape == (1, width, 2, 2)
    assert bb.patch_size == patch and tokens.shape == (1, bb.num_prefix_tokens + 4, width)


def test_deepcopy_keeps_its_own_token_layers(vit: Backbone) -> None:
    import copy

    teacher = copy.deepcopy(vit)
    assert teacher.target_layer is teacher.body.model.blocks[-1].norm1
    assert teacher.target_layer is not vit.target_layer


@pytest.mark.realdata
def test_real_kermany_xrays_give_distinct_finite_features(data_root: Path) -> None:
    from PIL import Image

    folder = data_root / "kermany-pneumonia" / "test"
    files = sorted((folder / "PNEUMONIA").glob("*.jpeg"))[:2]
    files += sorted((folder / "NORMAL").glob("*.jpeg"))[:2]
    assert len(files) == 4
    batch = torch.stack(
        [
            torch.from_numpy(np.array(Image.open(f).convert("L").resize((64, 64)))).float()[None]
            / 255.0
            for f in files
        ]
    )
    torch.manual_seed(0)
    bb = Backbone(TINY).eval()
    with torch.no_grad():
        pooled, tokens = bb(batch), bb.forward_tokens(batch)
    assert torch.isfinite(pooled).all() and torch.isfinite(tokens).all()
    assert torch.cdist(pooled, pooled).triu(1).max() > 0
