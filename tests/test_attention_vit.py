"""Lung attention of ViTs on real X-rays: Grad-CAM on tokens, attention rollout, CLS attention.

Independent references: pytorch-grad-cam's ViT recipe (GradCAM on ``blocks[-1].norm1``
with its ``reshape_transform``) and a re-implementation of jacobgil/vit-explain's rollout
that reads the attention weights the way it does (timm's unfused path, a hook on
``attn_drop``), while the library recomputes them from ``attn.qkv``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _attention import corr, covid_films
from cxr_curriculum import Backbone, LungAttentionScorer
from cxr_curriculum.attention import (
    AttentionRollout,
    CLSAttention,
    GradCAM,
    capture_attention,
    make_saliency,
    save_overlay,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 128  # an 8x8 patch grid for ViT-Tiny/16


@pytest.fixture(scope="module")
def covid(data_root: Path) -> tuple[Tensor, Tensor, list[str]]:
    """Six real covid-chestxray images at 128 px with their V7 lung masks (uint8 0/1/255)."""
    images, masks, patients = covid_films(data_root, 6, SIZE)
    return images.clamp(0, 1), masks, patients


@pytest.fixture(scope="module")
def model() -> nn.Sequential:
    torch.manual_seed(0)
    backbone = Backbone("timm:vit_tiny_patch16_224")
    return nn.Sequential(backbone, nn.Linear(backbone.num_features, 2)).eval()


def _grad_cam_reshape(tensor: Tensor, height: int = SIZE // 16, width: int = SIZE // 16) -> Tensor:
    """pytorch-grad-cam's ``reshape_transform`` for ViTs (its tutorial, verbatim in effect)."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


@pytest.mark.realdata
def test_gradcam_on_tokens_matches_pytorch_grad_cam_vit_recipe(
    covid: Any, model: nn.Module
) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images = covid[0]
    backbone = model[0]
    with torch.no_grad():
        pred = model(images).argmax(1).tolist()
    ours = GradCAM(model)(images, pred)  # layer: the backbone's target_layer, tokens reshaped
    layer = backbone.body.model.blocks[-1].norm1
    with pgc.GradCAM(
        model=model, target_layers=[layer], reshape_transform=_grad_cam_reshape
    ) as cam:
        ref = torch.from_numpy(
            cam(input_tensor=images, targets=[ClassifierOutputTarget(k) for k in pred])
        )
    checked = 0
    for i in range(len(images)):
        if ref[i].std() > 0 and ours[i].std() > 0:
            assert corr(ours[i], ref[i]) > 0.99
            checked += 1
        else:
            assert ref[i].std() == 0 and ours[i].max() == 0
    assert checked >= 3


