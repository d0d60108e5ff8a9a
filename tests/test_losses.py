"""Parity of every SSL loss with lightly's implementation on the same random inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cxr_curriculum.losses import (
    BarlowTwinsLoss,
    DINOLoss,
    MemoryQueue,
    NegativeCosineSimilarity,
    NTXentLoss,
    VICRegLoss,
    byol_regression,
    covariance_loss,
    cross_correlation,
    invariance_loss,
    off_diagonal,
    variance_loss,
)

lightly_loss = pytest.importorskip("lightly.loss", reason="lightly is the parity reference")
lightly_vicreg = pytest.importorskip("lightly.loss.vicreg_loss")

ATOL = 1e-5


def _pair(n: int = 8, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
@pytest.mark.parametrize("n", [2, 7, 16])
def test_ntxent_matches_lightly(temperature: float, n: int) -> None:
    z0, z1 = _pair(n, 32, seed=n)
    ours = NTXentLoss(temperature)(z0, z1)
    ref = lightly_loss.NTXentLoss(temperature)(z0, z1)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_ntxent_gradients_match_lightly() -> None:
    z0, z1 = _pair(6, 8, seed=3)
    grads = []
    for loss_fn in (NTXentLoss(0.2), lightly_loss.NTXentLoss(0.2)):
        a, b = z0.clone().requires_grad_(), z1.clone().requires_grad_()
        loss_fn(a, b).backward()
        grads.append((a.grad, b.grad))
    torch.testing.assert_close(grads[0], grads[1], atol=ATOL, rtol=0)


def test_ntxent_queue_matches_lightly_memory_bank_over_steps() -> None:
    ours = NTXentLoss(0.2, memory_bank_size=32, embedding_dim=16)
    ref = lightly_loss.NTXentLoss(0.2, memory_bank_size=(32, 16))
    assert ours.memory_bank is not None
    ref.memory_bank.bank.copy_(ours.memory_bank.queue)  # same random initial negatives
    for step in range(6):  # 6 * 8 > 32: wraps around the queue
        q, k = _pair(8, 16, seed=10 + step)
        torch.testing.assert_close(
            ours(q.requires_grad_(), k), ref(q, k), atol=ATOL, rtol=0, msg=f"step {step}"
        )
    torch.testing.assert_close(ours.memory_bank.queue, ref.memory_bank.bank, atol=ATOL, rtol=0)


def test_memory_queue_wraps_and_persists_in_state_dict() -> None:
    queue = MemoryQueue(size=5, dim=2)
    keys = torch.arange(14, dtype=torch.float32).view(7, 2)
    queue.enqueue(keys[:3])
    queue.enqueue(keys[3:])  # 4 more keys: wraps, oldest slots 3, 4, 0, 1 overwritten
    expected = torch.stack([keys[5], keys[6], keys[2], keys[3], keys[4]])
    torch.testing.assert_close(queue.queue, expected)
    assert int(queue.ptr) == 2
    restored = MemoryQueue(size=5, dim=2, seed=1)
    restored.load_state_dict(queue.state_dict())
    torch.testing.assert_close(restored.queue, queue.queue)
    assert int(restored.ptr) == 2
    with pytest.raises(ValueError, match="shape"):
        queue.enqueue(torch.zeros(2, 3))


def test_queue_not_updated_in_eval_mode() -> None:
    loss_fn = NTXentLoss(0.2, memory_bank_size=16, embedding_dim=4).eval()
    assert loss_fn.memory_bank is not None
    before = loss_fn.memory_bank.queue.clone()
    loss_fn(*_pair(4, 4))
    torch.testing.assert_close(loss_fn.memory_bank.queue, before)


def test_negative_cosine_similarity_matches_lightly_and_symmetric_sums() -> None:
    p0, p1 = _pair(8, 16, seed=1)
    z0, z1 = _pair(8, 16, seed=2)
    ref = lightly_loss.NegativeCosineSimilarity()
    ours = NegativeCosineSimilarity()
    torch.testing.assert_close(ours(p0, z1), ref(p0, z1), atol=ATOL, rtol=0)
    # BYOL/SimSiam symmetric loss: summed over both directions (lightly PR #1286)
    expected = ref(p0, z1) + ref(p1, z0)
    p0.requires_grad_()
    z0.requires_grad_()
    sym = ours.symmetric(p0, p1, z0, z1)
    torch.testing.assert_close(sym, expected, atol=ATOL, rtol=0)
    sym.backward()
    assert p0.grad is not None
    assert z0.grad is None  # stop-gradient on the targets


def test_byol_regression_is_normalised_mse() -> None:
    p, z = _pair(8, 16, seed=4)
    ref = lightly_loss.NegativeCosineSimilarity()(p, z)
    torch.testing.assert_close(byol_regression(p, z), 2 + 2 * ref, atol=ATOL, rtol=0)
    mse = (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(1).mean()
    torch.testing.assert_close(byol_regression(p, z), mse, atol=ATOL, rtol=0)


@pytest.mark.parametrize("lambda_param", [5e-3, 0.1])
def test_barlow_twins_matches_lightly(lambda_param: float) -> None:
    z0, z1 = _pair(16, 12, seed=5)
    ours = BarlowTwinsLoss(lambda_param)(z0, z1)
    ref = lightly_loss.BarlowTwinsLoss(lambda_param)(z0, z1)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-5)


def test_barlow_twins_terms() -> None:
    c = torch.arange(9.0).view(3, 3)
    mask = ~torch.eye(3, dtype=torch.bool)
    torch.testing.assert_close(off_diagonal(c), c[mask])
    z = torch.randn(32, 4)
    corr = cross_correlation(z, z)
    torch.testing.assert_close(torch.diagonal(corr), torch.ones(4), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="square"):
        off_diagonal(torch.zeros(2, 3))


@pytest.mark.parametrize("params", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_matches_lightly(params: tuple[float, float, float]) -> None:
    z0, z1 = _pair(10, 12, seed=6)
    ours = VICRegLoss(*params)(z0, z1)
    ref = lightly_loss.VICRegLoss(*params)(z0, z1)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-5)


def test_vicreg_terms_match_lightly() -> None:
    z0, z1 = _pair(10, 12, seed=7)
    z0 = z0 * 0.3  # some features below the variance hinge
    torch.testing.assert_close(invariance_loss(z0, z1), lightly_vicreg.invariance_loss(z0, z1))
    torch.testing.assert_close(
        variance_loss(z0), lightly_vicreg.variance_loss(z0), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        covariance_loss(z0), lightly_vicreg.covariance_loss(z0), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("n_local", [0, 3])
def test_dino_matches_lightly_including_centre_updates(n_local: int) -> None:
    k = 32
    ours = DINOLoss(k, teacher_temp=0.04, student_temp=0.1, center_momentum=0.9)
    ref = lightly_loss.DINOLoss(
        k, warmup_teacher_temp=0.04, teacher_temp=0.04, student_temp=0.1, center_momentum=0.9
    )
    g = torch.Generator().manual_seed(8)
    for step in range(3):
        teacher = [torch.randn(6, k, generator=g) for _ in range(2)]
        student = [torch.randn(6, k, generator=g) for _ in range(2 + n_local)]
        torch.testing.assert_close(
            ours(teacher, student), ref(teacher, student), atol=ATOL, rtol=0, msg=f"step {step}"
        )
        torch.testing.assert_close(ours.center.view(-1), ref.center.view(-1), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: NTXentLoss(temperature=0.0), "temperature"),
        (lambda: NTXentLoss(memory_bank_size=8), "embedding_dim"),
        (lambda: NTXentLoss(memory_bank_size=-1), "memory_bank_size"),
        (lambda: BarlowTwinsLoss(lambda_param=-1), "lambda_param"),
        (lambda: VICRegLoss(mu_param=-1), "mu_param"),
        (lambda: DINOLoss(8, teacher_temp=0), "temperatures"),
        (lambda: DINOLoss(8, center_momentum=2), "center_momentum"),
        (lambda: NegativeCosineSimilarity(eps=0), "eps"),
        (lambda: MemoryQueue(0, 4), "size"),
    ],
)
def test_invalid_arguments_raise(factory: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()  # type: ignore[operator]


def test_shape_mismatch_raises() -> None:
    a, b = torch.zeros(4, 3), torch.zeros(4, 5)
    for loss_fn in (NTXentLoss(), BarlowTwinsLoss(), VICRegLoss(), NegativeCosineSimilarity()):
        with pytest.raises(ValueError):
            loss_fn(a, b)


def test_losses_run_in_float32_under_autocast() -> None:
    z0, z1 = _pair(8, 16, seed=9)
    for loss_fn in (NTXentLoss(0.1), BarlowTwinsLoss(), VICRegLoss()):
        expected = loss_fn(z0, z1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = loss_fn(z0.bfloat16(), z1.bfloat16())
        assert got.dtype == torch.float32
        # only the bf16 rounding of the inputs remains
        torch.testing.assert_close(got, expected, atol=0.05, rtol=0.02)
