"""Smoke variants of the benchmark sessions run end to end on real X-rays (tiny budgets)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (the scripts import their neighbours by name)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module(name)


@pytest.mark.slow
@pytest.mark.realdata
def test_bench_curriculum_smoke(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bench("_common", monkeypatch), "REPO", tmp_path)
    bench = _bench("bench_curriculum", monkeypatch)
    monkeypatch.setattr(sys, "argv", ["bench_curriculum.py", "--smoke"])
    bench.main(["--smoke", "--run-dir", str(tmp_path / "runs"), "--arms", "rotation->simclr"])
    record = json.loads(
        (tmp_path / "benchmarks" / "results" / "bench_curriculum_smoke.json").read_text()
    )
    results = record["results"]
    metrics = results["arm_metrics"]
    assert {r["arm"] for r in metrics} == {"scratch", "rotation->simclr"}
    assert {r["protocol"] for r in metrics} == {"knn", "linear_probe", "fine_tune"}
    for r in metrics:
        assert 0.0 <= r["estimate"] <= 1.0 and r["per_seed"] == [r["estimate"]]
    assert len(results["cells"]) == 2 * 3
    tuned = [c for c in results["cells"] if c["protocol"] == "fine_tune"]
    assert all(0.0 <= c["attention_mean"]["energy_in_mask"] <= 1.0 for c in tuned)
    paired = results["comparisons"]
    assert len(paired) == 3 and all(len(c["per_seed"]) == 1 for c in paired)
    assert record["config"]["imagenet"]  # measured, or the reason it was not
    assert (tmp_path / "docs" / "benchmarks" / "bench_curriculum_smoke.md").exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_bench_lungseg_smoke(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench("bench_lungseg", monkeypatch)
    out = tmp_path / "lungseg.json"
    monkeypatch.setattr(sys, "argv", ["bench_lungseg.py", "--smoke", "--out", str(out)])
    bench.main()
    record = json.loads((tmp_path / "lungseg_smoke.json").read_text())
    ours, classical = record["lungsegmenter"]["all"], record["classical"]["all"]
    assert ours["n"] == 8 and {"covid-v7", "shenzhen-montgomery"} <= set(record["lungsegmenter"])
    assert ours["dice_both"] > 0.85 > classical["dice_both"]
    speed = record["speed_images_per_s"]
    assert speed["ratio_lungsegmenter_vs_pspnet_512"] > 1.0


@pytest.mark.slow
@pytest.mark.realdata
def test_bench_attention_speed_smoke(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytorch_grad_cam")
    bench = _bench("bench_attention", monkeypatch)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench_attention.py", "speed", "--smoke"])
    bench.main()
    record = json.loads((tmp_path / "attention_speed_smoke.json").read_text())
    assert record["n_images"] == 4 and record["size"] == 64
    assert record["speedup_vs_loop"] > 0.0


@pytest.mark.slow
@pytest.mark.realdata
def test_bench_decode_smoke(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pydicom")
    monkeypatch.setattr(_bench("_common", monkeypatch), "REPO", tmp_path)
    bench = _bench("bench_decode", monkeypatch)
    monkeypatch.setattr(sys, "argv", ["bench_decode.py", "--smoke"])
    bench.main(["--smoke"])
    record = json.loads((tmp_path / "benchmarks" / "results" / "decode_smoke.json").read_text())
    results = record["results"]
    films = [r for r in results["decode"] if r["encoding"] not in ("Kermany JPEG", "NIH PNG")]
    assert len(films) >= 3 and all(r["s_per_image"] > 0 for r in results["decode"])
    dicom, raster = results["read"][:2]
    assert dicom["images"] == f"{len(films)} DICOM films" and raster["images"] == "6 PNG/JPEG"
    assert dicom["speed_up"] > 1.0  # a cached read beats decoding a DICOM film
    arms = {r["arm"]: r for r in results["pretrain"]}
    assert arms["uncached"]["images"] == arms["DecodedCache"]["images"] == 8
    assert (tmp_path / "docs" / "benchmarks" / "decode_smoke.md").exists()


def test_attention_report_renders_the_recorded_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    report = _bench("attention_report", monkeypatch)
    record = json.loads((BENCH / "results" / "attention_experiment.json").read_text())
    text = report.render(record)
    for task in ("confounded", "kermany"):
        acc = record[task]["test_accuracy"]
        assert f"test accuracy {acc:.3f}" in text
        lift = record[task]["scores"]["gradcam_layer4/all_test_predicted_masks"]["aggregate"]
        assert "| gradcam_layer4 | all_test_predicted_masks (n=" in text
        assert f"{lift['lift']['mean']:.3f} [{lift['lift']['low']:.3f}" in text
    assert text.count("Sanity check, ") == 4


@pytest.mark.slow
@pytest.mark.realdata
def test_bench_saliency_adapters_smoke(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytorch_grad_cam")
    pytest.importorskip("captum")
    bench = _bench("bench_saliency", monkeypatch)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    bench.main(["adapters", "--smoke"])
    record = json.loads((tmp_path / "saliency_adapters_smoke.json").read_text())
    assert record["n_images"] == 4 and record["size"] == 64
    assert set(record["timings"]) == {
        "builtin_gradcam",
        "pgc_gradcam_direct",
        "pgc_gradcam_adapter",
        "captum_ig_direct",
        "captum_ig_adapter",
    }
    assert record["overhead_pgc_adapter_vs_direct"] > 0.0


@pytest.mark.slow
@pytest.mark.realdata
def test_gpu_suite_smoke_on_the_cpu(data_root: Path, tmp_path: Path) -> None:
    # The GPU suite's driver at toy sizes on the CPU, for the phases that are not also
    # tested elsewhere: ViT throughput vs lightly, segmentation/attention speed, a study cell.
    import subprocess

    pytest.importorskip("lightly")

    out = tmp_path / "suite"
    phases = ["vit_mae_dino", "lungseg_attention", "study_cell"]
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu" / "gpu_suite.py"), "--smoke", "--device", "cpu",
         "--out", str(out), "--budget", "900", "--phases", *phases],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])  # one JSON record, last line
    assert record == json.loads((out / "gpu_suite.json").read_text())
    assert record["card"] and record["device"] == "cpu" and set(record["phases"]) == set(phases)
    assert all(p["status"] == "ok" for p in record["phases"].values())
    rows = record["phases"]["vit_mae_dino"]["results"]["gpu_vit_mae_dino"]["rows"]
    assert {r["method"] for r in rows} == {"mae", "dino"}
    assert all(r["ours_img_s"] > 0 and r["lightly_img_s"] > 0 for r in rows)
    speed = record["phases"]["lungseg_attention"]["results"]["gpu_lungseg_attention"]
    assert {r["method"] for r in speed["attention"]} == {
        "gradcam", "attention_rollout", "cls_attention"
    }  # fmt: skip
    study = record["phases"]["study_cell"]["results"]["results"]
    assert study["design"]["cells_done"] == 3
    assert {c["protocol"] for c in study["cells"]} == {"knn", "linear_probe", "fine_tune"}
    assert (out / "raw.tar.gz").is_file() and (out / "gpu_suite.log").is_file()


@pytest.mark.slow
def test_study_coverage_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bench("_common", monkeypatch), "REPO", tmp_path)
    bench = _bench("study_coverage", monkeypatch)
    rows = bench.main(["--smoke", "--kinds", "null", "arm"])
    assert len(rows) == 2 * 3 * 2  # kinds x regimes x seeds (3, 5)
    for row in rows:
        assert 0.0 <= row["coverage_new"] <= 1.0 and 0.0 <= row["coverage_old"] <= 1.0
        assert row["studies"] == 10 and row["width_new"] > 0
    assert {r["truth"] for r in rows if r["kind"] == "null"} == {0.0}
    record = json.loads((tmp_path / "benchmarks/results/study_coverage_smoke.json").read_text())
    assert record["config"]["smoke"] and len(record["results"]) == len(rows)
    page = (tmp_path / "docs/benchmarks/study_coverage_smoke.md").read_text()
    assert "| comparison | regime | seeds | new | old |" in page
