"""DICOM reading: the display pipeline on synthetic files, then the real films.

Synthetic files (written with pydicom) check the maths of each step against pydicom's
own LUT functions; the real films of ``dicom-cxr/`` check what a user sees. Each real
film is decoded once per module (the 2k x 2k JPEG 2000 ones take about a second).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cxr_curriculum.data import (
    DicomSupportError,
    ImageReadError,
    UnlabeledImages,
    is_image_file,
    read_dicom_meta,
    read_image,
)
from cxr_curriculum.data.formats import sniff_format
from cxr_curriculum.data.windowing import linear_window, minmax_window, percentile_window

pydicom = pytest.importorskip("pydicom", reason="needs the 'dicom' extra")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_windowing  # noqa: E402
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid  # noqa: E402

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")


def _dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "SECRET-PID-42"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def _ramp(h: int = 24, w: int = 32, top: int = 4000) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * top // (h * w - 1)).astype(np.uint16)


def _save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


# --- windowing maths against pydicom's apply_windowing ---------------------------


@settings(max_examples=60, deadline=None)
@given(
    center=st.floats(-2000, 70000),
    width=st.floats(1, 70000),
    function=st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID"]),
    seed=st.integers(0, 2**16),
)
def test_linear_window_matches_pydicom(
    center: float, width: float, function: str, seed: int
) -> None:
    values = np.random.default_rng(seed).integers(0, 65536, size=(6, 7)).astype(np.uint16)
    ds = _dataset(values, bits=16)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    with np.errstate(over="ignore"):  # pydicom's SIGMOID overflows far from the centre
        reference = apply_windowing(values, ds) / 65535.0  # y range 0..2**16-1
    ours = linear_window(values.astype(np.float64), center, width, function)
    np.testing.assert_allclose(ours, reference, atol=1e-9)
    assert ours.min() >= 0.0 and ours.max() <= 1.0


def test_minmax_and_percentile_windows() -> None:
    x = np.array([[0.0, 10.0], [20.0, 1000.0]])
    np.testing.assert_allclose(minmax_window(x), x / 1000.0)
    assert np.all(minmax_window(np.full((3, 3), 7.0)) == 0.0)  # constant: no division by 0
    out = percentile_window(np.arange(1001.0), 10.0, 90.0)
    assert out[100] == 0.0 and out[900] == 1.0 and out[500] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="percentiles"):
        percentile_window(x, 50.0, 50.0)
    with pytest.raises(ValueError, match="width >= 1"):
        linear_window(x, 10.0, 0.5)


# --- the pipeline on synthetic files -----------------------------------------------


def test_modality_lut_window_and_monochrome1(tmp_path: Path) -> None:
    stored = _ramp()
    ds = _dataset(stored, photometric="MONOCHROME1")
    ds.RescaleSlope, ds.RescaleIntercept = 2.0, -1000.0
    ds.WindowCenter, ds.WindowWidth = 2000.0, 4000.0
    path = _save(ds, tmp_path / "m1.dcm")
    modality = apply_modality_lut(stored, ds)  # pydicom's modality LUT: 2 x - 1000
    # pydicom's window output spans the rescaled stored range [-1000, 7190]:
    expected = 1.0 - (apply_windowing(modality.copy(), ds) + 1000.0) / 8190.0
    img = read_image(path)
    assert img.shape == (1, 24, 32) and img.dtype == torch.float32
    np.testing.assert_allclose(img[0].numpy(), expected, atol=1e-6)
    assert float(img[0, 0, 0]) == 1.0  # lowest value of a MONOCHROME1 film is white
    # "minmax" and "percentile" ignore the window; the inversion still applies.
    lo, hi = modality.min(), modality.max()
    minmax = read_image(path, window="minmax")[0].numpy()
    np.testing.assert_allclose(minmax, 1.0 - (modality - lo) / (hi - lo), atol=1e-6)
    assert read_image(path, window="percentile").shape == (1, 24, 32)
    with pytest.raises(ValueError, match="window must be one of"):
        read_image(path, window="soft-tissue")  # type: ignore[arg-type]


def test_bits_above_bits_stored_are_masked(tmp_path: Path) -> None:
    stored = _ramp(top=4095)
    noisy = stored | 0xF000  # overlay bits above the 12 stored ones
    clean = _save(_dataset(stored), tmp_path / "clean.dcm")
    dirty = _save(_dataset(noisy), tmp_path / "dirty.dcm")
    torch.testing.assert_close(read_image(dirty), read_image(clean), rtol=0, atol=0)


def test_voi_lut_sequence_and_voi_policy(tmp_path: Path) -> None:
    stored = _ramp(top=255)
    ds = _dataset(stored, bits=8)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.add_new("LUTData", "US", [int(v) for v in np.arange(256) ** 2 // 16])  # 0 .. 4064
    ds.VOILUTSequence = [item]
    ds.WindowCenter, ds.WindowWidth = 10.0, 5.0  # the LUT takes precedence
    path = _save(ds, tmp_path / "lut.dcm")
    img = read_image(path, window="voi")[0].numpy()
    np.testing.assert_allclose(img, (stored.astype(np.float64) ** 2 // 16) / 4064.0, atol=1e-6)
    plain = _save(_dataset(stored), tmp_path / "plain.dcm")
    with pytest.raises(ImageReadError, match=r"no VOI window or VOI LUT.*window='voi'"):
        read_image(plain, window="voi")
    auto = read_image(plain)[0].numpy()  # auto without a VOI: min-max
    np.testing.assert_allclose(auto, stored / stored.max(), atol=1e-6)


def test_invalid_window_falls_back_under_auto_only(tmp_path: Path) -> None:
    ds = _dataset(_ramp())
    ds.WindowCenter, ds.WindowWidth = 100.0, 0.0  # invalid for LINEAR
    path = _save(ds, tmp_path / "w0.dcm")
    np.testing.assert_allclose(read_image(path)[0], read_image(path, window="minmax")[0])
    with pytest.raises(ImageReadError, match="invalid VOI window"):
        read_image(path, window="voi")


def _multi_frame(tmp_path: Path) -> Path:
    ds = _dataset(np.stack([_ramp(), _ramp()]))
    ds.NumberOfFrames = 2
    return _save(ds, tmp_path / "cine.dcm")


def _no_pixels(tmp_path: Path) -> Path:
    ds = _dataset(_ramp())
    del ds.PixelData
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    return _save(ds, tmp_path / "report.dcm")


def _palette(tmp_path: Path) -> Path:
    return _save(_dataset(_ramp(), photometric="PALETTE COLOR"), tmp_path / "palette.dcm")


def _truncated(tmp_path: Path) -> Path:
    full = _save(_dataset(_ramp()), tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(full[: len(full) - 500])
    return tmp_path / "cut.dcm"


def _cut_in_header(tmp_path: Path) -> Path:
    full = _save(_dataset(_ramp()), tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut300.dcm").write_bytes(full[:300])
    return tmp_path / "cut300.dcm"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_multi_frame, "multi-frame DICOM (2 frames)"),
        (_no_pixels, "DICOM object without pixel data (Basic Text SR Storage)"),
        (_palette, "unsupported DICOM Photometric Interpretation PALETTE COLOR"),
        (_truncated, "corrupt or truncated DICOM pixel data"),
        (_cut_in_header, "truncated DICOM file (300 bytes"),
    ],
)
def test_unusable_dicom_objects_never_leak_identifiers(
    tmp_path: Path,
    make: Callable[[Path], Path],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = make(tmp_path)
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageReadError) as info:
            read_image(path)
    assert info.value.path == path and info.value.reason.startswith(reason)
    shown = str(info.value) + caplog.text + " ".join(str(w.message) for w in caught)
    assert "Doe" not in shown and "SECRET" not in shown


def test_meta_keeps_patient_id_out_of_repr(tmp_path: Path) -> None:
    ds = _dataset(_ramp())
    ds.ViewPosition, ds.PixelSpacing, ds.BodyPartExamined = "AP", [0.2, 0.25], "CHEST"
    path = _save(ds, tmp_path / "x.dcm")
    meta = read_dicom_meta(path)
    assert (meta.rows, meta.columns, meta.bits_stored, meta.frames) == (24, 32, 12, 1)
    assert meta.view_position == "AP" and meta.pixel_spacing == (0.2, 0.25)
    assert meta.patient_id == "SECRET-PID-42" and "SECRET" not in repr(meta)
    with pytest.raises(ImageReadError, match="not a DICOM file"):
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "p.png")
        read_dicom_meta(tmp_path / "p.png")


def test_without_the_dicom_extra_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(_dataset(_ramp()), tmp_path / "x.dcm")
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if it were not installed
    with pytest.raises(DicomSupportError, match=r'pip install "cxr_curriculum\[dicom\]"'):
        read_image(path)
    # An environment problem, not a bad file: never a silent skip.
    with pytest.raises(DicomSupportError):
        UnlabeledImages(tmp_path, on_error="skip")


def test_acr_nema_without_preamble_and_extensionless_detection(tmp_path: Path) -> None:
    ds = _dataset(_ramp())
    del ds.file_meta
    path = tmp_path / "CR-CHEST-0001"
    pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM" and sniff_format(path) == "acr-nema"
    np.testing.assert_allclose(read_image(path)[0], _ramp() / _ramp().max(), atol=1e-6)
    uid_named = tmp_path / "1.2.840.113619.2.5"
    uid_named.write_bytes(_save(_dataset(_ramp()), tmp_path / "y.dcm").read_bytes())
    (tmp_path / "notes").write_text("a text file without a suffix")
    (tmp_path / "DICOMDIR").write_bytes(uid_named.read_bytes())
    assert is_image_file(path) and is_image_file(uid_named)
    assert not is_image_file(tmp_path / "notes") and not is_image_file(tmp_path / "DICOMDIR")
    names = [p.name for p in UnlabeledImages(tmp_path).files]
    assert names == ["1.2.840.113619.2.5", "CR-CHEST-0001", "y.dcm"]


# --- the real films ------------------------------------------------------------------

DICOM_DIR = "dicom-cxr"
RG1 = "wg04-rg1/RG1_{}.dcm"
MONOCHROME1_FILMS = (
    "wg04-rg1/RG1_UNCR.dcm",
    "canon-dx/966_fixed.dcm",
    "acr-nema/CR-MONO1-10-chest",
)
SIIM = (
    "siim-acr-pneumothorax/dicom-images-train/"
    "1.2.276.0.7230010.3.1.2.8323329.6904.1517875201.850818/"
    "1.2.276.0.7230010.3.1.3.8323329.6904.1517875201.850817/"
    "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
)


@pytest.fixture(scope="module")
def films(data_root: Path) -> dict[str, torch.Tensor]:
    """Every real DICOM film, read once: relative path -> (1, H, W)."""
    folder = data_root / DICOM_DIR
    names = [RG1.format(e) for e in ("UNCR", "J2KR", "J2KI", "JLSN")]
    names += ["canon-dx/966_fixed.dcm", "acr-nema/CR-MONO1-10-chest"]
    names += ["nih-dicom/00000001_000.dcm", SIIM, "modified/siim-edited-to-MONOCHROME1.dcm"]
    return {name: read_image(folder / name) for name in names}


@pytest.fixture(scope="module")
def segmenter() -> object:
    from cxr_curriculum import LungSegmenter

    return LungSegmenter()


@pytest.mark.realdata
def test_rg1_tiff_preamble_is_read_as_dicom(
    data_root: Path, films: dict[str, torch.Tensor]
) -> None:
    path = data_root / DICOM_DIR / RG1.format("UNCR")
    with Image.open(path) as tiff:  # the trap: Pillow takes the preamble for a TIFF
        assert tiff.format == "TIFF"
        raw = np.asarray(tiff, dtype=np.float64)
    assert sniff_format(path) == "dicom"
    ours = films[RG1.format("UNCR")][0].numpy()
    assert ours.shape == (1955, 1841)
    # MONOCHROME1, window 15000/30000: ours is 1 - window(raw), not the raw values.
    np.testing.assert_allclose(ours, 1.0 - linear_window(raw, 15000.0, 30000.0), atol=1e-6)


@pytest.mark.realdata
def test_rg1_encodings_agree(films: dict[str, torch.Tensor]) -> None:
    uncompressed = films[RG1.format("UNCR")]
    assert torch.equal(films[RG1.format("J2KR")], uncompressed)  # lossless: identical
    # Lossy copies, measured: J2KI max 0.0134 / mean 0.0017, JLSN max 1.3e-4 / mean 7.4e-5.
    for name, max_diff, mean_diff in (("J2KI", 0.02, 0.003), ("JLSN", 3e-4, 1.5e-4)):
        diff = (films[RG1.format(name)] - uncompressed).abs()
        assert 0.0 < float(diff.max()) < max_diff and float(diff.mean()) < mean_diff, name


@pytest.mark.realdata
@pytest.mark.parametrize("name", MONOCHROME1_FILMS)
def test_monochrome1_films_have_dark_lungs(
    name: str, films: dict[str, torch.Tensor], segmenter: object
) -> None:
    image = films[name][None]  # (1, 1, H, W)
    small = F.interpolate(image, scale_factor=512 / max(image.shape[-2:]), mode="area")
    lungs = segmenter.predict(small).any(dim=1)[0]  # type: ignore[attr-defined]
    inside, outside = float(small[0, 0][lungs].mean()), float(small[0, 0][~lungs].mean())
    assert inside < outside, (name, inside, outside)
    # Read the wrong way round (not inverted), the same film is barely recognised.
    wrong = segmenter.predict(1.0 - small).any(dim=1)[0]  # type: ignore[attr-defined]
    assert float(lungs.float().mean()) > 1.5 * float(wrong.float().mean()) > 0.0


@pytest.mark.realdata
def test_edited_monochrome1_copy_is_the_inverse(films: dict[str, torch.Tensor]) -> None:
    original, edited = films[SIIM], films["modified/siim-edited-to-MONOCHROME1.dcm"]
    torch.testing.assert_close(edited, 1.0 - original, rtol=0, atol=1e-6)
    assert float(original.std()) > 0.1


@pytest.mark.realdata
def test_nih_dicom_matches_nih_png(data_root: Path, films: dict[str, torch.Tensor]) -> None:
    png = read_image(data_root / DICOM_DIR / "nih-dicom" / "00000001_000_nih_png_512.png")
    dicom = films["nih-dicom/00000001_000.dcm"]
    assert dicom.shape == (1, 1024, 1024) and png.shape == (1, 512, 512)
    small = F.interpolate(dicom[None], size=(512, 512), mode="bilinear", antialias=True)[0]
    corr = np.corrcoef(small.flatten().numpy(), png.flatten().numpy())[0, 1]
    assert corr > 0.9999  # measured 0.99999
    assert float((small - png).abs().mean()) < 0.002  # measured 0.0011


@pytest.mark.realdata
def test_acr_nema_film_and_metadata(data_root: Path, films: dict[str, torch.Tensor]) -> None:
    folder = data_root / DICOM_DIR
    acr = films["acr-nema/CR-MONO1-10-chest"]
    assert acr.shape == (1, 440, 440) and 0.0 <= float(acr.min()) < float(acr.max()) <= 1.0
    meta = read_dicom_meta(folder / "acr-nema" / "CR-MONO1-10-chest")
    assert (meta.modality, meta.view_position, meta.bits_stored) == ("CR", "PA", 10)
    assert meta.transfer_syntax == "Implicit VR Little Endian"
    canon = read_dicom_meta(folder / "canon-dx" / "966_fixed.dcm")
    assert canon.pixel_spacing == (0.16, 0.16) and canon.photometric == "MONOCHROME1"
    assert read_dicom_meta(folder / RG1.format("UNCR")).pixel_spacing is None  # tag is 0\\0


@pytest.mark.realdata
def test_missing_decoder_plugin_names_the_extra(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})  # as if no plugin were installed
    with pytest.raises(DicomSupportError, match=r"JPEG 2000.*cxr_curriculum\[dicom\]"):
        read_image(data_root / DICOM_DIR / RG1.format("J2KR"))


@pytest.mark.realdata
def test_loaders_and_segmenter_take_a_dicom_folder(data_root: Path, segmenter: object) -> None:
    folder = data_root / DICOM_DIR
    pool = UnlabeledImages(folder)
    names = {p.name for p in pool.files}
    assert len(pool) == 11 and "CR-MONO1-10-chest" in names  # 10 DICOM + NIH's PNG
    k = [p.name for p in pool.files].index("CR-MONO1-10-chest")
    assert pool[k].shape == (1, 440, 440)
    meta = pool.dicom_meta(k)
    assert meta is not None and meta.modality == "CR"
    assert pool.dicom_meta([p.suffix for p in pool.files].index(".png")) is None
    path = folder / "acr-nema" / "CR-MONO1-10-chest"
    by_path = segmenter.predict(path)  # type: ignore[attr-defined]
    assert torch.equal(by_path, segmenter.predict(read_image(path)[None]))  # type: ignore[attr-defined]
    assert (
        by_path.shape == (1, 2, 440, 440) and 0.2 < float(by_path.any(dim=1).float().mean()) < 0.6
    )


@pytest.mark.realdata
@pytest.mark.parametrize(
    "film", ["nih-dicom/00000001_000.dcm", "canon-dx/966_fixed.dcm", "acr-nema/CR-MONO1-10-chest"]
)
def test_a_real_film_cut_to_a_few_hundred_bytes_is_called_truncated(
    data_root: Path, tmp_path: Path, film: str
) -> None:
    # Issue 18: such a file was reported as "DICOM object without pixel data (unknown SOP
    # class)"; it is a cut copy, and the message says so.
    data = (data_root / "dicom-cxr" / film).read_bytes()
    for size in (132, 200, 300, 400, 600, 1000, 5000, len(data) // 2):
        cut = tmp_path / f"cut{size}"
        cut.write_bytes(data[:size])
        with pytest.raises(ImageReadError) as info:
            read_image(cut)
        assert "truncated" in info.value.reason, (size, info.value.reason)
        assert "without pixel data (unknown" not in info.value.reason


@pytest.mark.realdata
def test_a_header_window_outside_the_film_falls_back_to_its_own_range(
    data_root: Path, tmp_path: Path
) -> None:
    # Issue 18: a valid 16-bit film whose header window lies outside its stored values read
    # as a constant image under window="auto". Edited copy of a real 15-bit film.
    from cxr_curriculum.data import DicomWindowWarning, window_fallbacks
    from cxr_curriculum.data.dicom_pixels import read_dicom

    source = data_root / "dicom-cxr" / "wg04-rg1" / "RG1_UNCR.dcm"
    ds = pydicom.dcmread(source)
    stored = ds.pixel_array
    assert ds.BitsStored == 15 and 0 < stored.min() < stored.max() < 60000 - 500
    ds.WindowCenter, ds.WindowWidth = 60000, 1000  # above every stored value
    ds.PixelData = ds.PixelData  # keep the pixels as they are
    hidden = tmp_path / "hidden.dcm"
    ds.save_as(hidden)
    voi = read_image(hidden, window="voi")[0]
    assert float(voi.std()) == 0.0  # what "auto" showed before: a constant image
    with pytest.warns(DicomWindowWarning, match=rf"{hidden}: its VOI window \(center 60000"
                      r", width 1000\) puts 100\.0 % of the film's pixels below it"):  # fmt: skip
        auto = read_image(hidden)[0]
    assert torch.equal(auto, read_image(hidden, window="minmax")[0])  # the film's own range
    assert float(auto.std()) > 0.1
    pixels = read_dicom(hidden)
    assert pixels.window == "minmax-fallback" and "window='voi'" in str(pixels.note)
    assert str(hidden) in window_fallbacks()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file: no second warning
        read_image(hidden)
        healthy = read_dicom(source)  # the film's own window shows it: no fallback
    assert healthy.window == "voi-window" and healthy.note is None
