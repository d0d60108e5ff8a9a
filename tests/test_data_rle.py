"""SIIM-ACR run-length codes: against the challenge's published algorithm and real rows.

The reference decoder and encoder below are written from the challenge's description
(``mask_functions.py``: relative starts, pixels taken column by column, i.e.
``mask.reshape(W, H).T``), pixel by pixel, independently of the library's vectorised
code. The real rows come from ``label-tables/siim-pneumothorax-train-rle.csv.gz``.
"""

from __future__ import annotations

import csv
import gzip
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cxr_curriculum.data import decode_rle, decode_rle_union, encode_rle


def reference_decode(code: str, height: int, width: int) -> np.ndarray:
    """The challenge's ``rle2mask``: relative starts, then ``reshape(W, H).T``."""
    flat = np.zeros(width * height, dtype=np.uint8)
    numbers = [int(x) for x in code.split()]
    position = 0
    for start, length in zip(numbers[0::2], numbers[1::2], strict=True):
        position += start
        flat[position : position + length] = 1
        position += length
    return flat.reshape(width, height).T


def reference_encode(mask: np.ndarray) -> str:
    """Pixel by pixel, column by column; each start counted from the previous run's end."""
    height, width = mask.shape
    out: list[int] = []
    since_last, run, inside = 0, 0, False
    for x in range(width):
        for y in range(height):
            if mask[y, x]:
                if not inside:
                    out.append(since_last)
                    inside, run = True, 0
                run += 1
            else:
                if inside:
                    out.append(run)
                    inside, since_last = False, 0
                since_last += 1
    if inside:
        out.append(run)
    return " ".join(map(str, out)) if out else "-1"


@settings(max_examples=150, deadline=None)
@given(
    arrays(
        np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=st.sampled_from([0, 1])
    )
)
def test_roundtrip_against_the_reference(mask: np.ndarray) -> None:
    shape = (mask.shape[0], mask.shape[1])
    code = encode_rle(torch.from_numpy(mask))
    assert code == reference_encode(mask)
    assert torch.equal(decode_rle(code, shape), torch.from_numpy(mask).unsqueeze(0))
    if code != "-1":
        np.testing.assert_array_equal(reference_decode(code, *shape), mask)
    absolute = encode_rle(mask, relative=False)
    assert torch.equal(decode_rle(absolute, shape, relative=False)[0], torch.from_numpy(mask))


def test_absolute_form_and_orientation() -> None:
    # Pixels 1-3 (1-based) of a 3x2 mask, column by column: the whole first column.
    expected = torch.tensor([[[1, 0], [1, 0], [1, 0]]], dtype=torch.uint8)
    assert torch.equal(decode_rle("1 3", (3, 2), relative=False), expected)
    assert torch.equal(decode_rle("0 3", (3, 2)), expected)
    assert torch.equal(decode_rle(" -1 ", (3, 2)), torch.zeros(1, 3, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="overlaps"):
        decode_rle("4 1 2 1", (3, 2), relative=False)


@pytest.mark.parametrize(
    ("code", "message"),
    [("1 2 3", "pairs"), ("1 x", "integers"), ("5 2", "past the 6 pixels"), ("1 0", "empty")],
)
def test_malformed_codes(code: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_rle(code, (3, 2))


@pytest.fixture(scope="module")
def real_codes(data_root: Path) -> dict[str, list[str]]:
    """``ImageId -> codes`` of the real table's pneumothorax images (csv module)."""
    path = data_root / "label-tables" / "siim-pneumothorax-train-rle.csv.gz"
    codes: dict[str, list[str]] = defaultdict(list)
    with gzip.open(path, "rt", newline="") as fh:
        for image_id, code in list(csv.reader(fh))[1:]:
            if code.strip() != "-1":
                codes[image_id].append(code.strip())
    return dict(codes)


@pytest.mark.realdata
def test_real_codes_decode_like_the_challenge(real_codes: dict[str, list[str]]) -> None:
    rows = [c for codes in real_codes.values() for c in codes]
    sample = random.Random(0).sample(rows, 80)
    centroids = []
    for code in sample:
        mask = decode_rle(code)
        assert mask.shape == (1, 1024, 1024) and mask.dtype == torch.uint8
        np.testing.assert_array_equal(mask[0].numpy(), reference_decode(code, 1024, 1024))
        assert encode_rle(mask) == code  # the published codes are canonical
        ys, xs = np.nonzero(mask[0].numpy())
        assert ys.size > 0
        centroids.append((ys.mean(), xs.mean()))
    rows_c, cols_c = np.array(centroids).T
    # Pneumothorax gathers at the apex of an upright film: masks lie high, to either
    # side of the mediastinum. Rows and columns swapped would put them mid-height.
    assert rows_c.mean() < 0.4 * 1024 < cols_c.mean()
    assert np.mean(np.abs(cols_c - 512) < 64) < 0.15


@pytest.mark.realdata
def test_real_multi_component_images_are_unions(real_codes: dict[str, list[str]]) -> None:
    multi = sorted(i for i, c in real_codes.items() if len(c) > 1)
    assert len(multi) > 500  # 624 images have several components
    for image_id in random.Random(1).sample(multi, 15):
        parts = [decode_rle(c) for c in real_codes[image_id]]
        union = decode_rle_union(real_codes[image_id])
        assert torch.equal(union, torch.stack(parts).amax(dim=0))
        assert 0 < int(union.sum()) <= sum(int(p.sum()) for p in parts)
