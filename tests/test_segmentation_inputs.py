"""LungSegmenter input validation: bad input is refused, every input type agrees.

Regression tests for issue 12 ("bad input gets a clear error, never a silent wrong
answer"): before the fix one NaN pixel gave an all-empty mask, float tensors in
[0, 255] and infinite pixels were clamped into wrong masks, 1x1 numpy/PIL images
bypassed the size minimum and a (0, 0) array raised torch's internal message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_curriculum.data import KermanyPneumonia, read_image
from cxr_curriculum.segmentation import LungSegmenter, dice_score
from cxr_curriculum.segmentation.inputs import as_batch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def segmenter() -> LungSegmenter:
    return LungSegmenter()


@pytest.fixture(scope="module")
def kermany_file(data_root: Path) -> Path:
    """One real Kermany test image (224x224 JPEG)."""
    return KermanyPneumonia(data_root / "kermany-pneumonia", split="test").files[0]


def _with(value: float) -> torch.Tensor:
    x = torch.full((2, 1, 32, 32), 0.5)
    x[1, 0, 5, 7] = value
    return x


BAD_INPUTS: dict[str, tuple[Callable[[], object], str]] = {
    "nan pixel": (lambda: _with(float("nan")), r"finite.*image 1, row 5, column 7"),
    "inf pixel": (lambda: _with(float("inf")), r"finite.*1 NaN/inf"),
    "-inf pixel": (lambda: _with(float("-inf")), r"finite"),
    "float tensor 0-255": (lambda: torch.full((1, 1, 32, 32), 200.0), r"\[0, 1\].*200.*255"),
    "float numpy 0-255": (lambda: np.full((32, 32), 200.0), r"\[0, 1\].*200.*255"),
    "negative floats": (lambda: _with(-0.5), r"\[0, 1\], found \[-0.5, 0.5\]"),
    "nan numpy": (lambda: np.full((32, 32), np.nan), r"finite"),
    "1x1 numpy": (lambda: np.zeros((1, 1), np.uint8), r"at least 8x8.*\(1, 1, 1, 1\)"),
    "1x1 PIL": (lambda: Image.new("L", (1, 1)), r"at least 8x8.*\(1, 1, 1, 1\)"),
    "0x0 numpy": (lambda: np.zeros((0, 0), np.uint8), r"at least 8x8.*\(1, 1, 0, 0\)"),
    "thin tensor": (lambda: torch.rand(1, 1, 4, 100), r"at least 8x8"),
    "empty batch": (lambda: torch.rand(0, 1, 32, 32), r"non-empty"),
    "int32 numpy": (lambda: np.zeros((32, 32), np.int32), r"uint8, uint16 or float.*int32"),
    "int64 tensor": (lambda: torch.zeros(1, 1, 32, 32, dtype=torch.int64), r"int64"),
    "rgb tensor": (lambda: torch.rand(1, 3, 32, 32), r"\(B, 1, H, W\)"),
    "mode I PIL out of range": (
        lambda: Image.fromarray(np.full((32, 32), 70000, np.int32), mode="I"),
        r"0\.\.65535",
    ),
    "not an image": (lambda: [[0.5] * 32] * 32, r"tensor, numpy array, PIL image or path"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_what_was_wrong(segmenter: LungSegmenter, name: str) -> None:
    make, message = BAD_INPUTS[name]
    for call in (segmenter.predict, segmenter.predict_proba, segmenter.predict_with_quality):
        with pytest.raises(ValueError, match=message):
            call(make())  # type: ignore[arg-type]


def test_missing_path_names_the_file(segmenter: LungSegmenter, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nope\.png"):
        segmenter.predict(tmp_path / "nope.png")


@pytest.mark.realdata
def test_every_input_type_gives_the_same_mask(segmenter: LungSegmenter, kermany_file: Path) -> None:
    image = read_image(kermany_file)
    want = segmenter.predict(image)
    assert want.shape == (1, 2, *image.shape[-2:]) and want[0, 0].any() and want[0, 1].any()
    u8 = np.array(Image.open(kermany_file).convert("L"))
    same = {
        "str path": str(kermany_file),
        "PathLike": kermany_file,
        "uint8 numpy": u8,
        "uint16 numpy": u8.astype(np.uint16) * 257,  # 257 / 65535 == 1 / 255
        "uint8 tensor": torch.from_numpy(u8)[None],
        "uint8 batch": torch.from_numpy(u8)[None, None],
        "PIL L": Image.fromarray(u8),
        "PIL RGB": Image.fromarray(u8).convert("RGB"),
        "PIL I;16": Image.fromarray(u8.astype(np.uint16) * 257),
        "float64 numpy": u8 / 255.0,
    }
    for name, value in same.items():
        assert torch.equal(as_batch(value), image[None]), name  # type: ignore[arg-type]
        assert torch.equal(segmenter.predict(value), want), name  # type: ignore[arg-type]


@pytest.mark.realdata
def test_predict_reads_dicom_paths_like_the_png_of_the_same_film(
    segmenter: LungSegmenter, data_root: Path
) -> None:
    """NIH image 00000001_000 as DICOM (1024 px) and as NIH's PNG (512 px)."""
    folder = data_root / "dicom-cxr" / "nih-dicom"
    dicom = folder / "00000001_000.dcm"
    try:
        read_image(dicom)
    except ValueError as err:  # read_image without DICOM support (issue 10 not merged)
        pytest.skip(f"read_image cannot read DICOM here: {err}")
    from_dicom = segmenter.predict(str(dicom))
    from_png = segmenter.predict(folder / "00000001_000_nih_png_512.png")
    assert from_dicom.shape == (1, 2, 1024, 1024) and from_png.shape == (1, 2, 512, 512)
    small = torch.nn.functional.interpolate(
        from_dicom.float(), size=(512, 512), mode="nearest-exact"
    ).bool()
    for lung in range(2):
        assert dice_score(small[:, lung], from_png[:, lung]).item() > 0.95
    assert segmenter.predict_with_quality(dicom).ok.tolist() == [True]
