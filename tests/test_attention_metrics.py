"""Lung-attention metrics: hypothesis properties, known values, NaN rules, validation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_curriculum.attention import (
    area_fraction,
    empty_saliency,
    energy_in_mask,
    lift,
    lung_metrics,
    pointing_game,
    rank_accuracy,
    resize_saliency,
    split_midline,
)

SCORES = (energy_in_mask, pointing_game, rank_accuracy)


@st.composite
def map_and_mask(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """A random positive map and a random non-empty, non-full mask, non-square."""
    h = draw(st.integers(3, 12))
    w = draw(st.integers(3, 12).filter(lambda v: v != h))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    sal = torch.rand(2, h, w, generator=g) - 0.3
    mask = torch.rand(2, h, w, generator=g) < 0.4
    mask[:, 0, 0] = True
    mask[:, -1, -1] = False
    return sal, mask


@settings(max_examples=40, deadline=None)
@given(map_and_mask())
def test_uniform_map_scores_the_area_fraction(sm: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, mask = sm
    uniform = torch.full(mask.shape, 0.7)
    area = area_fraction(mask)
    for fn in SCORES:
        torch.testing.assert_close(fn(uniform, mask), area, msg=fn.__name__)
    torch.testing.assert_close(lift(uniform, mask), torch.ones(2))


@settings(max_examples=40, deadline=None)
@given(map_and_mask())
def test_map_inside_mask_scores_one(sm: tuple[torch.Tensor, torch.Tensor]) -> None:
    sal, mask = sm
    inside = sal.abs() * mask + 0.01 * mask  # strictly positive in the mask, 0 outside
    outside = -inside  # all mass negative: nothing positive anywhere
    for fn in SCORES:
        torch.testing.assert_close(fn(inside, mask), torch.ones(2), msg=fn.__name__)
        assert torch.isnan(fn(outside, mask)).all(), fn.__name__
    torch.testing.assert_close(lift(inside, mask), 1 / area_fraction(mask))


@settings(max_examples=40, deadline=None)
@given(map_and_mask(), st.floats(1e-3, 1e3))
def test_scale_invariance(sm: tuple[torch.Tensor, torch.Tensor], scale: float) -> None:
    sal, mask = sm
    for fn in (*SCORES, lift):
        torch.testing.assert_close(fn(sal * scale, mask), fn(sal, mask), msg=fn.__name__)


@settings(max_examples=40, deadline=None)
@given(map_and_mask())
def test_energy_matches_a_plain_loop(sm: tuple[torch.Tensor, torch.Tensor]) -> None:
    sal, mask = sm
    for b in range(2):
        pos = [max(float(v), 0.0) for v in sal[b].flatten()]
        inside = sum(p for p, m in zip(pos, mask[b].flatten().tolist(), strict=True) if m)
        assert energy_in_mask(sal, mask)[b].item() == pytest.approx(inside / sum(pos), rel=1e-5)


def test_asymmetric_non_square_mask_catches_axis_swaps() -> None:
    # 6 x 10 image, mask = top-left 2 x 3 block; the map's peak sits in the block.
    mask = torch.zeros(1, 6, 10, dtype=torch.bool)
    mask[0, :2, :3] = True
    sal = torch.zeros(1, 6, 10)
    sal[0, 0, 2] = 1.0  # row 0, column 2: inside; its transpose (2, 0) would be outside
    sal[0, 5, 9] = 0.5
    assert energy_in_mask(sal, mask).item() == pytest.approx(1 / 1.5)
    assert pointing_game(sal, mask).item() == 1.0
    assert pointing_game(sal.flip(-1), mask).item() == 0.0
    assert pointing_game(sal.flip(-2), mask).item() == 0.0
    # A one-hot map at every (row, col) scores exactly mask[row, col]: any swap of axes
    # (or a flip) inside the metrics would break this on a non-square, asymmetric mask.
    onehot = torch.eye(60).view(60, 6, 10)
    expected = mask[0].flatten().float()
    many = mask.expand(60, 6, 10)
    torch.testing.assert_close(energy_in_mask(onehot, many), expected)
    torch.testing.assert_close(pointing_game(onehot, many), expected)
    # Per-lung split follows the image's left half = patient's right lung.
    lungs = split_midline(mask)
    assert lungs[:, 0].sum() == 6 and lungs[:, 1].sum() == 0


def test_rank_accuracy_known_value() -> None:
    mask = torch.tensor([[[True, True, False, False]]])
    sal = torch.tensor([[[4.0, 1.0, 3.0, 0.0]]])  # top-2 = {4 (in), 3 (out)}
    assert rank_accuracy(sal, mask).item() == pytest.approx(0.5)
    assert pointing_game(sal, mask).item() == 1.0
    assert energy_in_mask(sal, mask).item() == pytest.approx(5 / 8)
    assert lift(sal, mask).item() == pytest.approx((5 / 8) / 0.5)


def test_zero_map_gives_nan_and_flag() -> None:
    mask = torch.zeros(2, 4, 5, dtype=torch.bool)
    mask[:, 1:3, 1:3] = True
    sal = torch.rand(2, 4, 5)
    sal[1] = 0.0
    assert empty_saliency(sal).tolist() == [False, True]
    for fn in (*SCORES, lift):
        out = fn(sal, mask)
        assert not math.isnan(out[0].item()) and math.isnan(out[1].item()), fn.__name__


def test_empty_mask_gives_nan_lift_and_rank() -> None:
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    sal = torch.rand(1, 4, 4) + 0.1
    assert energy_in_mask(sal, mask).item() == 0.0
    assert math.isnan(lift(sal, mask).item()) and math.isnan(rank_accuracy(sal, mask).item())


def test_saliency_resized_bilinearly_to_mask() -> None:
    sal = torch.rand(3, 4, 6)
    out = resize_saliency(sal, (8, 12))
    ref = torch.nn.functional.interpolate(sal[:, None], (8, 12), mode="bilinear")[:, 0]
    torch.testing.assert_close(out, ref)
    mask = torch.zeros(3, 8, 12, dtype=torch.bool)
    mask[:, :, :6] = True
    torch.testing.assert_close(energy_in_mask(sal, mask), energy_in_mask(out, mask))


def test_lung_metrics_per_lung_sum() -> None:
    lungs = torch.zeros(2, 2, 8, 10, dtype=torch.bool)
    lungs[:, 0, 2:6, 1:4] = True
    lungs[:, 1, 2:6, 6:9] = True
    sal = torch.rand(2, 8, 10)
    cols = lung_metrics(sal, lungs)
    torch.testing.assert_close(cols["energy_right"] + cols["energy_left"], cols["energy_in_mask"])
    torch.testing.assert_close(cols["area_right"] + cols["area_left"], cols["area_fraction"])


@pytest.mark.parametrize(
    ("sal", "mask"),
    [
        (torch.rand(2, 4, 4), torch.ones(2, 4, 4)),  # float mask
        (torch.rand(2, 1, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool)),  # 4-D saliency
        (torch.rand(3, 4, 4), torch.ones(2, 4, 4, dtype=torch.bool)),  # batch mismatch
    ],
)
def test_bad_inputs_raise(sal: torch.Tensor, mask: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        energy_in_mask(sal, mask)
