"""Metric loggers: TensorBoard event files and plain callables, for curricula and studies."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from cxr_curriculum.curriculum import Curriculum, TensorBoardLogger
from cxr_curriculum.curriculum.loggers import check_loggers, prefixed
from test_curriculum import NoiseImages, TinyBackbone, engine_stages

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder:
    """A metric logger that keeps what it is given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, float], int]] = []
        self.flushed = 0

    def __call__(self, group: str, metrics: Mapping[str, float], step: int) -> None:
        self.calls.append((group, dict(metrics), step))

    def flush(self) -> None:
        self.flushed += 1


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_curriculum_rows_reach_tensorboard_and_callables(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="needs the 'tensorboard' extra (in 'dev')")
    tb, seen = TensorBoardLogger(tmp_path / "tb"), Recorder()
    cur = Curriculum(
        engine_stages(NoiseImages(16), steps=3), tmp_path / "run", log_every=1,
        loggers=[tb, seen],
    )  # fmt: skip
    results = list(cur.iter_stages(TinyBackbone()))
    tb.close()
    assert list(tb.log_dir.glob("events.out.tfevents.*"))
    scalars = _scalars(tb.log_dir)
    for result, offset in zip(results, (0, 3), strict=True):
        group = f"stage{result.index:02d}-{result.name}"
        for name in ("loss", "lr", "embedding_std", "images_per_s", "time_s"):
            logged = scalars[f"{group}/{name}"]  # global steps: the second stage follows
            assert [s for s, _ in logged] == [offset + r["step"] for r in result.metrics]
            assert [v for _, v in logged] == pytest.approx([r[name] for r in result.metrics])
    assert not any(t.endswith(("/step", "/stage")) for t in scalars)
    assert [(g, s) for g, _, s in seen.calls] == [
        ("stage00-rot", 1), ("stage00-rot", 2), ("stage00-rot", 3),
        ("stage01-rot24", 4), ("stage01-rot24", 5), ("stage01-rot24", 6),
    ]  # fmt: skip
    assert seen.calls[0][1]["loss"] == results[0].metrics[0]["loss"] and seen.flushed == 2
    # a rerun skips both stages: nothing new is logged
    again = Recorder()
    Curriculum(cur.stages, tmp_path / "run", loggers=[again]).fit(TinyBackbone())
    assert again.calls == []


def test_loggers_are_checked_and_tensorboard_is_optional(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in ("runs/tb", [print, "runs/tb"], Recorder()):
        with pytest.raises(TypeError, match="logger"):
            check_loggers(bad)  # type: ignore[arg-type]
    seen = Recorder()
    (wrapped,) = prefixed([seen], "pretrain/simclr/seed0/")
    wrapped("stage00-simclr", {"loss": 1.0}, 3)
    wrapped.flush()  # type: ignore[attr-defined]
    assert seen.calls == [("pretrain/simclr/seed0/stage00-simclr", {"loss": 1.0}, 3)]
    assert seen.flushed == 1
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "cxr_curriculum\[tensorboard\]"'):
        TensorBoardLogger(tmp_path / "tb")


def test_a_study_logs_pretraining_and_cells(tmp_path: Path) -> None:
    from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
    from cxr_curriculum.methods import SimCLR
    from cxr_curriculum.study import Arm, ArmStage, KermanyTask, Study

    root = bundled_sample_root()
    seen = Recorder()
    arms = [Arm("scratch"), Arm("simclr", [ArmStage(SimCLR(), steps=2)])]
    study = Study(
        arms, [0], [KermanyTask(root)], tmp_path / "study",
        pretrain_data=KermanyPneumonia(root, split="train"), batch_size=8, image_size=32,
        fractions=[1.0], protocols=["knn"], progress=False, loggers=[seen],
    )  # fmt: skip
    study.run()
    groups = {g for g, _, _ in seen.calls}
    assert "pretrain/simclr/seed0/stage00-simclr" in groups
    cells = sorted(((g, m, s) for g, m, s in seen.calls if g.startswith("cells/")), key=str)
    expected = []
    for key in study.cells():  # both arms' kNN AUROC at fraction 1, step = seed 0
        record = study.store.read(key, study.settings(key))
        assert record is not None
        expected.append(("cells/kermany/auroc/knn/1", {key.arm: record["value"]}, 0))
    assert cells == sorted(expected, key=str)
