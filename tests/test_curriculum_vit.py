"""Curricula on one ViT: rotation -> MAE -> DINO on real X-rays, kill -9 and exact resume,
two DDP processes, and studies with ``arch = "timm:vit_..."``.

The engine tests reuse ``NoiseImages`` and the subprocess helpers of ``test_curriculum``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, Subset

from cxr_curriculum import Backbone
from cxr_curriculum.curriculum import Curriculum, Stage
from test_curriculum import NoiseImages, _kill_when_written, _run_two_ranks, _script, _state

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "timm:vit_tiny_patch16_224"


def vit_stages(data: Dataset[object], steps: int = 2, batch_size: int = 8) -> list[Stage]:
    """Rotation -> MAE -> DINO on 32 px views (a 2x2 patch grid), small heads."""
    from cxr_curriculum.methods import DINO, MAE, Rotation

    return [
        Stage(Rotation(), data, steps=steps, batch_size=batch_size, image_size=32),
        Stage(MAE(decoder_dim=32, decoder_depth=1, decoder_heads=2), data, steps=steps,
              batch_size=batch_size, image_size=32),
        Stage(DINO(output_dim=64, hidden_dim=32, bottleneck_dim=16, n_local_crops=2), data,
              steps=steps, batch_size=batch_size, image_size=32),
    ]  # fmt: skip


@pytest.mark.realdata
def test_rotation_mae_dino_on_one_vit_hands_weights_on(data_root: Path, tmp_path: Path) -> None:
    from cxr_curriculum.backbones import read_sidecar
    from cxr_curriculum.data import KermanyPneumonia

    kermany = KermanyPneumonia(data_root / "kermany-pneumonia", split="train")
    pool = Subset(kermany, list(range(0, len(kermany), len(kermany) // 16))[:16])
    torch.manual_seed(0)
    backbone = Backbone(TINY)
    states = [_state(backbone)]
    cur = Curriculum(
        vit_stages(pool, batch_size=4), checkpoint_dir=tmp_path, seed=0, progress=False
    )
    for result in cur.iter_stages(backbone):
        assert not result.skipped and result.final_loss is not None
        states.append(_state(backbone))
    for before, after in itertools.pairwise(states):  # every stage moved the ViT
        assert not torch.equal(before["body.model.blocks.0.attn.qkv.weight"],
                               after["body.model.blocks.0.attn.qkv.weight"])  # fmt: skip
    names = [p.name for p in sorted(tmp_path.glob("stage*"))]
    assert names == ["stage00-rotation", "stage01-mae", "stage02-dino"]
    # stage 1 started from stage 0's weights: its file and the handed-on state agree
    stage0 = Backbone.from_file(tmp_path / "stage00-rotation" / "backbone.safetensors")
    assert all(torch.equal(v, states[1][k]) for k, v in stage0.state_dict().items())
    final = Backbone.from_file(tmp_path / "backbone.safetensors")
    assert final.name == TINY and final.pool == "token"
    assert all(torch.equal(v, states[-1][k]) for k, v in final.state_dict().items())
    assert read_sidecar(tmp_path / "backbone.safetensors")["name"] == TINY


_KILL_SCRIPT = """
from test_curriculum import NoiseImages
from test_curriculum_vit import vit_stages
from cxr_curriculum import Backbone
from cxr_curriculum.curriculum import Curriculum
torch.manual_seed(0)
bb = Backbone("timm:vit_tiny_patch16_224")
cur = Curriculum(vit_stages(NoiseImages(24), steps=4)[:2], sys.argv[1], seed=5,
                 checkpoint_every=2, deterministic=True, progress=False)
cur.fit(bb)
"""


@pytest.mark.slow
def test_kill9_in_the_mae_stage_then_resume_is_bit_identical(tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = _script(tmp_path, _KILL_SCRIPT)
    _kill_when_written(script, run, run / "stage01-mae" / "last.pt", "0.02", 180)
    assert not (run / "stage01-mae" / "final.pt").exists()

    torch.manual_seed(0)
    ref = Backbone(TINY)  # an uninterrupted run
    Curriculum(vit_stages(NoiseImages(24), steps=4)[:2], seed=5, deterministic=True,
               progress=False).fit(ref)  # fmt: skip
    torch.manual_seed(0)
    resumed = Backbone(TINY)
    cur = Curriculum(vit_stages(NoiseImages(24), steps=4)[:2], run, seed=5, deterministic=True,
                     progress=False)  # fmt: skip
    results = list(cur.iter_stages(resumed))
    assert results[0].skipped and results[1].resumed_from == 2
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in resumed.state_dict().items())


_DDP_SCRIPT = """
import os
from test_curriculum import NoiseImages
from test_curriculum_vit import vit_stages
from cxr_curriculum import Backbone
from cxr_curriculum.curriculum import Curriculum
import torch.distributed as dist
torch.manual_seed(int(os.environ["RANK"]))  # different starts: DDP broadcasts rank 0's
bb = Backbone("timm:vit_tiny_patch16_224")
Curriculum(vit_stages(NoiseImages(32), steps=2)[:2], seed=1, progress=False).fit(bb)
torch.save(bb.state_dict(), sys.argv[1] + os.environ["RANK"])
print("world", dist.get_world_size())
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_vit_curriculum_under_two_ddp_processes(tmp_path: Path) -> None:
    ranks = _run_two_ranks(_script(tmp_path, _DDP_SCRIPT), tmp_path, 300)
    torch.manual_seed(0)
    start = Backbone(TINY).state_dict()  # rank 0's start, broadcast to rank 1
    assert any(not torch.equal(v, start[k]) for k, v in ranks[0].items())
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # ranks stay in sync


def test_study_file_accepts_a_vit_arch_and_checks_its_size(
    tmp_path: Path, sample_study_toml: Callable[..., str]
) -> None:
    from cxr_curriculum.__main__ import main
    from cxr_curriculum.config import ConfigError, load_study

    text = (
        sample_study_toml(tmp_path / "out")
        .replace("image_size = 32", f'image_size = 32\narch = "{TINY}"')
        .replace(
            'method = "simclr"',
            'method = { name = "mae", decoder_dim = 32, decoder_depth = 1, decoder_heads = 2 }',
        )
    )
    config = tmp_path / "study.toml"
    config.write_text(text)
    study = load_study(config)
    assert study.arch == TINY
    assert main(["study", str(config)]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["design"]["cells_done"] == 4
    config.write_text(text.replace("image_size = 32", "image_size = 40"))
    with pytest.raises(ConfigError, match=r"arch: a ViT with patch size 16 .*40x40"):
        load_study(config)
    config.write_text(text.replace(TINY, "timm:vit_tiny_patch16_2244"))
    with pytest.raises(ConfigError, match="arch: unknown timm model"):
        load_study(config)
