"""A study on the bundled sample: 2 arms x 2 seeds, killed and resumed, settings checked."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.methods import Rotation, SimCLR
from cxr_curriculum.study import (
    Arm,
    ArmStage,
    CellKey,
    KermanyTask,
    Protocols,
    Study,
    check_budgets,
)


def _study(out: Path, **changes: Any) -> Study:
    root = bundled_sample_root()
    kw: dict[str, Any] = {
        "pretrain_data": KermanyPneumonia(root, split="train"),
        "pretrain_dir": out / "pretrain",
        "batch_size": 8,
        "image_size": 64,
        "fractions": [1.0],
        "protocols": ["knn", "linear_probe", "fine_tune"],
        "protocol_settings": Protocols(finetune_steps=2, finetune_batch_size=8, attention_images=8),
        "progress": False,
    }
    kw.update(changes)
    arms = [Arm("scratch"), Arm("simclr", [ArmStage(SimCLR(), steps=2)])]
    return Study(arms, [0, 1], [KermanyTask(root)], out / "study", **kw)


def test_study_resumes_after_a_kill_and_refuses_changed_settings(tmp_path: Path) -> None:
    study = _study(tmp_path)
    cells = study.cells()
    assert len(cells) == 2 * 2 * 3
    assert [c.seed for c in cells] == [0] * 6 + [1] * 6  # seed-major: whole seeds first

    computed: list[CellKey] = []

    def kill_after_five(key: CellKey, record: dict[str, Any]) -> None:
        computed.append(key)
        if len(computed) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study.run(on_cell=kill_after_five)
    first = {k: (study.output / k.relpath).stat().st_mtime_ns for k in computed}
    assert len(_study(tmp_path).pending()) == len(cells) - 5

    resumed: list[CellKey] = []
    results = _study(tmp_path).run(on_cell=lambda k, r: resumed.append(k))
    assert set(resumed) == set(cells) - set(computed)  # finished cells never recomputed
    assert {k: (study.output / k.relpath).stat().st_mtime_ns for k in computed} == first
    again: list[CellKey] = []
    _study(tmp_path).run(on_cell=lambda k, r: again.append(k))
    assert again == []

    data = json.loads((study.output / "results.json").read_text())
    assert data["design"]["cells_done"] == len(cells)
    pretrain = tmp_path / "pretrain"  # Study(keep="final"): one weights file per arm and seed
    weights = sorted(
        str(p.relative_to(pretrain))
        for p in pretrain.rglob("*")
        if p.suffix in (".pt", ".safetensors")
    )
    assert weights == [f"{study.arms[1].folder}/seed{s}/backbone.safetensors" for s in (0, 1)]
    assert {"command", "versions", "machine"} <= set(data)
    assert (study.output / "report.md").read_text().startswith("# Study report")
    cell = json.loads((study.output / cells[2].relpath).read_text())
    assert len(cell["scores"]) == 16 and len(cell["attention"]["lift"]) == 8
    comparisons = [c for c in results.comparisons() if c["protocol"] == "fine_tune"]
    assert len(comparisons) == 1 and len(comparisons[0]["per_seed"]) == 2
    assert {"lift", "energy_in_mask"} <= set(results.attention()[0])
    assert results.attention_correlation()  # 4 fine-tuned models

    changed = _study(
        tmp_path,
        protocol_settings=Protocols(finetune_steps=3, finetune_batch_size=8, attention_images=8),
    )
    with pytest.raises(ValueError, match=r"protocol\.steps: 2 -> 3"):
        changed.pending()


def test_corrupted_cell_is_set_aside_and_recomputed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = _study(tmp_path, protocols=["knn"])
    study.run(max_cells=1)
    key = study.cells()[0]
    path = study.output / key.relpath
    record = json.loads(path.read_text())
    value = record["value"]
    record["value"] = 0.99
    path.write_text(json.dumps(record))
    again = _study(tmp_path, protocols=["knn"])
    with caplog.at_level("WARNING", logger="cxr_curriculum.study"):
        assert key in again.pending()  # refused: counts as not computed
    moved = list((study.output / "set_aside").rglob("knn-f1.json.*"))
    assert len(moved) == 1 and json.loads(moved[0].read_text())["value"] == 0.99
    assert f"{path} is damaged" in caplog.text and f"set aside to {moved[0]}" in caplog.text
    again.run(max_cells=1)
    assert json.loads(path.read_text())["value"] == value  # recomputed, same result


def test_budgets_must_match() -> None:
    arms = [
        Arm("scratch"),
        Arm("simclr", [ArmStage(SimCLR(), steps=200)]),
        Arm("rotation->simclr", [ArmStage(Rotation(), 100), ArmStage(SimCLR(), 50)]),
    ]
    with pytest.raises(ValueError, match=r"simclr: 200 steps.*rotation->simclr: 150 steps"):
        check_budgets(arms, 32)
    bigger_batch = Arm("big", [ArmStage(SimCLR(), 200, options={"batch_size": 64})])
    with pytest.raises(ValueError, match="images"):
        check_budgets([arms[1], bigger_batch], 32)
    assert check_budgets(arms[:2], 32) == (200, 6400)
    with pytest.raises(ValueError, match="unique"):
        check_budgets([Arm("a"), Arm("a")], 32)


def test_imagenet_arm_is_recorded_when_not_available(tmp_path: Path) -> None:
    from cxr_curriculum.backbones import Backbone, WeightsNotAvailableError

    try:
        Backbone("resnet18", weights="imagenet")
    except WeightsNotAvailableError:
        pass
    else:
        pytest.skip("ImageNet weights are available here: the arm is measured")
    root = bundled_sample_root()
    study = Study(
        [Arm("imagenet", start="imagenet")],
        [0],
        [KermanyTask(root)],
        tmp_path,
        protocols=["knn"],
        fractions=[1.0],
        progress=False,
    )
    results = study.run()
    assert results.cells == {}
    assert "WeightsNotAvailableError" in study.unavailable["imagenet"]
    assert "not measured" in (tmp_path / "report.md").read_text()
    assert torch.get_num_threads() >= 1


def test_cli_max_cells_report_only_and_figures(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sample_study_toml: Callable[..., str],
) -> None:
    from cxr_curriculum.__main__ import main

    config = tmp_path / "study.toml"
    config.write_text(sample_study_toml(tmp_path / "out"))
    assert main(["study", str(config), "--max-cells", "3"]) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["design"]["cells_done"] == 3 and data["command"].startswith("python")
    assert main(["study", str(config), "--check"]) == 0
    assert "4 cells, 1 to do" in capsys.readouterr().out
    assert main(["study", str(config)]) == 0
    figures = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert figures == ["auroc_vs_labels_kermany_knn.png"]  # no fine-tuning: no lift plot

    from cxr_curriculum.study.report import write_figures

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"cxr_curriculum\[plot\]"):
        write_figures(data, tmp_path / "figs")
