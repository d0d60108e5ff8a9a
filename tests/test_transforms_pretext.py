"""Pretext transforms: targets are correct and recoverable, randomness is seeded."""

from __future__ import annotations

import pytest
import torch

from cxr_curriculum.transforms import (
    RELATIVE_POSITIONS,
    JigsawPretext,
    RelativePatchPretext,
    RotationPretext,
    maximal_hamming_permutations,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coordinate_image(h: int, w: int) -> torch.Tensor:
    """Every pixel holds a unique value that encodes its (row, col)."""
    return (torch.arange(h * w, dtype=torch.float64) / (h * w)).view(1, h, w).float()


def _where(img_hw: tuple[int, int], patch: torch.Tensor) -> tuple[int, int]:
    h, w = img_hw
    index = round(patch[0, 0, 0].double().item() * h * w)
    return divmod(index, w)


@pytest.mark.parametrize("seed", range(8))
def test_rotation_back_by_label_recovers_input(seed: int) -> None:
    img = torch.rand(1, 24, 24)
    view, k = RotationPretext()(img, generator=_gen(seed))
    assert k in range(4)
    assert torch.equal(torch.rot90(view, -k, dims=(-2, -1)), img)
    if k:
        assert not torch.equal(view, img)


def test_rotation_labels_cover_all_and_seeded() -> None:
    img = torch.rand(1, 16, 16)
    ks = [RotationPretext()(img, generator=_gen(s))[1] for s in range(40)]
    assert set(ks) == {0, 1, 2, 3}
    assert ks == [RotationPretext()(img, generator=_gen(s))[1] for s in range(40)]


def test_permutation_set_is_far_apart_and_seeded() -> None:
    perms = maximal_hamming_permutations(9, 100, seed=0)
    assert perms.shape == (100, 9)
    assert torch.equal(perms.sort(dim=1).values, torch.arange(9).expand(100, 9))
    assert len({tuple(p) for p in perms.tolist()}) == 100
    dist = (perms[:, None] != perms[None]).sum(-1) + 99 * torch.eye(100, dtype=torch.long)
    rand = torch.stack([torch.randperm(9, generator=_gen(s)) for s in range(100)])
    rand_dist = (rand[:, None] != rand[None]).sum(-1) + 99 * torch.eye(100, dtype=torch.long)
    assert dist.min() >= 6 > rand_dist.min()
    assert torch.equal(perms, JigsawPretext(n_permutations=100, seed=0).permutations)
    assert not torch.equal(perms[:10], maximal_hamming_permutations(9, 10, seed=1))


def test_small_grid_uses_every_permutation() -> None:
    perms = maximal_hamming_permutations(4, 24, seed=0)
    assert len({tuple(p) for p in perms.tolist()}) == 24


@pytest.mark.parametrize("seed", range(4))
def test_jigsaw_inverse_permutation_recovers_tiles(seed: int) -> None:
    jig = JigsawPretext(grid=3, n_permutations=100, tile_fraction=1.0)
    img = torch.rand(1, 63, 63)
    tiles, index = jig(img, generator=_gen(seed))
    assert tiles.shape == (9, 1, 21, 21) and 0 <= index < 100
    ordered = torch.empty_like(tiles)
    ordered[jig.permutations[index]] = tiles
    cells = [
        img[:, r * 21 : (r + 1) * 21, c * 21 : (c + 1) * 21] for r in range(3) for c in range(3)
    ]
    assert torch.equal(ordered, torch.stack(cells))


@pytest.mark.parametrize("seed", range(4))
def test_jigsaw_jittered_tiles_stay_in_their_cells(seed: int) -> None:
    jig = JigsawPretext(grid=3, n_permutations=100)
    img = _coordinate_image(66, 66)
    tiles, index = jig(img, generator=_gen(seed))
    t = jig.tile_size(66, 66)
    assert tiles.shape == (9, 1, t, t) and t == 18
    ordered = torch.empty_like(tiles)
    ordered[jig.permutations[index]] = tiles
    for cell in range(9):
        y, x = _where((66, 66), ordered[cell])
        r, c = divmod(cell, 3)
        assert r * 22 <= y <= (r + 1) * 22 - t and c * 22 <= x <= (c + 1) * 22 - t
        assert torch.equal(ordered[cell], img[:, y : y + t, x : x + t])


def test_jigsaw_seeded_and_validated() -> None:
    jig, img = JigsawPretext(n_permutations=100), torch.rand(1, 48, 48)
    a, b = jig(img, generator=_gen(0)), jig(img, generator=_gen(0))
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    with pytest.raises(ValueError):
        JigsawPretext(grid=1)
    with pytest.raises(ValueError):
        JigsawPretext(grid=2, n_permutations=25)
    with pytest.raises(ValueError, match="too small"):
        JigsawPretext(grid=3, n_permutations=100)(torch.rand(1, 2, 2))


@pytest.mark.parametrize("seed", range(16))
def test_relative_patch_position_matches_where_cut(seed: int) -> None:
    pre = RelativePatchPretext()
    h, w = 70, 64
    img = _coordinate_image(h, w)
    patches, pos = pre(img, generator=_gen(seed))
    p, gap, jitter = pre.layout(h, w)
    assert patches.shape == (2, 1, p, p) and pos in range(8)
    (yc, xc), (yn, xn) = _where((h, w), patches[0]), _where((h, w), patches[1])
    dr, dc = RELATIVE_POSITIONS[pos]
    for d, unit in ((yn - yc, dr), (xn - xc, dc)):
        assert abs(d - unit * (p + gap)) <= 2 * jitter
    for patch, (y, x) in zip(patches, [(yc, xc), (yn, xn)], strict=True):
        assert torch.equal(patch, img[:, y : y + p, x : x + p])


def test_relative_patch_covers_positions_and_validates() -> None:
    pre, img = RelativePatchPretext(patch_size=8, gap=4, jitter=1), torch.rand(1, 40, 40)
    assert {pre(img, generator=_gen(s))[1] for s in range(60)} == set(range(8))
    with pytest.raises(ValueError, match="need"):
        RelativePatchPretext(patch_size=20)(img)
    with pytest.raises(ValueError):
        RelativePatchPretext(gap=-1)
