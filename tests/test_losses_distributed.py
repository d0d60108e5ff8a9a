"""Two gloo processes: gathered losses equal the single-process loss on the whole batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cxr_curriculum.losses import BarlowTwinsLoss, MemoryQueue, NTXentLoss, VICRegLoss

WORLD = 2
N_LOCAL = 4
DIM = 8


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(WORLD * N_LOCAL, DIM, generator=g), torch.randn(
        WORLD * N_LOCAL, DIM, generator=g
    )


def _losses() -> dict[str, torch.nn.Module]:
    return {
        "ntxent": NTXentLoss(0.3, gather_distributed=True),
        "barlow": BarlowTwinsLoss(0.01, gather_distributed=True),
        "vicreg": VICRegLoss(gather_distributed=True),
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        z0, z1 = _inputs()
        rows = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
        results = {}
        for name, loss_fn in _losses().items():
            a = z0[rows].clone().requires_grad_()
            b = z1[rows].clone().requires_grad_()
            loss = loss_fn(a, b)
            loss.backward()
            results[name] = (loss.detach(), a.grad, b.grad)
        queue = MemoryQueue(size=3 * WORLD * N_LOCAL, dim=DIM, gather_distributed=True)
        queue.enqueue(z1[rows])  # MoCo: every rank enqueues the keys of all ranks
        results["queue"] = (queue.queue.clone(), queue.ptr.clone())
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        # No rank may close its sockets while a peer is still reading the last collective:
        # gloo aborts the peer (SIGABRT) otherwise.
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_losses_equal_single_process_and_queues_agree(tmp_path: Path) -> None:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    z0, z1 = _inputs()
    for name, loss_fn in _losses().items():  # no process group here: gathering is a no-op
        a, b = z0.clone().requires_grad_(), z1.clone().requires_grad_()
        single = loss_fn(a, b)
        single.backward()
        assert a.grad is not None and b.grad is not None
        # DDP averages the ranks' gradients, i.e. optimises the mean of the ranks' losses
        mean_loss = torch.stack([r[name][0] for r in per_rank]).mean()
        torch.testing.assert_close(mean_loss, single.detach(), atol=1e-5, rtol=1e-5, msg=name)
        # all_gather's backward sums every rank's gradient into each rank's own rows, so a
        # rank holds WORLD x the gradient of the mean loss for its rows
        grad0 = torch.cat([r[name][1] for r in per_rank]) / WORLD
        grad1 = torch.cat([r[name][2] for r in per_rank]) / WORLD
        torch.testing.assert_close(grad0, a.grad, atol=1e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(grad1, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    # MoCo queue under DDP: identical on every rank, keys in rank order
    for r in per_rank:
        queue, ptr = r["queue"]
        torch.testing.assert_close(queue[: WORLD * N_LOCAL], z1)
        torch.testing.assert_close(queue, per_rank[0]["queue"][0])
        assert int(ptr) == WORLD * N_LOCAL
