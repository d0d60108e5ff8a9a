"""Honest stops: non-finite losses and buffers, what is kept, bad pixels, continuing
with other optimiser settings (``resume="continue"``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from cxr_curriculum.curriculum import (
    Curriculum,
    NonFiniteLossError,
    Stage,
    WarmupCosine,
    load_checkpoint,
)
from test_curriculum import NoiseImages, TinyBackbone, TinyRotation

pytestmark = pytest.mark.usefixtures("one_thread")


class ScaledInputAfter(TinyRotation):
    """From its ``k``-th training step on, multiplies the input batch by ``factor``.

    ``factor=nan`` makes activations (and the loss) NaN; ``factor=1e25`` makes the
    BatchNorm variance overflow to inf while the loss, normalised with the batch's own
    statistics, stays finite.
    """

    def __init__(self, k: int = 3, factor: float = float("nan")) -> None:
        super().__init__()
        self._k, self._factor, self._calls = k, factor, 0  # private: not stage settings

    def training_step(self, batch: Any) -> Tensor:
        self._calls += 1
        if self._calls > self._k:
            batch = (batch[0] * self._factor, batch[1])
        return super().training_step(batch)


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _all_finite(state: dict[str, Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def _stage(method: nn.Module, data: Any = None, **kw: Any) -> Stage:
    kw = {"steps": 8, "batch_size": 8, "image_size": 32, "name": "s", **kw}
    return Stage(method, data if data is not None else NoiseImages(16), **kw)


# ----------------------------------------------------------------------------- what is kept
def test_nan_stop_restores_the_backbone_to_the_last_good_checkpoint(tmp_path: Path) -> None:
    cur = Curriculum([_stage(ScaledInputAfter(3))], tmp_path, checkpoint_every=2)
    bb = TinyBackbone()
    with pytest.raises(NonFiniteLossError) as info:
        cur.fit(bb)
    last = tmp_path / "stage00-s" / "last.pt"
    message = str(info.value)
    assert "loss is nan at step 3" in message
    assert f"its last good checkpoint ({last}, step 2) was kept" in message
    assert "resume='continue'" in message
    kept = load_checkpoint(last)
    assert kept["step"] == 2 and _all_finite(kept["backbone"])
    after = _state(bb)
    assert _all_finite(after)  # the NaN forward pass had poisoned the BatchNorm buffers
    assert all(torch.equal(after[k], v) for k, v in kept["backbone"].items())


def test_stop_before_any_checkpoint_says_so_and_restores_the_start() -> None:
    bb = TinyBackbone()
    start = _state(bb)
    cur = Curriculum([_stage(ScaledInputAfter(1))], checkpoint_every=2, progress=False)
    with pytest.raises(NonFiniteLossError) as info:
        cur.fit(bb)
    message = str(info.value)
    assert "last checkpoint was kept" not in message
    assert "no checkpoint had been written yet" in message and "start of the stage" in message
    assert all(torch.equal(v, start[k]) for k, v in bb.state_dict().items())


def test_inf_batchnorm_buffers_with_a_finite_loss_stop_before_a_bad_checkpoint(
    tmp_path: Path,
) -> None:
    method = ScaledInputAfter(3, factor=1e25)
    cur = Curriculum([_stage(method)], tmp_path, checkpoint_every=2, log_every=1)
    bb = TinyBackbone()
    with pytest.raises(NonFiniteLossError, match=r"loss is finite but buffers.*running_var"):
        cur.fit(bb)
    kept = load_checkpoint(tmp_path / "stage00-s" / "last.pt")
    assert kept["step"] == 2 and _all_finite(kept["backbone"]) and _all_finite(kept["method"])
    assert _all_finite(_state(bb))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stages"][0]["status"] == "failed"
    assert "running_var" in manifest["stages"][0]["error"]


def test_nan_pixel_names_the_item_and_its_file() -> None:
    class Files(NoiseImages):
        def __init__(self) -> None:
            super().__init__(16)
            self.images[5, 0, 3, 7] = float("nan")
            self.files = [Path(f"/data/xr/img{i:03d}.png") for i in range(16)]

    data = Subset(Files(), list(range(2, 16)))  # item 3 of the subset is image 5
    with pytest.raises(ValueError, match=r"item 3 .*img005\.png.* 1 non-finite pixel"):
        Curriculum([_stage(TinyRotation(), data)], progress=False).fit(TinyBackbone())


# ----------------------------------------------------------------------------- continue
def test_continue_from_the_kept_checkpoint_with_a_lower_lr(tmp_path: Path) -> None:
    diverging = _stage(ScaledInputAfter(3), lr=0.1)
    with pytest.raises(NonFiniteLossError):
        Curriculum([diverging], tmp_path, checkpoint_every=2, log_every=1).fit(TinyBackbone())

    fixed = _stage(ScaledInputAfter(10**6), lr=0.02)  # same settings but the lr
    with pytest.raises(ValueError, match=r"lr: 0\.1 -> 0\.02.*resume='continue'"):
        Curriculum([fixed], tmp_path).fit(TinyBackbone())
    with pytest.raises(ValueError, match=r"batch_size.*Only optimizer, lr"):
        Curriculum([fixed.replace(batch_size=4)], tmp_path, resume="continue").fit(TinyBackbone())

    cur = Curriculum([fixed], tmp_path, resume="continue", log_every=1)
    bb = TinyBackbone()
    (result,) = list(cur.iter_stages(bb))
    assert result.resumed_from == 2 and result.steps == 8 and _all_finite(_state(bb))
    schedule = WarmupCosine(8, fixed.resolved_warmup(8))
    rows = {r["step"]: r["lr"] for r in result.metrics}
    assert rows[2] == pytest.approx(0.1 * schedule(1))  # logged before the stop
    for step in range(3, 9):  # the new lr, at the schedule's position
        assert rows[step] == pytest.approx(0.02 * schedule(step - 1))
    entry = json.loads((tmp_path / "manifest.json").read_text())["stages"][0]
    assert entry["status"] == "done" and "error" not in entry
    (change,) = entry["changes"]
    assert change["at_step"] == 2 and change["changed"] == ["lr: 0.1 -> 0.02"]

    again = Curriculum([fixed], tmp_path).iter_stages(TinyBackbone())  # now just finished
    assert next(again).skipped
    with pytest.raises(ValueError, match="has finished"):
        Curriculum([fixed.replace(lr=0.01)], tmp_path, resume="continue").fit(TinyBackbone())


def test_continue_with_another_optimizer_starts_its_state_fresh(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError):
        Curriculum([_stage(ScaledInputAfter(5))], tmp_path, checkpoint_every=2).fit(TinyBackbone())
    adamw = _stage(ScaledInputAfter(10**6), optimizer="adamw", lr=1e-3)
    (result,) = list(Curriculum([adamw], tmp_path, resume="continue").iter_stages(TinyBackbone()))
    assert result.resumed_from == 4 and result.steps == 8
    change = json.loads((tmp_path / "manifest.json").read_text())["stages"][0]["changes"][0]
    assert any(c.startswith("optimizer: 'sgd' -> 'adamw'") for c in change["changed"])


def test_diverged_weights_with_a_finite_loss_are_caught_and_the_kept_checkpoint_works(
    tmp_path: Path,
) -> None:
    # Real X-rays, resnet18, lr 5 (about 1000x too high): the training loss stays finite
    # (BatchNorm normalises with batch statistics) while the eval-mode outputs explode.
    # Without a DivergenceRule (test_curriculum_divergence.py) this is the check that stops.
    from cxr_curriculum.backbones import Backbone
    from cxr_curriculum.curriculum.health import LIMIT
    from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
    from cxr_curriculum.methods import Rotation

    pool = KermanyPneumonia(bundled_sample_root(), split="train")
    hot = Stage(Rotation(), pool, steps=8, batch_size=8, image_size=32, lr=5.0, warmup_steps=6,
                divergence=None)  # fmt: skip
    with pytest.raises(NonFiniteLossError, match="eval-mode outputs") as info:
        Curriculum([hot], tmp_path, checkpoint_every=2).fit(Backbone("resnet18", seed=0))
    assert "its last good checkpoint" in str(info.value)
    images = torch.stack([pool[i].image for i in range(8)])
    images = nn.functional.interpolate(images, size=32, mode="bilinear", antialias=True)
    kept = Backbone(
        "resnet18", weights=load_checkpoint(tmp_path / "stage00-rotation" / "last.pt")["backbone"]
    ).eval()
    with torch.no_grad():
        assert kept(images).abs().max() < LIMIT  # usable: finite outputs in eval mode

    cool = Curriculum([hot.replace(lr=0.003)], tmp_path, resume="continue")
    bb = Backbone("resnet18")
    (result,) = list(cool.iter_stages(bb))
    assert result.resumed_from >= 2 and result.steps == 8
    with torch.no_grad():
        assert torch.isfinite(bb.eval()(images)).all()


def test_a_kept_checkpoint_that_fails_at_once_says_how_to_restart_the_stage(
    tmp_path: Path,
) -> None:
    with pytest.raises(NonFiniteLossError):
        Curriculum([_stage(ScaledInputAfter(3))], tmp_path, checkpoint_every=2).fit(TinyBackbone())
    still_bad = _stage(ScaledInputAfter(0), lr=0.01)  # fails on its first step again
    with pytest.raises(NonFiniteLossError, match="No step succeeded after resuming from") as info:
        Curriculum([still_bad], tmp_path, resume="continue").fit(TinyBackbone())
    last = tmp_path / "stage00-s" / "last.pt"
    assert f"resuming from {last}" in str(info.value)
    last.unlink()  # as the message says: the stage restarts from its start, new settings
    good = _stage(ScaledInputAfter(10**6), lr=0.001)
    (result,) = list(Curriculum([good], tmp_path, resume="continue").iter_stages(TinyBackbone()))
    assert result.resumed_from == 0 and result.steps == 8
    changes = json.loads((tmp_path / "manifest.json").read_text())["stages"][0]["changes"]
    assert [c["at_step"] for c in changes] == [2, 0]
