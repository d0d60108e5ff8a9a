"""Lung attention on a whole dataset (issue 12): selection, native-resolution masks, rows,
mask-QC reporting and exclusion, coarse CAM maps, the [0, 1] range check."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from _attention import SmallNet
from cxr_curriculum import Backbone
from cxr_curriculum.attention import CoarseSaliencyWarning, LungAttentionScorer
from cxr_curriculum.attention.dataset import pick_indices
from cxr_curriculum.data import KermanyPneumonia, kermany_patient_id, read_image
from cxr_curriculum.segmentation import LungSegmenter
from cxr_curriculum.transforms import Resize

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 64


@pytest.fixture(scope="module")
def kermany(data_root: Path) -> KermanyPneumonia:
    return KermanyPneumonia(data_root / "kermany-pneumonia", split="test")


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    return LungSegmenter()


def test_pick_indices_is_balanced_seeded_and_checked() -> None:
    class Labelled(list[int]):  # a sized dataset with .labels, nothing else
        labels = [0] * 30 + [1] * 5 + [2] * 65

    ds = Labelled(range(100))
    picked = pick_indices(ds, 12, seed=3)
    counts = [sum(ds.labels[i] == c for i in picked) for c in range(3)]
    assert counts == [4, 4, 4] and picked == sorted(picked)
    assert pick_indices(ds, 12, seed=3) == picked and pick_indices(ds, 12, seed=4) != picked
    rare = pick_indices(ds, 30, seed=0)  # class 1 has only 5: the others fill the gap
    assert [sum(ds.labels[i] == c for i in rare) for c in range(3)] == [13, 5, 12]
    assert len(set(pick_indices(ds, None))) == 100
    assert len(pick_indices(ds, 7, stratify=False)) == 7
    for bad in (0, 101):
        with pytest.raises(ValueError, match="between 1 and len"):
            pick_indices(ds, bad)


@pytest.mark.realdata
def test_score_dataset_on_real_kermany_images(
    kermany: KermanyPneumonia, segmenter: LungSegmenter
) -> None:
    torch.manual_seed(0)
    model = SmallNet().eval()
    scorer = LungAttentionScorer(segmenter, target_layer="features.2", n_boot=200)
    report = scorer.score_dataset(model, kermany, n=8, image_size=SIZE, seed=0)
    assert len(report) == 8 and report.meta["dataset"] == "KermanyPneumonia"
    assert [r["label"] for r in report.rows].count(0) == 4  # balanced NORMAL / PNEUMONIA
    assert report.meta["map_size"] == [16, 16] and not report.meta["warnings"]
    again = scorer.score_dataset(model, kermany, n=8, image_size=SIZE, seed=0)
    other = scorer.score_dataset(model, kermany, n=8, image_size=SIZE, seed=1)
    ids = [r["image_id"] for r in report.rows]
    assert ids == [r["image_id"] for r in again.rows] != [r["image_id"] for r in other.rows]
    resize = Resize(SIZE)
    assert report.images is not None and report.masks is not None
    for i, row in enumerate(report.rows):
        file = Path(row["file"])
        assert file == kermany.files[row["index"]] and row["image_id"] == file.name
        assert row["patient_id"] == kermany_patient_id(file.name)
        assert row["label"] == kermany.labels[row["index"]]
        # Masks were predicted at the native 224 px and resized nearest-exact.
        native = read_image(file)
        assert row["native_size"] == "x".join(map(str, native.shape[-2:]))
        pred = segmenter.predict_with_quality(native)
        image, masks = resize(native, pred.masks[0].to(torch.uint8))
        assert torch.equal(report.images[i], image)
        assert torch.equal(report.masks[i], masks.bool())
        assert row["seg_quality_ok"] == bool(pred.ok[0])
    # The scores are those of score() on the same images and masks.
    direct = scorer.score(model, report.images, masks=report.masks, patient_ids=None)
    for a, b in zip(report.rows, direct.rows, strict=True):
        assert a["lift"] == pytest.approx(b["lift"], nan_ok=True)


@pytest.mark.realdata
def test_summary_counts_failed_mask_qc_and_exclusion_is_visible(
    kermany: KermanyPneumonia, segmenter: LungSegmenter
) -> None:
    model = SmallNet().eval()
    scorer = LungAttentionScorer(segmenter, method="gradients", n_boot=200)
    report = scorer.score_dataset(model, kermany, n=16, image_size=SIZE, seed=0)
    failed = [r["image_id"] for r in report.rows if r["seg_quality_ok"] is False]
    assert all(isinstance(r["seg_quality_ok"], bool) for r in report.rows)
    assert 1 <= len(failed) < 16  # pediatric films: some masks fail the check
    text = report.summary()
    assert f"mask QC: {len(failed)} of 16 failed (excluded: no)" in text
    assert failed[0] in text and "exclude_failed_qc()" in text
    assert report.aggregate["lift"].n == 16 - report.aggregate["lift"].n_nan
    kept = report.exclude_failed_qc()
    assert f"mask QC: {len(failed)} of 16 failed (excluded: yes)" in kept.summary()
    assert len(kept) == 16 and kept.counted.sum() == 16 - len(failed)  # rows stay visible
    good = [r["lift"] for r in report.rows if r["seg_quality_ok"]]
    assert kept.aggregate["lift"].estimate == pytest.approx(sum(good) / len(good))
    assert report.summary() == text  # the original report is unchanged
    # The scorer argument does the same in one step.
    direct = LungAttentionScorer(segmenter, method="gradients", n_boot=200, exclude_flagged=True)
    same = direct.score_dataset(model, kermany, n=16, image_size=SIZE, seed=0)
    assert same.aggregate["lift"].estimate == pytest.approx(kept.aggregate["lift"].estimate)
    # compare() leaves excluded images out as well.
    assert scorer.compare(kept, kept, "lift").n == 16 - len(failed)


def test_supplied_masks_say_qc_was_not_run() -> None:
    scorer = LungAttentionScorer(method="gradients", n_boot=50)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 4:28] = True
    report = scorer.score(SmallNet(), torch.rand(2, 1, 32, 32), masks=masks)
    assert "mask QC: not run (masks supplied)" in report.summary()


def test_coarse_cam_map_warns_and_names_a_finer_layer() -> None:
    bb = Backbone("resnet18")
    model = nn.Sequential(bb, nn.Linear(bb.num_features, 2)).eval()
    images = torch.rand(2, 1, SIZE, SIZE)
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[:, 10:50, 6:58] = True
    coarse = LungAttentionScorer(method="gradcam", n_boot=50)  # default: layer4, 2x2 at 64 px
    with pytest.warns(CoarseSaliencyWarning, match=r"2x2 at 64x64.*'0\.body\.layer3'"):
        report = coarse.score(model, images, masks=masks)
    assert report.meta["map_size"] == [2, 2] and report.meta["target_layer"] == "0.body.layer4"
    assert "warning: the CAM map of layer '0.body.layer4' is 2x2" in report.summary()
    fine = LungAttentionScorer(method="gradcam", target_layer="0.body.layer3", n_boot=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoarseSaliencyWarning)
        report = fine.score(model, images, masks=masks)
    assert report.meta["map_size"] == [4, 4] and "warning" not in report.summary()
    # The default layer is fine at 224 px (7x7): no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", CoarseSaliencyWarning)
        coarse.saliency(model, torch.rand(1, 1, 224, 224))


def test_score_refuses_images_outside_the_unit_range() -> None:
    scorer = LungAttentionScorer(method="gradients", n_boot=50)
    masks = torch.ones(2, 32, 32, dtype=torch.bool)
    images = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"\[0, 1\].*found \[[0-9.]+, 2[0-9.]+\].*255"):
        scorer.score(SmallNet(), images * 255, masks=masks)
    bad = images.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite.*\[1\]"):
        scorer.score(SmallNet(), bad, masks=masks)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scorer.sanity_check(SmallNet(), images - 0.5, masks=masks)
