"""Overlay pictures (issue 12): upscaled by default, titles in a strip above each picture,
wrapped to its width, never over the image; files written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxr_curriculum.attention import (
    AttentionReport,
    LungAttentionScorer,
    display_scale,
    overlay,
    saliency_grid,
    save_grid,
    save_overlay,
)


def _lungs(h: int, w: int) -> torch.Tensor:
    lungs = torch.zeros(2, h, w, dtype=torch.bool)
    lungs[0, h // 4 : 3 * h // 4, w // 8 : 3 * w // 8] = True
    lungs[1, h // 4 : 3 * h // 4, 5 * w // 8 : 7 * w // 8] = True
    return lungs


def test_display_scale() -> None:
    assert display_scale(64, 64) == 4 and display_scale(224, 224) == 1
    assert display_scale(32, 48) == 8 and display_scale(2000, 1800) == 1
    assert display_scale(64, 64, 2) == 2
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="scale"):
            display_scale(64, 64, bad)  # type: ignore[arg-type]


def test_overlay_is_upscaled_with_contours_on_the_right_side() -> None:
    image = torch.full((1, 64, 48), 0.5)
    pic = overlay(image, torch.zeros(8, 8), _lungs(64, 48))
    assert pic.size == (48 * 5, 64 * 5)  # (W, H): round(256 / 48) = 5
    px = np.asarray(pic)
    green = (px == [0, 255, 0]).all(-1)
    magenta = (px == [255, 0, 255]).all(-1)
    assert green.any() and magenta.any()
    # Right lung (green) on the image's left half, left lung (magenta) on its right half.
    cols_g, cols_m = np.nonzero(green)[1], np.nonzero(magenta)[1]
    assert cols_g.max() < pic.size[0] // 2 <= cols_m.min()
    assert overlay(image, torch.zeros(8, 8), scale=1).size == (48, 64)


def test_grid_titles_sit_above_the_pictures_and_fit(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 1, 64, 64)
    maps = torch.rand(3, 8, 8)
    masks = torch.stack([_lungs(64, 64)] * 3)
    titles = [
        "person1675_virus_2891_a_very_long_file_name.jpeg\ny=1 lift 0.25 QC failed",
        "short",
        "NORMAL2-IM-0237-0001.jpeg y=0 lift 0.58",
    ]
    grid = saliency_grid(images, maps, masks, ncol=2, titles=titles)
    plain = saliency_grid(images, maps, masks, ncol=2)
    tile = overlay(images[0], maps[0], masks[0])
    w, h = tile.size
    strip = (grid.size[1] - plain.size[1]) // 2
    assert w == 256 and strip > 0 and grid.size[0] == plain.size[0] == 2 * w + 4
    px = np.asarray(grid).astype(int)
    # The pictures are untouched by the titles: each tile sits below its strip.
    assert np.array_equal(px[strip : strip + h, :w], np.asarray(tile))
    second = overlay(images[1], maps[1], masks[1])
    assert np.array_equal(px[strip : strip + h, w + 4 : 2 * w + 4], np.asarray(second))
    # Text was drawn in the strips, and none of it runs into the gap between columns.
    assert (px[:strip, :w] > 200).all(-1).any() and (px[:strip, w + 4 :] > 200).all(-1).any()
    assert not (px[:strip, w : w + 4] > 60).any()
    # The long titles wrap to exactly three lines (the most allowed) of the picture's width.
    one_line = saliency_grid(images, maps, masks, ncol=2, titles=["a", "b", "c"])
    line = (one_line.size[1] - plain.size[1]) // 2 - 4
    assert strip == 3 * line + 4
    save_grid(tmp_path / "grid.png", images, maps, masks, ncol=2, titles=titles)
    save_overlay(tmp_path / "one.png", images[0], maps[0], masks[0], scale=2)
    assert Image.open(tmp_path / "grid.png").size == grid.size
    assert Image.open(tmp_path / "one.png").size == (128, 128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "one.png"]  # no temp files
    with pytest.raises(ValueError, match="2 titles for 3 images"):
        saliency_grid(images, maps, titles=titles[:2])


def test_report_save_grid_titles_each_picture(tmp_path: Path) -> None:
    scorer = LungAttentionScorer(method="gradients", n_boot=20)
    images = torch.rand(2, 1, 32, 32)
    masks = torch.stack([_lungs(32, 32)] * 2)
    report = scorer.score(None, images, masks=masks, saliency=torch.rand(2, 32, 32))
    assert report.images is not None and torch.equal(report.images, images)
    report.save_grid(tmp_path / "r.png", ncol=2)
    assert Image.open(tmp_path / "r.png").size[0] == 2 * 256 + 4
    bare = AttentionReport(report.rows, report.aggregate, report.meta)
    with pytest.raises(ValueError, match="keep_maps=True"):
        bare.save_grid(tmp_path / "x.png")
