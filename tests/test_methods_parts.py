"""Heads and momentum utilities of the SSL methods."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from cxr_curriculum.methods import (
    BarlowTwinsProjectionHead,
    BYOLPredictionHead,
    BYOLProjectionHead,
    ClassificationHead,
    DINOProjectionHead,
    JigsawHead,
    MoCoV2ProjectionHead,
    OptimizerHint,
    ProjectionHead,
    SimCLRProjectionHead,
    SimSiamPredictionHead,
    SimSiamProjectionHead,
    VICRegProjectionHead,
    cosine_schedule,
    make_momentum_copy,
    update_momentum,
)


def _layer_types(head: nn.Module) -> list[str]:
    return [type(m).__name__ for m in head.modules() if not list(m.children())]


@pytest.mark.parametrize(
    ("head", "types"),
    [
        (SimCLRProjectionHead(16, 32, 8), ["Linear", "BatchNorm1d", "ReLU", "Linear"]),
        (MoCoV2ProjectionHead(16, 32, 8), ["Linear", "ReLU", "Linear"]),
        (BYOLProjectionHead(16, 32, 8), ["Linear", "BatchNorm1d", "ReLU", "Linear"]),
        (BYOLPredictionHead(8, 32, 8), ["Linear", "BatchNorm1d", "ReLU", "Linear"]),
        (
            SimSiamProjectionHead(16, 32, 8),
            [
                "Linear",
                "BatchNorm1d",
                "ReLU",
                "Linear",
                "BatchNorm1d",
                "ReLU",
                "Linear",
                "BatchNorm1d",
            ],
        ),
        (SimSiamPredictionHead(8, 4, 8), ["Linear", "BatchNorm1d", "ReLU", "Linear"]),
        (
            BarlowTwinsProjectionHead(16, 32, 32),
            ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"],
        ),
    ],
)
def test_projection_heads_follow_the_papers(head: ProjectionHead, types: list[str]) -> None:
    assert _layer_types(head) == types
    out = head(torch.randn(5, head.in_dim))
    assert out.shape == (5, head.out_dim)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    # a linear layer followed by batch norm has no bias; the last linear layer of
    # heads without output BN has one
    assert sum(lin.bias is None for lin in linears) == len(norms)


def test_simsiam_output_bn_has_no_affine_and_vicreg_is_barlow_shaped() -> None:
    last_bn = [
        m for m in SimSiamProjectionHead(8, 16, 8).modules() if isinstance(m, nn.BatchNorm1d)
    ]
    assert last_bn[-1].affine is False and last_bn[0].affine is True
    assert _layer_types(VICRegProjectionHead(8, 16, 16)) == _layer_types(
        BarlowTwinsProjectionHead(8, 16, 16)
    )


def test_default_head_sizes_are_the_papers() -> None:
    def defaults(cls: type) -> tuple[int, ...]:
        params = inspect.signature(cls).parameters
        return tuple(p.default for p in params.values())

    assert defaults(SimCLRProjectionHead) == (2048, 2048, 128)
    assert defaults(MoCoV2ProjectionHead) == (2048, 2048, 128)
    assert defaults(BYOLProjectionHead) == (2048, 4096, 256)
    assert defaults(BYOLPredictionHead) == (256, 4096, 256)
    assert defaults(SimSiamProjectionHead) == (2048, 2048, 2048)
    assert defaults(SimSiamPredictionHead) == (2048, 512, 2048)
    assert defaults(BarlowTwinsProjectionHead) == (2048, 8192, 8192)
    assert defaults(DINOProjectionHead) == (2048, 2048, 256, 65536, False)


def test_projection_head_validates_blocks() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ProjectionHead([])
    with pytest.raises(ValueError, match="does not match"):
        ProjectionHead([(4, 8, None, None), (6, 2, None, None)])
    with pytest.raises(ValueError, match="positive int"):
        ProjectionHead([(0, 8, None, None)])


def test_classification_and_jigsaw_heads() -> None:
    assert ClassificationHead(16, 4)(torch.randn(3, 16)).shape == (3, 4)
    assert _layer_types(ClassificationHead(16, 4)) == ["Linear"]
    assert ClassificationHead(16, 8, hidden_dim=32)(torch.randn(3, 16)).shape == (3, 8)
    head = JigsawHead(16, 10, n_tiles=9, tile_dim=8, hidden_dim=12)
    assert head(torch.randn(3, 9, 16)).shape == (3, 10)
    # the tile order matters (features are concatenated, not pooled)
    x = torch.randn(1, 9, 16)
    assert not torch.allclose(head(x), head(x[:, torch.randperm(9)]))
    with pytest.raises(ValueError, match="tile features"):
        head(torch.randn(3, 8, 16))


def test_dino_head_has_a_normalised_last_layer() -> None:
    head = DINOProjectionHead(16, 32, 8, 64)
    head.last_layer.data.mul_(7.0)  # the weight norm is fixed to 1: scaling changes nothing
    out = head(torch.randn(4, 16))
    assert out.shape == (4, 64)
    assert out.abs().max() <= 1.0 + 1e-6  # cosine of unit vectors


def test_update_momentum_formula_and_limits() -> None:
    student, teacher = nn.Linear(3, 2), nn.Linear(3, 2)
    s0 = [p.detach().clone() for p in student.parameters()]
    t0 = [p.detach().clone() for p in teacher.parameters()]
    update_momentum(student, teacher, 0.9)
    for s, t, t_new in zip(s0, t0, teacher.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.9 * t + 0.1 * s)
    update_momentum(student, teacher, 0.0)
    for s, t_new in zip(s0, teacher.parameters(), strict=True):
        torch.testing.assert_close(t_new, s)
    with pytest.raises(ValueError, match="momentum"):
        update_momentum(student, teacher, 1.5)
    with pytest.raises(ValueError, match="parameters"):
        update_momentum(student, nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), 0.5)


def test_make_momentum_copy_is_frozen_and_independent() -> None:
    student = nn.Linear(3, 2)
    teacher = make_momentum_copy(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        student.weight.add_(1.0)
    assert not torch.equal(student.weight, teacher.weight)


def test_cosine_schedule_endpoints_and_lightly_parity() -> None:
    assert cosine_schedule(0, 100, 0.996, 1.0) == pytest.approx(0.996)
    assert cosine_schedule(100, 100, 0.996, 1.0) == pytest.approx(1.0)
    assert cosine_schedule(50, 100, 0.0, 1.0) == pytest.approx(0.5)
    assert cosine_schedule(500, 100, 0.0, 1.0) == pytest.approx(1.0)
    values = [cosine_schedule(s, 10, 0.9, 1.0) for s in range(11)]
    assert values == sorted(values)
    # BYOL's tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2
    k, total = 37, 120
    assert cosine_schedule(k, total, 0.99, 1.0) == pytest.approx(
        1 - (1 - 0.99) * (math.cos(math.pi * k / total) + 1) / 2
    )
    with pytest.raises(ValueError, match="step"):
        cosine_schedule(-1, 10, 0.0, 1.0)
    with pytest.raises(ValueError, match="total"):
        cosine_schedule(0, 0, 0.0, 1.0)


def test_optimizer_hint() -> None:
    hint = OptimizerHint("lars", lr=0.2, weight_decay=1.5e-6)
    assert hint.scaled_lr(512) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="optimizer name"):
        OptimizerHint("adam")  # type: ignore[arg-type]
