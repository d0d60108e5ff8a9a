"""Curriculum building blocks: Stage validation, optimisers and schedule, sampling,
checkpoint files and the collapse monitor."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from cxr_curriculum.curriculum import (
    LARS,
    Curriculum,
    Stage,
    WarmupCosine,
    build_optimizer,
    data_fingerprint,
    embedding_std,
    load_checkpoint,
)
from cxr_curriculum.curriculum.checkpoint import atomic_save, capture_rng, restore_rng
from cxr_curriculum.curriculum.sampling import ResumableDistributedSampler, StageDataset, mix_seed
from test_curriculum import NoiseImages, TinyBackbone, TinyRotation

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- Stage
def test_stage_validates_eagerly() -> None:
    data = NoiseImages(8)
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        Stage(TinyRotation(), data)
    with pytest.raises(ValueError, match="exactly one of epochs or steps"):
        Stage(TinyRotation(), data, epochs=1, steps=1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        Stage(TinyRotation(), data, steps=1, optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Stage(TinyRotation(), data, steps=1, batch_size=0)
    with pytest.raises(TypeError, match="SSLMethod"):
        Stage(nn.Linear(2, 2), data, steps=1)
    with pytest.raises(ValueError, match="empty"):
        Stage(TinyRotation(), TensorDataset(torch.zeros(0, 1, 8, 8)), steps=1)
    with pytest.raises(ValueError, match="unique"):
        Curriculum([Stage(TinyRotation(), data, steps=1)] * 2)


def test_stage_defaults_follow_the_method_and_linear_scaling() -> None:
    from cxr_curriculum.methods import Rotation, SimCLR

    rot = Stage(Rotation(), NoiseImages(8), steps=1, batch_size=64)
    hint = Rotation.default_optimizer
    assert rot.resolved_optimizer == hint.name
    assert rot.resolved_lr == pytest.approx(hint.lr * 64 / hint.reference_batch)
    sgd = Stage(TinyRotation(), NoiseImages(8), steps=1, batch_size=512)
    assert (sgd.resolved_optimizer, sgd.resolved_lr) == ("sgd", pytest.approx(0.06))
    lars = Stage(SimCLR(), NoiseImages(8), steps=1, optimizer="lars", lr=0.1, weight_decay=0.0)
    assert (lars.resolved_lr, lars.resolved_weight_decay) == (0.1, 0.0)
    assert lars.replace(steps=5).epochs is None and lars.replace(epochs=2).steps is None
    assert lars.config()["method"]["class"].endswith("SimCLR") and lars.label == "simclr"


# ----------------------------------------------------------------------------- optimisers
def test_lars_matches_lightly_reference() -> None:
    lars_ref = pytest.importorskip("lightly.utils.lars")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    twin = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    twin.load_state_dict(model.state_dict())
    ours = build_optimizer("lars", model, lr=0.5, weight_decay=1e-2, momentum=0.9)
    assert isinstance(ours, LARS)
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in ours.param_groups]
    by_id = {id(p): q for p, q in zip(model.parameters(), twin.parameters(), strict=True)}
    twin_groups = [{**g, "params": [by_id[id(p)] for p in g["params"]]} for g in groups]
    ref = lars_ref.LARS(twin_groups, lr=0.5, momentum=0.9, trust_coefficient=0.001)
    for _ in range(4):
        x = torch.randn(16, 6)
        for m, opt in ((model, ours), (twin, ref)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert [g["weight_decay"] for g in ours.param_groups] == [1e-2, 0.0]  # no decay on 1-D


def test_warmup_cosine_matches_torch_schedulers() -> None:
    sched = WarmupCosine(total_steps=20, warmup_steps=5, final_ratio=0.1)
    assert [sched(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=15, eta_min=0.1)
    for s in range(5, 20):
        assert sched(s) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9)
        opt.step()
        ref.step()
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(total_steps=3, warmup_steps=4)


# ----------------------------------------------------------------------------- sampling
def test_sampler_splits_global_batches_and_resumes() -> None:
    data = TensorDataset(torch.arange(20))
    single = list(ResumableDistributedSampler(data, 1, 0, seed=7))
    ranks = [list(ResumableDistributedSampler(data, 2, r, seed=7)) for r in range(2)]
    # global batch j of 8 = single[8j:8j+8] = union of each rank's j-th batch of 4
    for j in range(2):
        union = set(ranks[0][4 * j : 4 * j + 4]) | set(ranks[1][4 * j : 4 * j + 4])
        assert union == set(single[8 * j : 8 * j + 8])
    resumed = ResumableDistributedSampler(data, 1, 0, seed=7)
    resumed.skip = 8
    assert list(resumed) == single[8:] and len(resumed) == 12
    epoch1 = ResumableDistributedSampler(data, 1, 0, seed=7)
    epoch1.set_epoch(1)
    assert list(epoch1) != single and sorted(epoch1) == list(range(20))


def test_stage_dataset_views_depend_only_on_seed_epoch_and_index() -> None:
    data = NoiseImages(6)
    tf = TinyRotation().make_transform(32)
    a, b = StageDataset(data, tf, seed=1), StageDataset(data, tf, seed=1)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    x3 = a[3]
    assert torch.equal(torch.get_rng_state(), before)  # caller's RNG untouched
    _ = [b[i] for i in (5, 0, 2)]  # other items first: no effect on item 3
    assert torch.equal(b[3][0], x3[0]) and int(b[3][1]) == int(x3[1])
    b.epoch = 1
    views = [b[3][0] for _ in range(2)]
    assert torch.equal(views[0], views[1]) and not torch.equal(views[0], x3[0])
    assert len({mix_seed(1, 0, i) for i in range(1000)}) == 1000


def test_data_fingerprint_changes_with_the_data() -> None:
    base = NoiseImages(10)
    assert data_fingerprint(base) == data_fingerprint(NoiseImages(10, seed=1))  # no pixels read
    assert data_fingerprint(base) != data_fingerprint(NoiseImages(11))
    assert data_fingerprint(Subset(base, [0, 1])) != data_fingerprint(Subset(base, [0, 2]))


@pytest.mark.realdata
def test_data_fingerprint_hashes_file_lists(data_root: Path) -> None:
    from cxr_curriculum.data import KermanyPneumonia

    train = KermanyPneumonia(data_root / "kermany-pneumonia", split="train")
    test = KermanyPneumonia(data_root / "kermany-pneumonia", split="test")
    assert data_fingerprint(train) != data_fingerprint(test)
    assert data_fingerprint(train) == data_fingerprint(
        KermanyPneumonia(data_root / "kermany-pneumonia", split="train")
    )


# ----------------------------------------------------------------------------- files, RNG
def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self) -> tuple[object, ...]:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # temp file removed


def test_rng_capture_restore_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    state = capture_rng()
    atomic_save({"rng": state}, tmp_path / "r.pt")
    first = (torch.rand(3), random.random(), np.random.rand())
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"])  # weights_only round trip
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_embedding_std_separates_spread_from_collapse() -> None:
    torch.manual_seed(0)
    assert embedding_std(torch.randn(512, 64)) == pytest.approx(1.0, abs=0.05)
    assert embedding_std(torch.ones(16, 64) + 1e-9 * torch.randn(16, 64)) < 1e-6
    with pytest.raises(ValueError, match="B >= 2"):
        embedding_std(torch.randn(1, 4))


@pytest.mark.parametrize(("amp", "fp16"), [("bf16", False), ("fp16", True)])
def test_amp_and_channels_last_code_paths_run_on_cpu(amp: str, fp16: bool) -> None:
    stage = Stage(TinyRotation(), NoiseImages(16), steps=2, batch_size=8, image_size=32)
    cur = Curriculum([stage], amp=amp, channels_last=True, log_every=1)  # type: ignore[arg-type]
    bb = TinyBackbone()
    before = _weights(bb)
    (res,) = cur.iter_stages(bb)
    assert cur._run is not None and cur._run.amp_dtype == (
        torch.float16 if fp16 else torch.bfloat16
    )
    assert all(math.isfinite(r["loss"]) for r in res.metrics)
    assert any(not torch.equal(v, before[k]) for k, v in bb.state_dict().items())
    assert all(p.dtype == torch.float32 for p in bb.parameters())  # autocast, not casting


def test_sync_batchnorm_conversion_is_undone_with_state_kept() -> None:
    from cxr_curriculum.curriculum.distributed import revert_sync_batchnorm

    bb = TinyBackbone()
    bb.body[1].running_mean.fill_(0.5)
    state = _weights(bb)
    nn.SyncBatchNorm.convert_sync_batchnorm(bb)
    assert isinstance(bb.body[1], nn.SyncBatchNorm)
    revert_sync_batchnorm(bb)
    assert type(bb.body[1]) is nn.BatchNorm2d
    assert all(torch.equal(v, state[k]) for k, v in bb.state_dict().items())


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}
