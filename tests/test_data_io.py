"""Image and mask reading: formats, value ranges, and a clear error for each bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_curriculum.data import (
    MASK_IGNORE,
    MIN_IMAGE_SIDE,
    ImageReadError,
    bundled_sample_root,
    check_image,
    read_image,
    read_mask,
)


def _gradient(h: int = 24, w: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 3) % 256).astype(np.uint8)


def test_gray_png_is_exact(tmp_path: Path) -> None:
    arr = _gradient()
    Image.fromarray(arr).save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.shape == (1, 24, 32) and img.dtype == torch.float32
    torch.testing.assert_close(img[0], torch.from_numpy(arr).float() / 255.0)


def test_16bit_png_uses_full_range(tmp_path: Path) -> None:
    arr = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) * 85).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    img = read_image(tmp_path / "g16.png")
    assert img.dtype == torch.float32 and float(img.max()) > 0.99
    torch.testing.assert_close(img[0], torch.from_numpy(arr.astype(np.float32) / 65535.0))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_modes_match_pil_luma(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    src = Image.fromarray(rgb).convert(mode)
    src.save(tmp_path / "c.png")
    reference = np.asarray(src.convert("L"), dtype=np.float32) / 255.0  # PIL's own BT.601
    img = read_image(tmp_path / "c.png")
    assert img.shape == (1, 20, 30)
    # PIL rounds luma to 8 bits; we keep float precision.
    assert float((img[0] - torch.from_numpy(reference)).abs().max()) <= 1.0 / 255.0 + 1e-6


def test_jpeg_and_real_sample(tmp_path: Path) -> None:
    arr = _gradient(64, 64)
    Image.fromarray(arr).save(tmp_path / "g.jpeg", quality=95)
    img = read_image(tmp_path / "g.jpeg")
    assert float((img[0] - torch.from_numpy(arr).float() / 255).abs().mean()) < 0.02
    real = next((bundled_sample_root() / "train" / "NORMAL").glob("*.jpeg"))
    x = read_image(real)  # an RGB JPEG radiograph
    assert x.shape == (1, 224, 224) and 0.0 <= float(x.min()) < float(x.max()) <= 1.0


def test_v7_mask_values(tmp_path: Path) -> None:
    raw = np.zeros((10, 12), dtype=np.uint8)
    raw[2:5, 2:5] = 255
    raw[6:8, 6:9] = 127
    Image.fromarray(raw).save(tmp_path / "m.png", format="PNG")
    (tmp_path / "m.png").rename(tmp_path / "m.jpg")  # V7 masks are PNG named .jpg
    mask = read_mask(tmp_path / "m.jpg", ignore_value=127, size=(10, 12))
    assert mask.dtype == torch.uint8 and mask.shape == (1, 10, 12)
    assert int((mask == 1).sum()) == 9 and int((mask == MASK_IGNORE).sum()) == 6
    assert int((mask == 0).sum()) == 120 - 15
    # Without ignore_value, 127 is background.
    assert int((read_mask(tmp_path / "m.jpg") == 1).sum()) == 9


def test_zero_one_mask(tmp_path: Path) -> None:
    raw = np.zeros((8, 8), dtype=np.uint8)
    raw[:4] = 1
    Image.fromarray(raw).save(tmp_path / "m01.png")
    assert int(read_mask(tmp_path / "m01.png").sum()) == 32


# --- bad files: each kind gives ImageReadError naming the file and the reason ---


def _png_bytes(tmp_path: Path) -> bytes:
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "ok.png")
    return (tmp_path / "ok.png").read_bytes()


def _make_bad(tmp_path: Path, kind: str) -> Path:
    if kind == "zero-byte":
        path = tmp_path / "empty.png"
        path.write_bytes(b"")
    elif kind == "truncated-png":
        path = tmp_path / "cut.png"
        data = _png_bytes(tmp_path)
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-jpeg":
        path = tmp_path / "cut.jpeg"
        real = next((bundled_sample_root() / "train" / "PNEUMONIA").glob("*.jpeg")).read_bytes()
        path.write_bytes(real[: len(real) // 2])
    elif kind == "not-an-image":
        path = tmp_path / "notes.png"
        path.write_text("this is a radiology report, not an image\n")
    elif kind == "missing":
        path = tmp_path / "missing.png"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


_REASONS = {
    "zero-byte": "empty file",
    "truncated-png": "truncated",
    "truncated-jpeg": "truncated",
    "not-an-image": "not a PNG/JPEG",
    "missing": "not found",
}


@pytest.mark.parametrize("kind", list(_REASONS))
def test_bad_file_error_names_file_and_reason(tmp_path: Path, kind: str) -> None:
    path = _make_bad(tmp_path, kind)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == path and str(path) in str(err)
    assert _REASONS[kind] in err.reason, err.reason
    assert err.__cause__ is None  # no PIL traceback chained
    assert check_image(path) == str(err)


def test_mask_size_mismatch(tmp_path: Path) -> None:
    Image.fromarray(_gradient(16, 16)).save(tmp_path / "img.png")
    Image.fromarray(np.zeros((16, 20), dtype=np.uint8)).save(tmp_path / "mask.png")
    with pytest.raises(ImageReadError, match=r"mask\.png.*16x20.*16x16"):
        read_mask(tmp_path / "mask.png", size=(16, 16))
    reason = check_image(tmp_path / "img.png", tmp_path / "mask.png")
    assert reason is not None and "does not match" in reason
    assert check_image(tmp_path / "img.png") is None


def test_error_pickles_for_dataloader_workers(tmp_path: Path) -> None:
    import pickle

    err = ImageReadError(tmp_path / "x.png", "empty file (0 bytes)")
    back = pickle.loads(pickle.dumps(err))
    assert back.path == err.path and back.reason == err.reason and str(back) == str(err)


# --- formats other than PNG/JPEG/DICOM are refused by content -------------------------


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("TIFF", "scan.tif"), ("TIFF", "disguised.png"), ("BMP", "x.bmp"), ("GIF", "x.png")],
)
def test_other_formats_are_refused_by_content(tmp_path: Path, fmt: str, name: str) -> None:
    arr = (_gradient(32, 32).astype(np.uint16) * 200) if fmt == "TIFF" else _gradient(32, 32)
    Image.fromarray(arr).save(tmp_path / name, format=fmt)
    with pytest.raises(ImageReadError, match=f"unsupported image format {fmt}") as info:
        read_image(tmp_path / name)
    assert "PNG, JPEG and DICOM are read" in info.value.reason


# --- a documented minimum size --------------------------------------------------------


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 8), (8, 1), (15, 300)])
def test_images_under_the_minimum_side_are_refused(tmp_path: Path, h: int, w: int) -> None:
    Image.fromarray(np.full((h, w), 128, np.uint8)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageReadError, match=rf"image too small \({h}x{w} px") as info:
        read_image(tmp_path / "tiny.png")
    assert f"at least {MIN_IMAGE_SIDE} px" in info.value.reason
    assert read_image(tmp_path / "tiny.png", min_side=0).shape == (1, h, w)
    assert check_image(tmp_path / "tiny.png") == str(info.value)


def test_the_minimum_side_itself_is_accepted(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((MIN_IMAGE_SIDE, 40), np.uint8)).save(tmp_path / "ok.png")
    assert read_image(tmp_path / "ok.png").shape == (1, MIN_IMAGE_SIDE, 40)


# --- ImageReadError rebuilt from a DataLoader worker's message --------------------------


def test_error_rebuilt_from_a_worker_message(tmp_path: Path) -> None:
    folder = tmp_path / "study: 2024"  # a path holding ": "
    folder.mkdir()
    (folder / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    original = ImageReadError(folder / "cut.png", "truncated or corrupt image data (x: y)")
    message = (
        "Caught ImageReadError in DataLoader worker process 0.\nOriginal Traceback (most "
        'recent call last):\n  File "x.py", line 1, in f\n'
        f"cxr_curriculum.data.errors.ImageReadError: {original}\n"
    )
    rebuilt = ImageReadError(message)
    assert rebuilt.path == original.path and rebuilt.reason == original.reason
    assert str(rebuilt) == message  # the worker's traceback is kept
    gone = ImageReadError(f"ImageReadError: {ImageReadError(tmp_path / 'x.png', 'file not found')}")
    assert gone.path == tmp_path / "x.png" and gone.reason == "file not found"
    with pytest.raises(TypeError, match="takes \\(path, reason\\)"):
        ImageReadError("something else entirely")
