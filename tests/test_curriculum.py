"""Curriculum engine: real two-stage run on X-rays, resume, kill -9, DDP, NaN/collapse stops.

The real-data test runs the library's Rotation and SimCLR on Kermany X-rays with
``Backbone("resnet18")``. Engine tests use a tiny conv net (``TinyBackbone``) and, in
subprocesses, a torch-only SSLMethod double (``TinyRotation``) so that a subprocess
only imports torch and ``cxr_curriculum.curriculum``; subprocesses import this module
(``tests/`` on ``sys.path``) for them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from cxr_curriculum.curriculum import (
    CollapseError,
    Curriculum,
    NonFiniteLossError,
    Stage,
    load_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


class TinyBackbone(nn.Module):
    """Two strided convs and global pooling: ``(B, 1, H, W) -> (B, 16)``."""

    num_features = 16

    def __init__(self, norm: bool = True) -> None:
        super().__init__()
        norm_layer: nn.Module = nn.BatchNorm2d(8) if norm else nn.Identity()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), norm_layer, nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip

    def forward_features(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x).mean(dim=(2, 3))


class NoiseImages(Dataset[Tensor]):
    """``n`` smooth random images ``(1, 40, 40)`` in ``[0, 1]`` (fixed by ``seed``).

    ``delay`` seconds of sleep per item (``CXR_TEST_DELAY``) slow a run down for the
    kill test without changing what it computes.
    """

    def __init__(self, n: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 1, 10, 10, generator=g)
        self.images = nn.functional.interpolate(low, size=40, mode="bilinear").clamp(0, 1)
        self.delay = float(os.environ.get("CXR_TEST_DELAY", "0"))
        self.fail_after: int | None = None
        self.calls = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if self.delay:
            time.sleep(self.delay)
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("interrupted")
        return self.images[i], i % 2


class TinyRotation(nn.Module):
    """A torch-only SSLMethod double: predict a random 90-degree rotation of a random crop.

    Keeps a momentum copy of its head (a buffer updated in ``on_step_end``) so that a
    resume that forgot the method's state would give other weights.
    """

    def __init__(self, crop: int = 28) -> None:
        super().__init__()
        self.crop = crop
        self.backbone: nn.Module | None = None

    def setup(self, backbone: nn.Module) -> None:
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, 4)  # type: ignore[arg-type]
        self.register_buffer("ema", self.head.weight.detach().clone())

    def make_transform(self, image_size: int, strength: float = 1.0) -> Any:
        def tf(image: Tensor) -> tuple[Tensor, Tensor]:
            x = nn.functional.interpolate(image[None], size=image_size, mode="bilinear")[0]
            i, j = torch.randint(0, image_size - self.crop + 1, (2,)).tolist()
            k = torch.randint(0, 4, ())
            x = x[:, i : i + self.crop, j : j + self.crop]
            return torch.rot90(x, int(k), dims=(1, 2)), k

        return tf

    def training_step(self, batch: Any) -> Tensor:
        x, k = batch
        return nn.functional.cross_entropy(self.head(self.backbone(x)), k)  # type: ignore[misc]

    def on_step_end(self, step: int, total_steps: int) -> None:
        with torch.no_grad():
            self.ema.mul_(0.9).add_(self.head.weight, alpha=0.1)
            self.head.weight.add_(self.ema, alpha=1e-3)

    def embedding_for_monitor(self, batch: Any) -> Tensor:
        out: Tensor = self.backbone(batch[0])  # type: ignore[misc]
        return out

    def teardown(self) -> None:
        del self.head, self.ema


def engine_stages(data: Dataset[Any], steps: int = 12) -> list[Stage]:
    """Two TinyRotation stages (SGD, then AdamW), batch 8, 32 px."""
    return [
        Stage(TinyRotation(), data, steps=steps, batch_size=8, image_size=32, name="rot"),
        Stage(TinyRotation(24), data, steps=steps, batch_size=8, image_size=32, name="rot24",
              optimizer="adamw"),
    ]  # fmt: skip


def tiny_stages(data: Dataset[Any], steps: int = 6) -> list[Stage]:
    """The library's Rotation then SimCLR, batch 8, 32 px."""
    from cxr_curriculum.methods import Rotation, SimCLR

    return [
        Stage(Rotation(), data, steps=steps, batch_size=8, image_size=32),
        Stage(SimCLR(), data, steps=steps, batch_size=8, image_size=32, optimizer="adamw"),
    ]


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "run_curriculum.py"
    path.write_text(
        "import sys, json, torch\n"
        f"sys.path[:0] = [{str(TESTS)!r}, {str(SRC)!r}]\n"
        "torch.set_num_threads(1)\n" + body
    )
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


