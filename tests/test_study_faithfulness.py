"""Faithfulness in a study (issue 21): ``[evaluation] faithfulness`` adds perturbation
columns to the attention record of fine-tuned cells, results.json reports them per arm
with two-level CIs, and report.md shows one more column per metric."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from _studies import tiny_study_toml
from cxr_curriculum.config import ConfigError, load_study
from cxr_curriculum.study import Protocols

pytestmark = pytest.mark.usefixtures("one_thread")


def _ci_text(stat: dict[str, Any]) -> str:
    return f"{stat['estimate']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def _file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "study.toml"
    evaluation = "finetune_steps = 2\nfinetune_batch_size = 8\nattention_images = 4\n" + extra
    study = tiny_study_toml(
        tmp_path / "out",
        arms=("scratch",),
        image_size=64,
        protocols=("fine_tune",),
        evaluation=evaluation,
    )
    path.write_text(study)
    return path


def test_faithfulness_is_off_by_default_and_leaves_earlier_cells_valid() -> None:
    assert Protocols().faithfulness == ()
    assert "faithfulness" not in Protocols().config("fine_tune")
    on = Protocols(faithfulness=("lungs", "deletion", "lungs"))
    assert on.faithfulness == ("lungs", "deletion")
    assert on.config("fine_tune")["faithfulness"] == ["lungs", "deletion"]
    assert on.attention_columns[:3] == ("energy_in_mask", "lift", "pointing_game")
    assert {"deletion", "lung_effect", "outside_drop"} <= set(on.attention_columns)
    with pytest.raises(ValueError, match="allowed"):
        Protocols(faithfulness=("deletions",))


def test_a_bad_faithfulness_name_in_a_study_file_names_the_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluation: unknown faithfulness metric.*'delete'"):
        load_study(_file(tmp_path, 'faithfulness = ["delete"]'))
    with pytest.raises(ConfigError, match=r"evaluation\.faithfulness\[0\]: expected"):
        load_study(_file(tmp_path, "faithfulness = [1]"))


@pytest.mark.slow
def test_a_study_reports_faithfulness_per_arm_with_intervals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = '["deletion", "insertion", "road", "lungs"]'
    study = load_study(_file(tmp_path, f"faithfulness = {names}"))
    assert study.protocol_settings.faithfulness == ("deletion", "insertion", "road", "lungs")
    results = study.run()
    cell = json.loads((study.output / study.cells()[0].relpath).read_text())
    record = cell["attention"]
    assert cell["settings"]["protocol"]["faithfulness"] == json.loads(names)
    for column in ("deletion", "insertion", "road", "lung_effect", "lung_drop_whole"):
        assert len(record[column]) == 4 and all(v is None or -2 <= v <= 2 for v in record[column])
    (row,) = results.attention()
    for metric in ("deletion", "insertion", "road", "lung_drop", "outside_drop", "lung_effect"):
        ci = row[metric]
        assert ci["n_seeds"] == 2 and ci["low"] <= ci["estimate"] <= ci["high"]
    data = json.loads((study.output / "results.json").read_text())
    assert data["attention"][0]["lung_effect"]["estimate"] == pytest.approx(
        row["lung_effect"]["estimate"]
    )
    report = (study.output / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| task | labels | arm"))
    assert header.endswith(
        "| deletion | insertion | ROAD | lung drop | outside drop | lung effect "
        "| lung effect (salient order) |"
    )
    assert "Faithfulness columns" in report
    # benchmarks/attention_report.py renders the per-arm table for docs/attention.md.
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    table = importlib.import_module("attention_report").render_faithfulness(data)
    assert "| kermany | 1 | scratch |" in table and "| lung effect |" in table
    assert _ci_text(row["lung_effect"]) in table
