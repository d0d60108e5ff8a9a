"""The README's main job, end to end on the bundled sample (tiny budgets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from cxr_curriculum.demo import main


@pytest.mark.slow
def test_demo_writes_a_complete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    argv = [
        "--out",
        str(out),
        "--steps",
        "2",
        "--finetune-steps",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--max-test",
        "8",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert str(out.resolve()) in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["pretraining"]] == ["rotation", "simclr"]
    assert all(s["steps"] == 2 and not s["skipped"] for s in metrics["pretraining"])
    for name in ("curriculum", "scratch"):
        auroc = metrics["classification"][name]["auroc"]
        assert 0.0 <= auroc["low"] <= auroc["estimate"] <= auroc["high"] <= 1.0
        assert "energy_in_mask" in metrics["lung_attention"][name]
        assert (out / f"attention_{name}.csv").read_text().count("\n") == 8 + 1
        grid = Image.open(out / "overlays" / f"grid_{name}.png")
        assert grid.size[0] > 0 and grid.mode == "RGB"
    assert metrics["segmentation"]["n_images"] == 8
    assert 0.1 < metrics["segmentation"]["lung_area_fraction"] < 0.6
    summary = (out / "summary.md").read_text()
    assert "# cxr_curriculum demo report" in summary
    # Issue 18 item 7: the summary reports the mask QC of the demo's predicted masks.
    passed = metrics["segmentation"]["quality_ok"]
    assert "mask QC: not run" not in summary
    assert summary.count(f"mask QC: {8 - passed} of 8 failed (excluded: no)") == 2
    # A rerun resumes: the finished curriculum stages are skipped.
    assert main(argv) == 0
    rerun = json.loads((out / "metrics.json").read_text())["pretraining"]
    assert [s["skipped"] for s in rerun] == [True, True]