def _vit_explain_rollout(
    model: nn.Module, images: Tensor, head_fusion: str, discard: float
) -> Tensor:
    """jacobgil/vit-explain's rollout, per image, on attention read from timm's unfused path."""
    ref = copy.deepcopy(model)
    weights: list[Tensor] = []
    for block in ref[0].body.model.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: weights.append(out))
    with torch.no_grad():
        ref(images)
    maps = []
    for b in range(images.shape[0]):
        result = torch.eye(weights[0].shape[-1])
        for attention in weights:
            heads = attention[b]
            if head_fusion == "mean":
                fused = heads.mean(dim=0)
            else:
                fused = (heads.max(dim=0) if head_fusion == "max" else heads.min(dim=0))[0]
            flat = fused.reshape(-1).clone()
            _, idx = flat.topk(int(flat.numel() * discard), largest=False)
            flat[idx[idx != 0]] = 0
            a = (flat.view_as(fused) + torch.eye(fused.shape[-1])) / 2
            result = (a / a.sum(dim=-1, keepdim=True)) @ result
        maps.append(result[0, 1:].reshape(SIZE // 16, SIZE // 16))
    return torch.stack(maps)


@pytest.mark.realdata
@pytest.mark.parametrize(("fusion", "discard"), [("mean", 0.0), ("max", 0.9), ("min", 0.5)])
def test_rollout_matches_vit_explain(
    covid: Any, model: nn.Module, fusion: str, discard: float
) -> None:
    images = covid[0][:3]
    method = AttentionRollout(model, head_fusion=fusion, discard_ratio=discard)
    ours = method(images)
    assert method.map_size == (SIZE // 16, SIZE // 16) and ours.shape == (3, SIZE, SIZE)
    ref = _vit_explain_rollout(model, images, fusion, discard)
    up = F.interpolate(ref[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(ours, up, rtol=1e-4, atol=1e-6)


@pytest.mark.realdata
def test_cls_attention_is_the_last_layers_cls_row(covid: Any, model: nn.Module) -> None:
    images = covid[0][:2]
    with torch.no_grad(), capture_attention(list(model[0].body.blocks)) as store:
        model(images)
    assert len(store) == 12 and store[-1].shape == (2, 3, 65, 65)
    torch.testing.assert_close(store[-1].sum(-1), torch.ones(2, 3, 65))
    expected = store[-1][:, :, 0, 1:].mean(1).reshape(2, 1, 8, 8)
    expected = F.interpolate(expected, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[
        :, 0
    ]
    torch.testing.assert_close(CLSAttention(model)(images), expected)


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["gradcam", "attention_rollout", "cls_attention"])
def test_lung_scores_cis_and_overlays_on_real_v7_masks(
    covid: Any, model: nn.Module, method: str, tmp_path: Path
) -> None:
    images, masks, patients = covid
    scorer = LungAttentionScorer(method=method, n_boot=200)
    report = scorer.score(model, images, targets=1, masks=masks, patient_ids=patients)
    lung = masks == 1
    scored = 0
    for i, row in enumerate(report.rows):
        if row["saliency_empty"]:
            continue
        pos = report.saliency[i].clamp_min(0).double()
        assert row["energy_in_mask"] == pytest.approx(
            ((pos * lung[i]).sum() / pos.sum()).item(), rel=1e-5
        )
        scored += 1
    assert scored >= 3
    agg = report.aggregate["energy_in_mask"]
    assert agg.low <= agg.estimate <= agg.high and agg.n_clusters == len(set(patients))
    save_overlay(tmp_path / "o.png", images[0], report.saliency[0], report.masks[0], scale=1)
    assert (tmp_path / "o.png").stat().st_size > 0
    if method == "gradcam":  # the CAM layer and its 8x8 map are recorded
        assert report.meta["map_size"] == [8, 8] and "norm1" in report.meta["target_layer"]


@pytest.mark.realdata
def test_gradcam_on_the_fine_tune_classifier(data_root: Path) -> None:
    from cxr_curriculum.data import KermanyPneumonia
    from cxr_curriculum.evaluation import fine_tune

    kermany = KermanyPneumonia(data_root / "kermany-pneumonia", split="test")
    pick = list(range(0, len(kermany), len(kermany) // 12))[:12]
    data = torch.utils.data.Subset(kermany, pick)
    torch.manual_seed(0)
    result = fine_tune(Backbone("timm:vit_tiny_patch16_224"), data, data, image_size=64,
                       steps=2, batch_size=4)  # fmt: skip
    assert result.model is not None
    images = torch.stack([F.interpolate(kermany[i].image[None], (64, 64))[0] for i in pick[:4]])
    maps = LungAttentionScorer(method="gradcam").saliency(result.model, images.clamp(0, 1), 1)
    assert maps.shape == (4, 64, 64) and torch.isfinite(maps).all()


@pytest.mark.realdata
@pytest.mark.parametrize("method", ["gradcam", "attention_rollout"])
def test_cascading_randomisation_on_vit_blocks(covid: Any, model: nn.Module, method: str) -> None:
    images, masks, _ = covid
    scorer = LungAttentionScorer(method=method, n_boot=50)
    result = scorer.sanity_check(model, images[:4], targets=1, masks=masks[:4], max_steps=3)
    rows = result.rows
    assert rows[0]["spearman"] == pytest.approx(1.0)
    assert any("blocks" in row["layer"] for row in rows[1:])
    assert rows[-1]["spearman"] < 0.9  # the fully randomised ViT's maps differ
    assert scorer.saliency(model, images[:1], 1).shape == (1, SIZE, SIZE)  # model untouched


def test_attention_methods_need_a_vit_and_settings_are_checked() -> None:
    cnn = nn.Sequential(Backbone("resnet18"), nn.Linear(512, 2))
    with pytest.raises(ValueError, match="one ViT Backbone"):
        make_saliency("attention_rollout", cnn)
    vit = nn.Sequential(Backbone("timm:vit_tiny_patch16_224"), nn.Linear(192, 2))
    with pytest.raises(ValueError, match="head_fusion"):
        AttentionRollout(vit, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        AttentionRollout(vit, discard_ratio=1.0)
    with pytest.raises(ValueError, match="takes no target_layer"):
        make_saliency("cls_attention", vit, target_layer="0.target_layer")


def test_hooks_released_after_errors_and_token_layers_need_a_reshape() -> None:
    torch.manual_seed(0)
    backbone = Backbone("timm:vit_tiny_patch16_224")
    vit = nn.Sequential(backbone, nn.Linear(192, 2)).eval()
    with pytest.raises(ValueError, match="multiples of 16"):
        AttentionRollout(vit)(torch.rand(1, 1, 40, 40))
    qkv = backbone.body.model.blocks[0].attn.qkv
    assert not qkv._forward_hooks
    # A raw timm ViT (no Backbone): token layers need a reshape_transform, as in pytorch-grad-cam.
    import timm

    raw = timm.create_model("vit_tiny_patch16_224", img_size=32, in_chans=1, num_classes=2).eval()
    layer = raw.blocks[-1].norm1
    with pytest.raises(ValueError, match="reshape_transform"):
        GradCAM(raw, layer)(torch.rand(1, 1, 32, 32), 1)
    maps = GradCAM(raw, layer, reshape_transform=lambda t, size: _grad_cam_reshape(t, 2, 2))(
        torch.rand(2, 1, 32, 32), 1
    )
    assert maps.shape == (2, 32, 32)


def test_coarse_vit_map_warns_without_suggesting_a_non_spatial_layer() -> None:
    from cxr_curriculum.attention import CoarseSaliencyWarning, suggest_layer

    torch.manual_seed(0)
    vit = nn.Sequential(Backbone("timm:vit_tiny_patch16_224"), nn.Linear(192, 2)).eval()
    images = torch.rand(2, 1, 32, 32)  # a 2x2 patch grid
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 4:28] = True
    with pytest.warns(CoarseSaliencyWarning, match=r"2x2 at 32x32.*smaller patches") as caught:
        LungAttentionScorer(method="gradcam", n_boot=10).score(vit, images, 1, masks=masks)
    assert "k_norm" not in str(caught[0].message)  # (B, heads, T, d) is 4-D but no map
    assert suggest_layer(vit, images[:1]) is None
