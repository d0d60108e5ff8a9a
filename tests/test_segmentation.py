"""Tests of the bundled LungSegmenter: weights integrity, API, and accuracy on real X-rays."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_curriculum.data import CovidChestXray, ShenzhenMontgomery
from cxr_curriculum.data.splits import patient_split
from cxr_curriculum.segmentation import (
    LungSegmenter,
    LungSegmenterWeights,
    WeightsChecksumError,
    dice_score,
    load_state_dict,
    split_lungs,
)
from cxr_curriculum.segmentation import weights as weights_module

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    return LungSegmenter()


def _validation_pairs(
    data_root: Path, n_covid: int, n_shenzhen: int
) -> list[tuple[torch.Tensor, torch.Tensor, Path]]:
    """The first validation images of the lung model's split (never trained on), with
    their 3-class targets and paths."""
    pairs = []
    for ds, n in (
        (CovidChestXray(data_root / "covid-chestxray", with_masks=True), n_covid),
        (ShenzhenMontgomery(data_root / "shenzhen-montgomery-tb"), n_shenzhen),
    ):
        val = patient_split(ds, (0.8, 0.2), seed=0)[1]
        for i in range(n):
            image, mask, _ = val[i]
            pairs.append((image, split_lungs(mask), ds.files[val.indices[i]]))
    return pairs


@pytest.fixture(scope="module")
def val_pairs(data_root: Path) -> list[tuple[torch.Tensor, torch.Tensor, Path]]:
    """Two Covid-19 and one Shenzhen/Montgomery validation image."""
    return _validation_pairs(data_root, 2, 1)


def test_top_level_export() -> None:
    import cxr_curriculum

    assert cxr_curriculum.LungSegmenter is LungSegmenter


def test_every_weights_entry_is_complete() -> None:
    for entry in LungSegmenterWeights:
        w = entry.value
        assert w.file.endswith(".safetensors") and len(w.sha256) == 64
        assert int(w.sha256, 16) > 0
        assert w.input_size % 32 == 0
        for key in ("training_data", "licences", "recipe", "metrics", "dtype_on_disk"):
            assert w.meta.get(key), f"{entry.name}.meta lacks {key!r}"
        assert 0.0 < w.meta["metrics"]["val_dice_both"] <= 1.0
        assert entry.path.is_file()
        assert entry.path.stat().st_size < 10 * 2**20


def test_weights_load_offline_with_checksum() -> None:
    entry = LungSegmenterWeights.DEFAULT
    digest = hashlib.sha256(entry.path.read_bytes()).hexdigest()
    assert digest == entry.value.sha256
    state = load_state_dict(entry)
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_tampered_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = LungSegmenterWeights.DEFAULT
    data = bytearray(entry.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / entry.value.file).write_bytes(bytes(data))
    monkeypatch.setattr(weights_module, "_resource", lambda file: tmp_path / file)
    bad = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(WeightsChecksumError) as info:
        LungSegmenter()
    msg = str(info.value)
    assert entry.value.file in msg and bad in msg and entry.value.sha256 in msg


def test_missing_weights_give_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(weights_module, "_resource", lambda file: tmp_path / file)
    with pytest.raises(FileNotFoundError, match=r"lungnet_.*\.safetensors"):
        LungSegmenter()


def test_an_intact_copy_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = LungSegmenterWeights.DEFAULT
    shutil.copy(entry.path, tmp_path / entry.value.file)
    monkeypatch.setattr(weights_module, "_resource", lambda file: tmp_path / file)
    assert LungSegmenter().input_size == entry.value.input_size


def test_predict_shape_dtype_and_sides_on_real_images(
    segmenter: LungSegmenter, val_pairs: list[tuple[torch.Tensor, torch.Tensor, Path]]
) -> None:
    for image, target, _ in val_pairs:
        masks = segmenter.predict(image[None])
        assert masks.dtype == torch.bool and masks.shape == (1, 2, *image.shape[-2:])
        cols = torch.arange(image.shape[-1], dtype=torch.float64)
        centre = [float((m.any(0).double() * cols).sum() / m.any(0).sum()) for m in masks[0]]
        assert centre[0] < image.shape[-1] / 2 < centre[1]  # right lung on the image's left
        assert not (masks[0, 0] & masks[0, 1]).any()
        # Channel order agrees with the radiological split of the ground truth.
        assert float(dice_score(masks[0, 0], target == 1)) > float(
            dice_score(masks[0, 0], target == 2)
        )


def test_dice_floor_on_real_validation_images(
    segmenter: LungSegmenter, val_pairs: list[tuple[torch.Tensor, torch.Tensor, Path]]
) -> None:
    scores = []
    for image, target, _ in val_pairs:
        masks = segmenter.predict(image[None])[0]
        ok = target != 255
        both = dice_score(masks.any(0), (target == 1) | (target == 2), ok)
        each = dice_score(masks, torch.stack([target == 1, target == 2]), ok)
        assert float(each.min()) > 0.8, f"per-lung Dice {each.tolist()}"
        scores.append(float(both))
    assert min(scores) > 0.88 and sum(scores) / len(scores) > 0.92, scores


def test_inputs_path_pil_numpy_and_batch_agree(
    segmenter: LungSegmenter, val_pairs: list[tuple[torch.Tensor, torch.Tensor, Path]]
) -> None:
    image, _, path = val_pairs[-1]
    want = segmenter.predict(image[None])
    assert torch.equal(segmenter.predict(path), want)
    assert torch.equal(segmenter.predict(str(path)), want)
    u8 = (image[0].numpy() * 255).round().astype(np.uint8)
    assert torch.equal(segmenter.predict(Image.fromarray(u8)), want)
    assert torch.equal(segmenter.predict(u8), want)
    assert torch.equal(segmenter.predict(image), want)
    small = torch.nn.functional.interpolate(image[None], size=(96, 80), mode="bilinear")
    batch = segmenter.predict(torch.cat([small, small.flip(-1)]))
    assert batch.shape == (2, 2, 96, 80)
    assert torch.equal(batch[0], segmenter.predict(small)[0])


def test_quality_flags_on_real_and_blank_images(
    segmenter: LungSegmenter, val_pairs: list[tuple[torch.Tensor, torch.Tensor, Path]]
) -> None:
    image = val_pairs[0][0]
    pred = segmenter.predict_with_quality(torch.stack([image, torch.full_like(image, 0.5)]))
    assert pred.masks.shape == (2, 2, *image.shape[-2:])
    assert pred.ok.tolist() == [True, False]
    assert pred.quality[1].reasons


def test_predict_validates_input(segmenter: LungSegmenter) -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        segmenter.predict(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        segmenter.predict(torch.zeros(1, 1, 64, 64, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        segmenter.predict(np.full((32, 32), 3.0))
    with pytest.raises(ValueError, match="batch_size"):
        LungSegmenter(batch_size=0)


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    """(row, col) centre of a non-empty ``(H, W)`` mask."""
    rows = torch.arange(mask.shape[0], dtype=torch.float64).view(-1, 1)
    cols = torch.arange(mask.shape[1], dtype=torch.float64).view(1, -1)
    w = mask.double()
    return torch.stack([(w * rows).sum() / w.sum(), (w * cols).sum() / w.sum()])


def test_predicted_lungs_are_not_shifted_against_truth(
    segmenter: LungSegmenter, data_root: Path
) -> None:
    # The first bundled model learned masks ~4 px (at 512 px) down-right of the truth,
    # because its training targets were resized with the legacy "nearest" mode. Over 16
    # validation images the mean centroid offset is ~0 when the targets are centred.
    offsets = []
    for image, truth, _ in _validation_pairs(data_root, 12, 4):
        pred = segmenter.predict(image[None])[0].any(0)
        scale = 512.0 / torch.tensor(image.shape[-2:], dtype=torch.float64)
        offsets.append((_centroid(pred) - _centroid((truth == 1) | (truth == 2))) * scale)
    mean = torch.stack(offsets).mean(0)
    assert mean.abs().max() < 2.0, f"mean (row, col) offset in 512-px pixels: {mean.tolist()}"
