"""Issue 18, items 3 and 7: the scorer's input checks and ergonomics.

Every test here fails on the base commit 097919e: float64/float16/bfloat16 images failed
inside torch, a (1, 1, 0, 0) image with a raw reduction error, masks of another size were
used silently, NaN/inf maps gave NaN scores silently, ``target_layer="layer3"`` did not
resolve on a fine-tuned classifier, grids drew the first images whatever their class, and
masks predicted elsewhere lost their quality verdicts ("mask QC: not run").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from _attention import SmallNet
from cxr_curriculum import Backbone
from cxr_curriculum.attention import GradCAM, LungAttentionScorer, find_layer, save_grid
from cxr_curriculum.attention.report import _title
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.evaluation import fine_tune

pytestmark = pytest.mark.usefixtures("one_thread")


def _lungs(n: int, size: int = 32) -> torch.Tensor:
    m = torch.zeros(n, size, size, dtype=torch.bool)
    m[:, size // 4 : 3 * size // 4, size // 8 : size // 2 - 2] = True
    m[:, size // 4 : 3 * size // 4, size // 2 + 2 : 7 * size // 8] = True
    return m


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_images_of_other_float_dtypes_are_converted_to_the_models(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    net, x = SmallNet(), torch.rand(3, 1, 32, 32).to(dtype)
    scorer = LungAttentionScorer(target_layer="features.2", n_boot=50)
    report = scorer.score(net, x, masks=_lungs(3))
    reference = scorer.score(net, x.float(), masks=_lungs(3))
    assert report.saliency is not None and reference.saliency is not None
    torch.testing.assert_close(report.saliency, reference.saliency)
    assert report.rows[0]["lift"] == pytest.approx(reference.rows[0]["lift"])
    # The saliency methods and the sanity check convert too.
    assert GradCAM(net, "features.2")(x, 0).dtype == torch.float32
    assert scorer.sanity_check(net, x, masks=_lungs(3), max_steps=2).rows[0]["spearman"] == 1.0


def test_images_without_pixels_are_refused_clearly() -> None:
    scorer = LungAttentionScorer(target_layer="features.2", n_boot=50)
    with pytest.raises(ValueError, match=r"height and width .*\(1, 1, 0, 0\)"):
        scorer.score(SmallNet(), torch.zeros(1, 1, 0, 0))
    with pytest.raises(ValueError, match="at least one pixel"):
        GradCAM(SmallNet(), "features.2")(torch.zeros(2, 1, 8, 0))


def test_masks_of_another_size_are_resized_with_a_warning_or_refused() -> None:
    torch.manual_seed(0)
    net, x = SmallNet(), torch.rand(2, 1, 32, 32)
    scorer = LungAttentionScorer(target_layer="features.2", n_boot=50)
    big = _lungs(2, 64)
    with pytest.warns(UserWarning, match=r"masks of 64x64 were resized \(nearest-exact\)"):
        report = scorer.score(net, x, masks=big)
    assert report.masks is not None and report.masks.shape[-2:] == (32, 32)
    assert any("resized" in w for w in report.meta["warnings"])
    with pytest.raises(ValueError, match="aspect ratios differ"):
        scorer.score(net, x, masks=_lungs(2, 64)[:, :, :32])  # 64x32 masks for 32x32 images


def test_nan_or_infinite_saliency_maps_are_refused() -> None:
    x, lungs = torch.rand(3, 1, 16, 16), _lungs(3, 16)
    scorer = LungAttentionScorer(n_boot=50)
    for bad in (float("nan"), float("inf")):
        maps = torch.rand(3, 16, 16)
        maps[1, 3, 4] = bad
        with pytest.raises(ValueError, match=r"NaN or infinite values in image\(s\) \[1\]"):
            scorer.score(None, x, masks=lungs, saliency=maps)
    with pytest.raises(ValueError, match="aspect ratios differ"):
        scorer.score(None, x, masks=lungs, saliency=torch.rand(3, 4, 8))
    # A coarse map of the images' aspect ratio is fine (resized bilinearly as before).
    assert len(scorer.score(None, x, masks=lungs, saliency=torch.rand(3, 4, 4))) == 3


def test_layer_names_relative_to_the_backbone_work_on_any_model_holding_it() -> None:
    train = KermanyPneumonia(bundled_sample_root(), split="train")
    test = KermanyPneumonia(bundled_sample_root(), split="test")
    tuned = fine_tune(
        Backbone("resnet18", seed=0), train, test, image_size=64, steps=1, batch_size=8
    )
    model = tuned.model
    assert model is not None
    bb = model.backbone
    for m in (bb, nn.Sequential(bb, nn.Linear(bb.num_features, 2)), model):
        assert find_layer(m, "layer3") is bb.body.layer3
        assert find_layer(m, "body.layer3") is bb.body.layer3
    x = torch.stack([test[i].image for i in range(4)])
    x = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    by_name = LungAttentionScorer(target_layer="layer3", n_boot=50)
    by_module = LungAttentionScorer(target_layer=bb.body.layer3, n_boot=50)
    a = by_name.score(model.eval(), x, targets=[0, 1, 0, 1], masks=_lungs(4, 64))
    b = by_module.score(model.eval(), x, targets=[0, 1, 0, 1], masks=_lungs(4, 64))
    assert a.meta["target_layer"] == "backbone.body.layer3" and a.meta["map_size"] == [4, 4]
    assert a.saliency is not None and b.saliency is not None
    torch.testing.assert_close(a.saliency, b.saliency)
    # Full dotted names still work; a wrong one names both schemes.
    assert find_layer(model, "backbone.body.layer3") is bb.body.layer3
    with pytest.raises(ValueError, match=r"relative to the backbone .*'layer3'"):
        find_layer(model, "0.body.layer3")


def test_save_grid_draws_the_classes_in_turn(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.rand(8, 1, 16, 16)
    labels = [0, 0, 0, 0, 0, 0, 1, 1]
    scorer = LungAttentionScorer(target_layer="features.2", n_boot=50)
    report = scorer.score(SmallNet(), x, masks=_lungs(8, 16), labels=labels)
    assert [r["label"] for r in report.rows] == labels
    pick = report.grid_indices(4)
    assert pick == [0, 1, 6, 7]
    assert report.grid_indices(None) == list(range(8))
    report.save_grid(tmp_path / "grid.png", n=4, ncol=4, scale=1, titles=["a", "b", "c", "d"])
    assert report.saliency is not None and report.masks is not None
    idx = torch.tensor(pick)
    save_grid(tmp_path / "ref.png", x[idx], report.saliency[idx], report.masks[idx], 4,
              ["a", "b", "c", "d"], 1)  # fmt: skip
    assert Image.open(tmp_path / "grid.png").tobytes() == Image.open(tmp_path / "ref.png").tobytes()
    with pytest.raises(ValueError, match="labels"):
        scorer.score(SmallNet(), x, masks=_lungs(8, 16), labels=[0, 1])


class _BoxSegmenter:
    """Two rectangular lungs, whatever the image (fast, for selection tests)."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        m = torch.zeros(b, 2, h, w, dtype=torch.bool)
        m[:, 0, h // 4 : 3 * h // 4, w // 8 : w // 2 - 2] = True
        m[:, 1, h // 4 : 3 * h // 4, w // 2 + 2 : 7 * w // 8] = True
        return m


def test_a_dataset_reports_grid_shows_both_classes(tmp_path: Path) -> None:
    test = KermanyPneumonia(bundled_sample_root(), split="test")
    scorer = LungAttentionScorer(_BoxSegmenter(), target_layer="features.2", n_boot=50)
    report = scorer.score_dataset(SmallNet(), test, n=8, image_size=32, seed=0)
    labels = [r["label"] for r in report.rows]
    assert labels == sorted(labels) and labels[:4] == [0] * 4  # rows in dataset order
    report.save_grid(tmp_path / "grid.png", n=4, ncol=4, scale=1)
    assert report.images is not None and report.saliency is not None and report.masks is not None
    idx = torch.tensor([0, 1, 4, 5])  # two of each class, grouped by class
    titles = [_title(report.rows[i]) for i in idx.tolist()]
    save_grid(tmp_path / "ref.png", report.images[idx], report.saliency[idx],
              report.masks[idx], 4, titles, 1)  # fmt: skip
    assert Image.open(tmp_path / "grid.png").tobytes() == Image.open(tmp_path / "ref.png").tobytes()


@dataclass
class _Quality:
    ok: bool
    reasons: tuple[str, ...] = ()


@dataclass
class _Prediction:  # what LungSegmenter.predict_with_quality returns
    masks: torch.Tensor
    quality: list[_Quality]


def test_predicted_masks_passed_in_keep_their_quality_verdicts() -> None:
    lungs = torch.stack([_lungs(3, 16), _lungs(3, 16)], dim=1)
    lungs[:, 1, :, :8] = False
    lungs[:, 0, :, 8:] = False
    verdicts = [_Quality(True), _Quality(False, ("left lung missing",)), _Quality(True)]
    scorer = LungAttentionScorer(n_boot=50)
    report = scorer.score(
        None, torch.rand(3, 1, 16, 16), masks=_Prediction(lungs, verdicts),
        saliency=torch.rand(3, 16, 16),
    )  # fmt: skip
    assert report.qc_line().startswith("mask QC: 1 of 3 failed (excluded: no)")
    assert report.rows[1]["seg_quality_reasons"] == "left lung missing"
    assert report.meta["mask_source"] == "predicted" and report.meta["lung_split"] == "channels"
    assert "mask QC: 1 of 3 failed" in report.summary()


def test_masks_and_saliency_maps_share_the_one_pixel_aspect_tolerance() -> None:
    """64x48 images: 11x8 is within one pixel of the map's own size (11 * 48 / 64 = 8.25),
    so masks of that size are resized like maps of that size, not refused."""
    from cxr_curriculum.attention.base import check_saliency
    from cxr_curriculum.attention.masks import fit_masks

    size = (64, 48)
    for h in range(1, 70):
        for w in range(1, 60):
            try:
                check_saliency(torch.rand(1, h, w), 1, size, "supplied")
                map_ok = True
            except ValueError:
                map_ok = False
            try:
                fit_masks(torch.zeros(1, 2, h, w, dtype=torch.bool), size)
                mask_ok = True
            except ValueError:
                mask_ok = False
            assert mask_ok == map_ok, (h, w, map_ok)
    torch.manual_seed(0)
    net, x = SmallNet(), torch.rand(2, 1, *size)
    masks = torch.zeros(2, 11, 8, dtype=torch.bool)
    masks[:, 3:8, 1:7] = True
    scorer = LungAttentionScorer(target_layer="features.2", n_boot=50)
    with pytest.warns(UserWarning, match=r"masks of 11x8 were resized"):
        report = scorer.score(net, x, masks=masks)
    assert report.masks is not None and report.masks.shape[-2:] == size
    with pytest.raises(ValueError, match="aspect ratios differ"):
        scorer.score(net, x, masks=torch.ones(2, 11, 11, dtype=torch.bool))