# ----------------------------------------------------------------------------- real X-rays
@pytest.mark.slow
@pytest.mark.realdata
def test_two_stage_curriculum_on_real_xrays(data_root: Path, tmp_path: Path) -> None:
    from cxr_curriculum.backbones import Backbone
    from cxr_curriculum.data import KermanyPneumonia
    from cxr_curriculum.methods import Rotation, SimCLR

    kermany = KermanyPneumonia(data_root / "kermany-pneumonia", split="train")
    pool = Subset(kermany, list(range(0, len(kermany), len(kermany) // 16))[:16])
    stages = [
        Stage(Rotation(), pool, steps=2, batch_size=4, image_size=32),
        Stage(SimCLR(), pool, steps=2, batch_size=8, image_size=32),
    ]
    backbone = Backbone("resnet18")
    before = _state(backbone)
    cur = Curriculum(stages, checkpoint_dir=tmp_path, checkpoint_every=1, log_every=1)
    results = list(cur.iter_stages(backbone))
    assert [r.skipped for r in results] == [False, False]
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.endswith("conv1.weight") for k in changed)
    for i, name in enumerate(["rotation", "simclr"]):
        folder = tmp_path / f"stage{i:02d}-{name}"
        assert (folder / "final.pt").is_file() and not (folder / "last.pt").exists()
        assert (folder / "backbone.safetensors").is_file()
        rows = (folder / "metrics.csv").read_text().strip().splitlines()
        assert rows[0].startswith("stage,step,epoch,loss,lr") and len(rows) == 3
        assert json.loads((folder / "metrics.json").read_text())["steps"] == 2
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["done", "done"]
    assert (
        manifest["torch"] == torch.__version__
        and len(manifest["stages"][0]["data_fingerprint"]) == 16
    )
    trained = _state(backbone)

    again = Backbone("resnet18")  # a rerun skips both stages and loads the final weights
    rerun = list(Curriculum(stages, checkpoint_dir=tmp_path).iter_stages(again))
    assert [r.skipped for r in rerun] == [True, True]
    assert all(torch.equal(v, trained[k]) for k, v in again.state_dict().items())


def test_epochs_budget_batched_augmentation_and_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxr_curriculum.curriculum import WarmupCosine
    from cxr_curriculum.methods import SimCLR

    st = Stage(SimCLR(), NoiseImages(20), epochs=2, batch_size=8, image_size=32,
               batched_augmentation=True, warmup_steps=2)  # fmt: skip
    (res,) = Curriculum([st], tmp_path, log_every=1).iter_stages(TinyBackbone())
    assert res.steps == 4  # 2 epochs x floor(20 / 8) full batches
    assert [(r["step"], r["epoch"]) for r in res.metrics] == [(1, 0), (2, 0), (3, 1), (4, 1)]
    expected_lr = [st.resolved_lr * WarmupCosine(4, 2)(s) for s in range(4)]
    assert [r["lr"] for r in res.metrics] == pytest.approx(expected_lr)
    assert all(r["images_per_s"] > 0 and 0 < r["embedding_std"] < 2 for r in res.metrics)
    csv_rows = (tmp_path / "stage00-simclr" / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 5
    assert "stage 0 simclr" not in capsys.readouterr().err  # no progress bar without a TTY


# ----------------------------------------------------------------------------- resume
def test_resume_in_process_matches_uninterrupted_run(tmp_path: Path) -> None:
    data = NoiseImages(24)
    torch.manual_seed(0)
    ref = TinyBackbone()
    Curriculum(tiny_stages(data), seed=3, progress=False).fit(ref)

    # reads: each stage's 8 probe images, then 8 per step; fail in stage 1, step 6 (the
    # step-4 checkpoint is written in step 5, once the loss of its weights passed)
    data.fail_after, data.calls = (8 + 6 * 8) + (8 + 5 * 8) + 3, 0
    torch.manual_seed(0)
    cur = Curriculum(tiny_stages(data), tmp_path, seed=3, checkpoint_every=2, log_every=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        cur.fit(TinyBackbone())
    assert load_checkpoint(tmp_path / "stage01-simclr" / "last.pt")["step"] == 4
    data.fail_after, data.calls = None, 0
    torch.manual_seed(1)  # another start: the finished stage's weights are loaded
    resumed = TinyBackbone()
    cur = Curriculum(tiny_stages(data), tmp_path, seed=3, log_every=1)  # logging changes nothing
    results = list(cur.iter_stages(resumed))
    assert results[0].skipped and (results[1].skipped, results[1].resumed_from) == (False, 4)
    assert [row["step"] for row in results[1].metrics] == list(range(1, 7))
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in resumed.state_dict().items())


def test_changed_stage_is_a_clear_error_and_never_starts_over(tmp_path: Path) -> None:
    data = NoiseImages(16)
    stages = [Stage(TinyRotation(), data, steps=2, batch_size=8, image_size=32)]
    Curriculum(stages, tmp_path, progress=False).fit(TinyBackbone())
    changed = [Stage(TinyRotation(), data, steps=2, batch_size=8, image_size=32, lr=0.5)]
    with pytest.raises(ValueError, match=r"lr: .* -> 0\.5"):
        Curriculum(changed, tmp_path, progress=False).fit(TinyBackbone())
    with pytest.raises(ValueError, match="data"):
        Curriculum([stages[0].replace(data=NoiseImages(20))], tmp_path).fit(TinyBackbone())
    with pytest.raises(ValueError, match="seed"):
        Curriculum(stages, tmp_path, seed=1).fit(TinyBackbone())
    with pytest.raises(ValueError, match="must"):
        Curriculum(stages, tmp_path / "empty", resume="must").fit(TinyBackbone())
    res = list(
        Curriculum(changed, tmp_path, resume="never", progress=False).iter_stages(TinyBackbone())
    )
    assert not res[0].skipped


def test_grad_accumulation_matches_one_big_batch() -> None:
    data = NoiseImages(16)
    out = []
    for accum in (1, 2):
        torch.manual_seed(0)
        bb = TinyBackbone(norm=False)
        st = Stage(TinyRotation(), data, steps=3, batch_size=8, image_size=32, grad_accum=accum)
        Curriculum([st], progress=False).fit(bb)
        out.append(_state(bb))
    for k in out[0]:
        torch.testing.assert_close(out[0][k], out[1][k], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- stops
class NaNAfter(TinyRotation):
    """A method whose loss turns NaN from the ``k``-th training step on."""

    def __init__(self, k: int = 3) -> None:
        super().__init__()
        self._k, self._calls = k, 0  # private: not part of the stage's settings

    def training_step(self, batch: Any) -> Tensor:
        self._calls += 1
        loss = super().training_step(batch)
        return loss * float("nan") if self._calls > self._k else loss


class Collapsed(TinyRotation):
    """A method whose monitored embeddings are all equal (a collapse)."""

    def embedding_for_monitor(self, batch: Any) -> Tensor:
        return torch.ones(len(batch[0]), 8)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    stage = Stage(NaNAfter(3), NoiseImages(16), steps=8, batch_size=8, image_size=32, name="nan")
    cur = Curriculum([stage], tmp_path, checkpoint_every=2, progress=False)
    bb = TinyBackbone()
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3"):
        cur.fit(bb)
    folder = tmp_path / "stage00-nan"
    ckpt = load_checkpoint(folder / "last.pt")
    assert ckpt["step"] == 2 and not (folder / "final.pt").exists()
    assert all(torch.isfinite(v).all() for v in ckpt["backbone"].values() if v.is_floating_point())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stages"][0]["status"] == "failed" and "nan" in manifest["stages"][0]["error"]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_collapse_stops_the_stage() -> None:
    stage = Stage(Collapsed(), NoiseImages(16), steps=10, batch_size=8, image_size=32,
                  collapse_patience=2)  # fmt: skip
    with pytest.raises(CollapseError, match="collapsed"):
        Curriculum([stage], log_every=1, progress=False).fit(TinyBackbone())


# ----------------------------------------------------------------------------- kill -9
_KILL_SCRIPT = """
from test_curriculum import NoiseImages, TinyBackbone, engine_stages
from cxr_curriculum.curriculum import Curriculum
torch.manual_seed(0)
bb = TinyBackbone()
cur = Curriculum(engine_stages(NoiseImages(24)), sys.argv[1], seed=5, checkpoint_every=2,
                 deterministic=True, progress=False)
cur.fit(bb)
"""


def _kill_when_written(script: Path, run: Path, target: Path, delay: str, timeout: float) -> None:
    """Run ``script RUN`` in a subprocess with data loading slowed by ``delay`` seconds per
    item (same computation) and SIGKILL it once ``target`` exists (or after ``timeout``)."""
    slow = {**_env(), "CXR_TEST_DELAY": delay}
    proc = subprocess.Popen([sys.executable, str(script), str(run)], env=slow,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + timeout
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it was killed: {err[-2000:]}"


def _kill_run_mid_stage(tmp_path: Path, ckpt: Path) -> None:
    """Start the curriculum in a subprocess and SIGKILL it once stage 1 has a checkpoint."""
    script = _script(tmp_path, _KILL_SCRIPT)
    _kill_when_written(script, ckpt, ckpt / "stage01-rot24" / "last.pt", "0.01", 120)


@pytest.mark.slow
def test_kill9_mid_stage_then_resume_is_bit_identical(tmp_path: Path) -> None:
    _kill_run_mid_stage(tmp_path, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert (
        manifest["stages"][0]["status"] == "done"
        and not (tmp_path / "run" / "stage01-rot24" / "final.pt").exists()
    )

    torch.manual_seed(0)
    ref = TinyBackbone()  # an uninterrupted run
    Curriculum(engine_stages(NoiseImages(24)), seed=5, deterministic=True, progress=False).fit(ref)
    torch.manual_seed(0)
    resumed = TinyBackbone()  # the rerun in this process resumes the killed one
    cur = Curriculum(engine_stages(NoiseImages(24)), tmp_path / "run", seed=5, deterministic=True)
    (r0, r1) = list(cur.iter_stages(resumed))
    assert r0.skipped and not r1.skipped and 0 < r1.resumed_from < 12
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in resumed.state_dict().items())


# ----------------------------------------------------------------------------- DDP
_DDP_SCRIPT = """
from test_curriculum import NoiseImages, TinyBackbone, engine_stages
from cxr_curriculum.curriculum import Curriculum
import torch.distributed as dist
torch.manual_seed(int(os.environ["RANK"]))  # different starts: DDP broadcasts rank 0's
bb = TinyBackbone(norm=False)
Curriculum(engine_stages(NoiseImages(32), steps=4), seed=1, progress=False).fit(bb)
torch.save(bb.state_dict(), sys.argv[1] + os.environ["RANK"])
print("world", dist.get_world_size())
dist.barrier()  # no rank closes its gloo sockets while a peer still reads
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_two_ranks(script: Path, tmp_path: Path, timeout: float) -> list[dict[str, Tensor]]:
    """Run ``script PREFIX`` as ranks 0 and 1 of one process group; the state dicts the
    ranks saved to ``PREFIX0`` and ``PREFIX1``, once both exited cleanly in a world of 2."""
    # the environment torchrun sets (torchrun --nproc_per_node=2 works the same way)
    env = {
        **_env(),
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / "rank")],
                         env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=timeout) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-3000:] + outs[1][1][-3000:]
    assert all("world 2" in out for out, _ in outs)
    return [torch.load(tmp_path / f"rank{r}", weights_only=True) for r in range(2)]


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    torch.manual_seed(0)
    one = TinyBackbone(norm=False)
    start = _state(one)
    Curriculum(engine_stages(NoiseImages(32), steps=4), seed=1, progress=False).fit(one)
    ranks = _run_two_ranks(_script(tmp_path, "import os\n" + _DDP_SCRIPT), tmp_path, 180)
    assert any(not torch.equal(v, start[k]) for k, v in one.state_dict().items())
    for k, v in one.state_dict().items():
        torch.testing.assert_close(ranks[0][k], v, rtol=1e-4, atol=1e-6)
        assert torch.equal(ranks[0][k], ranks[1][k])  # ranks stay in sync


_DDP_STOP_SCRIPT = """
from test_curriculum import NaNAfter, NoiseImages, TinyBackbone
from cxr_curriculum.curriculum import Curriculum, NonFiniteLossError, Stage
import torch.distributed as dist
rank = os.environ["RANK"]
out = {}
for name, k, folder in (("ckpt", 3, sys.argv[1] + "-run"), ("start", 0, None)):
    torch.manual_seed(int(rank))  # different starts: DDP broadcasts rank 0's
    bb = TinyBackbone(norm=False)
    stage = Stage(NaNAfter(k), NoiseImages(16), steps=8, batch_size=8, image_size=32, name="nan")
    try:
        Curriculum([stage], folder, checkpoint_every=2, progress=False).fit(bb)
    except NonFiniteLossError as err:
        print(name, str(err))
    out.update({name + "." + key: v for key, v in bb.state_dict().items()})
torch.save(out, sys.argv[1] + rank)
print("world", dist.get_world_size())
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ddp_stop_hands_back_the_same_last_good_backbone_on_every_rank(tmp_path: Path) -> None:
    # rank 0 writes last.pt at step 2, then the loss turns NaN at step 3: every rank must
    # restore step 2 (not its own stage start); a stop before any checkpoint restores
    # rank 0's start (which DDP broadcast) on every rank
    script = _script(tmp_path, "import os\n" + _DDP_STOP_SCRIPT)
    ranks = _run_two_ranks(script, tmp_path, 180)
    ckpt = load_checkpoint(tmp_path / "rank-run" / "stage00-nan" / "last.pt")
    assert ckpt["step"] == 2
    for key, value in ranks[0].items():
        assert torch.equal(value, ranks[1][key]), key
        if key.startswith("ckpt."):
            assert torch.equal(value, ckpt["backbone"][key.removeprefix("ckpt.")]), key
    torch.manual_seed(0)
    start = TinyBackbone(norm=False).state_dict()  # rank 0's start
    for key, value in start.items():
        assert torch.equal(ranks[1]["start." + key], value), key
