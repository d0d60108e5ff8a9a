"""The benchmark helpers: results JSON/markdown and the SSL-throughput step builders."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def common(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    module = importlib.import_module("_common")
    monkeypatch.setattr(module, "REPO", tmp_path)
    return module


def test_write_results_records_machine_command_and_table(common, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = [{"method": "simclr", "img_s": 12.345678, "ci": [0.1, 0.2]}, {"method": "a|b"}]
    json_path, md_path = common.write_results("unit", rows, config={"batch": 8}, notes="Note.")
    assert json_path == tmp_path / "benchmarks" / "results" / "unit.json"
    record = json.loads(json_path.read_text())
    assert record["results"] == rows and record["config"] == {"batch": 8}
    assert record["versions"]["torch"] and record["machine"]["cpu_count"] >= 1
    assert record["command"].startswith("python ") and record["date"].endswith("+00:00")
    md = md_path.read_text()
    assert md_path == tmp_path / "docs" / "benchmarks" / "unit.md"
    assert "| method | img_s | ci |" in md and "| simclr | 12.35 | [0.1, 0.2] |" in md
    assert "a\\|b" in md and "Note." in md and record["command"] in md


def test_markdown_table_empty_and_columns(common) -> None:  # type: ignore[no-untyped-def]
    assert common.markdown_table([]) == "_no rows_\n"
    table = common.markdown_table([{"a": 1, "b": 2}], columns=["b"])
    assert table.splitlines()[0] == "| b |" and "| 2 |" in table


@pytest.mark.slow
def test_ssl_throughput_steps_run_for_both_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lightly")
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("bench_ssl_throughput")
    hp = bench.scaled_hparams("moco_v2", 16)
    assert hp["queue_size"] == 65536 // 16 and hp["hidden_dim"] == 2048 // 16
    hp = bench.scaled_hparams("moco_v2", 32)
    views = bench.make_views("moco_v2", hp, batch=4, size=32, device="cpu")
    assert [v.shape for v in views] == [(4, 1, 32, 32)] * 2
    for build in (bench.ours_step, bench.lightly_step):
        step = build("moco_v2", hp, views, "cpu", total=4)
        assert bench.time_steps(step, 1, 0, "cpu") > 0
    with pytest.raises(ValueError, match="no lightly equivalent"):
        bench.lightly_step("rotation", {}, views, "cpu", total=4)


@pytest.mark.slow
@pytest.mark.realdata
def test_bench_multilabel_nih_smoke(
    common,  # type: ignore[no-untyped-def]
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    monkeypatch.setattr("sys.argv", ["bench_multilabel_nih.py", "--smoke"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        importlib.import_module("bench_multilabel_nih").main(["--smoke"])
    finally:
        torch.set_num_threads(before)
    record = json.loads(
        (tmp_path / "benchmarks" / "results" / "multilabel_nih_smoke.json").read_text()
    )["results"]
    rows = record["rows"]
    assert {r["protocol"] for r in rows} == {"knn", "linear_probe", "fine_tune"}
    for r in rows:
        assert 0.0 <= r["ci_95"][0] <= r["ci_95"][1] <= 1.0 and 0.0 <= r["auroc"] <= 1.0
        if r["finding"] != "macro":  # only findings with enough test positives are shown
            assert r["test_positives"] == record["test_positives"][r["finding"]] >= 3
    assert record["fine_tune_minus_linear_probe"]["macro"]["metric"] == "macro_auroc"
    assert record["attention"]["finding"] == "Pneumonia" and record["attention"]["n_images"] == 4
    assert (tmp_path / "docs" / "benchmarks" / "multilabel_nih_smoke.md").exists()
