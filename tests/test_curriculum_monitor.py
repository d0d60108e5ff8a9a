"""The kNN monitor: downstream scores in the metrics log, on real (bundled) X-rays,
without changing what the stage trains; its evaluator is passed in (knn_evaluate)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from cxr_curriculum.curriculum import Curriculum, KNNMonitor, Stage
from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
from cxr_curriculum.evaluation import knn_evaluate
from test_curriculum import TinyBackbone, TinyRotation

pytestmark = pytest.mark.usefixtures("one_thread")


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def kermany() -> tuple[KermanyPneumonia, KermanyPneumonia]:
    root = bundled_sample_root()  # 32 + 16 real Kermany X-rays shipped with the package
    return KermanyPneumonia(root, split="train"), KermanyPneumonia(root, split="test")


def test_knn_monitor_logs_scores_and_changes_nothing(
    kermany: tuple[KermanyPneumonia, KermanyPneumonia], tmp_path: Path
) -> None:
    train, val = kermany
    monitor = KNNMonitor(train, val, knn_evaluate, every=2, k=5)
    plain = Stage(TinyRotation(), train, steps=4, batch_size=8, image_size=32, name="rot")
    watched = plain.replace(method=TinyRotation(), monitor=monitor)
    assert watched.config() == plain.config()  # not part of the stage's settings

    torch.manual_seed(0)
    ref = TinyBackbone()
    Curriculum([plain], seed=1, log_every=3, progress=False).fit(ref)
    torch.manual_seed(0)
    bb = TinyBackbone()
    (result,) = list(Curriculum([watched], tmp_path, seed=1, log_every=3).iter_stages(bb))
    after = _state(bb)
    assert all(torch.equal(v, _state(ref)[k]) for k, v in after.items())  # bit-identical

    by_step = {r["step"]: r for r in result.metrics}
    assert sorted(by_step) == [2, 3, 4]  # monitor steps 2 and 4, log step 3
    assert by_step[3]["knn_accuracy"] is None
    for step in (2, 4):
        assert 0.0 <= by_step[step]["knn_accuracy"] <= 1.0
        assert 0.0 <= by_step[step]["knn_auroc"] <= 1.0
    expected = knn_evaluate(bb, train, val, k=5, image_size=32).metrics()
    assert by_step[4]["knn_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert by_step[4]["knn_auroc"] == pytest.approx(expected["auroc"], abs=1e-12)
    assert _state(bb).keys() == after.keys()  # scoring did not touch BatchNorm statistics
    assert all(torch.equal(v, after[k]) for k, v in _state(bb).items())

    with (tmp_path / "stage00-rot" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows[0].keys() >= {"knn_accuracy", "knn_auroc"} and rows[1]["knn_accuracy"] == ""
    assert math.isclose(float(rows[2]["knn_auroc"]), by_step[4]["knn_auroc"])


def test_knn_monitor_validates_eagerly(kermany: tuple[KermanyPneumonia, KermanyPneumonia]) -> None:
    train, val = kermany
    with pytest.raises(ValueError, match="every"):
        KNNMonitor(train, val, knn_evaluate, every=0)
    with pytest.raises(ValueError, match="metrics"):
        KNNMonitor(train, val, knn_evaluate, metrics=("top5",))
    with pytest.raises(ValueError, match="val"):
        KNNMonitor(train, torch.utils.data.Subset(val, []), knn_evaluate)
    with pytest.raises(ValueError, match="evaluator must be a callable"):
        KNNMonitor(train, val, "knn")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="monitor"):
        Stage(TinyRotation(), train, steps=1, monitor=lambda bb: 0.0)  # type: ignore[arg-type]
