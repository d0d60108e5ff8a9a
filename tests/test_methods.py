"""The SSLMethod contract for every method, trained for a few steps on real X-rays."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

import cxr_curriculum.methods as methods
from _methods import SMALL, kermany_xrays, view_batch
from cxr_curriculum.backbones import Backbone
from cxr_curriculum.methods import (
    BYOL,
    DINO,
    MAE,
    METHODS,
    BarlowTwins,
    Jigsaw,
    MoCoV2,
    RelativePatchLocation,
    Rotation,
    SimCLR,
    SimSiam,
    SSLMethod,
    TeacherStudentMethod,
    VICReg,
)
from cxr_curriculum.methods.jigsaw import standardize_patches
from cxr_curriculum.methods.rotation import BatchedRandomRotation, rotate_all
from cxr_curriculum.transforms import Resize

pytestmark = pytest.mark.usefixtures("one_thread")

#: Methods that need a ViT backbone (the others are trained on a ResNet-18 here and on a
#: ViT in test_methods_vit.py).
VIT_ONLY = (MAE,)
#: Tiling methods need room for 3x3 tiles/patches.
IMAGE_SIZE = {Jigsaw: 64, RelativePatchLocation: 64}


@pytest.fixture(scope="module")
def xrays(data_root: Path) -> list[torch.Tensor]:
    """Six real Kermany X-rays (3 normal, 3 pneumonia), resized to 80 px."""
    return kermany_xrays(data_root, 3)


def _backbone(cls: type[SSLMethod] | None = None) -> Backbone:
    if cls in VIT_ONLY:
        return Backbone("timm:vit_tiny_patch16_224", in_chans=1, weights=None)
    return Backbone("resnet18", in_chans=1, weights=None)


def _make(cls: type[SSLMethod]) -> tuple[SSLMethod, int]:
    return cls(**SMALL[cls]), IMAGE_SIZE.get(cls, 32)


def test_names_others_rely_on() -> None:
    for name in ("Rotation", "Jigsaw", "RelativePatchLocation", "SimCLR", "MoCoV2", "BYOL",
                 "SimSiam", "BarlowTwins", "VICReg"):  # fmt: skip
        cls = getattr(methods, name)
        assert issubclass(cls, SSLMethod) and name in methods.__all__
    import cxr_curriculum

    assert cxr_curriculum.SSLMethod is SSLMethod


@pytest.mark.parametrize("cls", list(METHODS.values()), ids=lambda c: c.__name__)
def test_constructible_with_no_arguments(cls: type[SSLMethod]) -> None:
    method = cls()
    assert isinstance(method, nn.Module) and not method.is_setup
    assert METHODS[method.name] is cls
    assert repr(method).startswith(cls.__name__)
    with pytest.raises(RuntimeError, match="setup"):
        method.training_step(torch.zeros(2, 1, 32, 32))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: Rotation(hidden_dim=0), "hidden_dim"),
        (lambda: Jigsaw(grid=1), "grid"),
        (lambda: RelativePatchLocation(patch_size=0), "patch_size"),
        (lambda: SimCLR(temperature=0.0), "temperature"),
        (lambda: MoCoV2(queue_size=0), "queue_size"),
        (lambda: BYOL(momentum=1.5), "momentum"),
        (lambda: SimSiam(projection_dim=0), "projection_dim"),
        (lambda: BarlowTwins(lambda_param=-1.0), "lambda_param"),
        (lambda: VICReg(nu_param=-1.0), "nu_param"),
        (lambda: DINO(n_local_crops=-1), "n_local_crops"),
        (lambda: DINO(local_scale=(0.5, 0.1)), "local_scale"),
        (lambda: SimCLR().make_transform(4), "image_size"),
        (lambda: SimCLR().make_transform(32, strength=-1.0), "strength"),
        (lambda: RelativePatchLocation(patch_size=30).make_transform(64), "need"),
    ],
)
def test_invalid_arguments_raise_value_error(factory: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.realdata
@pytest.mark.parametrize("cls", list(METHODS.values()), ids=lambda c: c.__name__)
def test_training_steps_on_real_xrays_change_the_backbone(
    cls: type[SSLMethod], xrays: list[torch.Tensor]
) -> None:
    method, size = _make(cls)
    backbone = _backbone(cls)
    method.setup(backbone)
    batch = view_batch(method, xrays[:4], size)
    before = copy.deepcopy(backbone.state_dict())
    teacher_before = (
        copy.deepcopy(method.teacher_backbone.state_dict())
        if isinstance(method, TeacherStudentMethod)
        else None
    )
    params = [p for p in method.parameters() if p.requires_grad]
    assert {id(p) for p in method.head_parameters()} <= {id(p) for p in params}
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    for step in range(2):
        loss = method.training_step(batch)
        assert loss.dim() == 0 and torch.isfinite(loss), f"{cls.__name__}: loss {loss}"
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_step_end(step, 10)
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.endswith("weight") for k in changed), f"{cls.__name__} did not train"
    if teacher_before is not None:
        t_now = method.teacher_backbone.state_dict()  # type: ignore[union-attr]
        assert any(not torch.equal(t_now[k], teacher_before[k]) for k in teacher_before)
        conv = "conv1.weight"
        t_key = next(k for k in t_now if k.endswith(conv))
        s_key = next(k for k in backbone.state_dict() if k.endswith(conv))
        assert not torch.equal(t_now[t_key], backbone.state_dict()[s_key])  # lags the student
    # the collapse monitor has no side effect on the state
    state = copy.deepcopy(method.state_dict())
    emb = method.embedding_for_monitor(batch)
    assert emb.dim() == 2 and emb.shape[0] == 4 and torch.isfinite(emb).all()
    after = method.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())


@pytest.mark.realdata
@pytest.mark.parametrize("cls", [MoCoV2, BYOL, DINO], ids=lambda c: c.__name__)
def test_resume_from_state_dict_is_identical(
    cls: type[SSLMethod], xrays: list[torch.Tensor]
) -> None:
    method, size = _make(cls)
    method.setup(_backbone())
    batch = view_batch(method, xrays[:4], size)

    def step(m: SSLMethod, i: int) -> torch.Tensor:
        opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.05)
        opt.zero_grad()
        loss = m.training_step(batch)
        loss.backward()
        opt.step()
        m.on_step_end(i, 10)
        return loss.detach()

    step(method, 0)
    checkpoint = copy.deepcopy(method.state_dict())
    expected = [step(method, 1), method.training_step(batch).detach()]
    resumed, _ = _make(cls)
    resumed.setup(_backbone())  # fresh random weights, teacher, queue and centre
    resumed.load_state_dict(checkpoint)
    got = [step(resumed, 1), resumed.training_step(batch).detach()]
    assert [float(x) for x in got] == [float(x) for x in expected]


@pytest.mark.realdata
def test_teardown_drops_heads_and_keeps_backbone(xrays: list[torch.Tensor]) -> None:
    method, backbone = MoCoV2(**SMALL[MoCoV2]), _backbone()
    method.setup(backbone)
    assert {"projection_head", "queue", "teacher_backbone", "teacher_head"} <= set(method._modules)
    method.teardown()
    assert not method.is_setup and method.head_parameters() == []
    assert method.backbone is backbone
    assert set(method.state_dict()) == {f"backbone.{k}" for k in backbone.state_dict()}
    method.setup(backbone)  # a method can be set up again (fresh heads)
    assert method.is_setup


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("method", "n_views"),
    [(SimCLR(**SMALL[SimCLR]), 2), (DINO(**SMALL[DINO]), 4), (Rotation(), 0)],
    ids=["SimCLR", "DINO", "Rotation"],
)
def test_batched_views_on_the_device(
    method: SSLMethod, n_views: int, xrays: list[torch.Tensor]
) -> None:
    method.setup(_backbone())
    tf = method.make_transform(32, batched=True)
    assert method.batch_transform is not None
    assert "_batch_transform" not in dict(method.named_modules())
    resized = default_collate([tf(img) for img in xrays[:4]])
    assert isinstance(resized, torch.Tensor) and resized.shape == (4, 1, 32, 32)
    views = method.batch_transform(resized, generator=torch.Generator().manual_seed(0))
    if n_views:
        assert len(views) == n_views and views[0].shape == (4, 1, 32, 32)
    loss = method.training_step(views)
    assert torch.isfinite(loss)
    method.make_transform(32)  # back to per-sample views
    assert method.batch_transform is None


@pytest.mark.parametrize("cls", [Jigsaw, RelativePatchLocation], ids=lambda c: c.__name__)
def test_per_sample_pretexts_pass_batches_through(cls: type[SSLMethod]) -> None:
    method, size = _make(cls)
    tf = method.make_transform(size, batched=True)
    batch = default_collate([tf(torch.rand(1, 70, 70)) for _ in range(2)])
    assert method.batch_transform is not None
    assert method.batch_transform(batch) is batch


def test_rotations_and_labels_agree() -> None:
    x = torch.rand(3, 1, 8, 8)
    rotated, labels = rotate_all(x)
    assert labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    torch.testing.assert_close(rotated[3:6], torch.rot90(x, 1, dims=(2, 3)))
    single, k = BatchedRandomRotation()(x, generator=torch.Generator().manual_seed(1))
    for i in range(3):
        torch.testing.assert_close(single[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))
    with pytest.raises(ValueError, match="square"):
        rotate_all(torch.rand(2, 1, 8, 6))


def test_standardize_patches() -> None:
    x = torch.rand(2, 9, 1, 7, 7) * 5 + 3
    y = standardize_patches(x)
    torch.testing.assert_close(y.mean(dim=(-3, -2, -1)), torch.zeros(2, 9), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(-3, -2, -1)), torch.ones(2, 9), atol=1e-3, rtol=0)


@pytest.mark.realdata
def test_rotation_learns_on_one_realview_batch(xrays: list[torch.Tensor]) -> None:
    method = Rotation()
    method.setup(_backbone())
    batch = view_batch(method, xrays, 32)
    opt = torch.optim.SGD(
        [p for p in method.parameters() if p.requires_grad], lr=0.05, momentum=0.9
    )
    losses = []
    for _ in range(6):
        loss = method.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("cls", list(METHODS.values()), ids=lambda c: c.__name__)
def test_transforms_pickle_for_dataloader_workers(cls: type[SSLMethod]) -> None:
    method, size = _make(cls)
    for batched in (False, True):
        tf = method.make_transform(size, strength=0.5, batched=batched)
        clone = pickle.loads(pickle.dumps(tf))
        image = torch.rand(1, 70, 70)
        out, out_clone = (
            t(image, generator=torch.Generator().manual_seed(3))
            if not isinstance(t, Resize)
            else t(image)
            for t in (tf, clone)
        )
        flat, flat_clone = _flat(out), _flat(out_clone)
        assert len(flat) == len(flat_clone) > 0
        assert all(torch.equal(a, b) for a, b in zip(flat, flat_clone, strict=True))


def _flat(x: Any) -> list[torch.Tensor]:
    if isinstance(x, list | tuple):
        return [t for item in x for t in _flat(item)]
    return [torch.as_tensor(x)]


@pytest.mark.realdata
def test_single_rotation_and_symmetric_moco_variants(xrays: list[torch.Tensor]) -> None:
    backbone = _backbone()
    rotation = Rotation(all_rotations=False)
    rotation.setup(backbone)
    images, k = view_batch(rotation, xrays[:4], 32)
    assert images.shape == (4, 1, 32, 32) and k.dtype == torch.long
    assert set(k.tolist()) <= {0, 1, 2, 3}
    assert torch.isfinite(rotation.training_step([images, k]))
    with pytest.raises(ValueError, match="all_rotations=False"):
        rotation.training_step(images)
    moco = MoCoV2(**SMALL[MoCoV2], symmetric=True)
    moco.setup(backbone)
    ptr = int(moco.queue.ptr)
    assert torch.isfinite(moco.training_step(view_batch(moco, xrays[:4], 32)))
    assert int(moco.queue.ptr) == (ptr + 8) % 64  # both views' keys were enqueued
