"""What must hold on a GPU: ViTs under bf16 autocast, a ViT curriculum with on-device
augmentation, lung attention and the lung segmenter on CUDA agreeing with the CPU.

Every test name contains ``cuda``: the GPU suite (``benchmarks/gpu/gpu_suite.py``) runs
``pytest -k cuda``. Without a GPU the tests skip; ``CXR_CUDA_TESTS_ON_CPU=1`` runs them on
the CPU instead (the suite's ``--smoke --device cpu`` check), which tests their logic, not
CUDA.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _attention import covid_films
from cxr_curriculum import Backbone, Curriculum, LungAttentionScorer, Stage

TINY = "timm:vit_tiny_patch16_224"


@pytest.fixture(scope="module")
def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("CXR_CUDA_TESTS_ON_CPU") == "1":
        return torch.device("cpu")
    pytest.skip("needs a CUDA device (CXR_CUDA_TESTS_ON_CPU=1 runs these on the CPU)")


def _xrays(root: Path, n: int, size: int) -> torch.Tensor:
    return covid_films(root, n, size)[0].clamp(0, 1)


def test_cuda_vit_bf16_autocast_matches_fp32(device: torch.device) -> None:
    torch.manual_seed(0)
    bb = Backbone("timm:vit_small_patch16_224").to(device).eval()
    x = torch.rand(4, 1, 224, 224, device=device)
    with torch.no_grad():
        full = bb(x)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            half = bb(x)
    assert half.device.type == device.type
    cos = F.cosine_similarity(full, half.float(), dim=1)
    assert bool((cos > 0.99).all()), cos


def test_cuda_vit_curriculum_with_amp_and_batched_augmentation(
    device: torch.device, tmp_path: Path
) -> None:
    from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
    from cxr_curriculum.methods import DINO, MAE, Rotation

    data = KermanyPneumonia(bundled_sample_root(), split="train")
    kw = {"steps": 2, "batch_size": 8, "image_size": 64, "batched_augmentation": True}
    stages = [
        Stage(Rotation(), data, **kw),
        Stage(MAE(decoder_dim=64, decoder_depth=1, decoder_heads=4), data, **kw),
        Stage(DINO(output_dim=256, hidden_dim=64, bottleneck_dim=32, n_local_crops=2), data, **kw),
    ]
    torch.manual_seed(0)
    bb = Backbone(TINY)
    cur = Curriculum(stages, tmp_path, device=device, amp="bf16", progress=False, log_every=1)
    results = list(cur.iter_stages(bb))
    assert all(r.final_loss is not None and r.final_loss == r.final_loss for r in results)
    assert next(bb.parameters()).device.type == device.type
    loaded = Backbone.from_file(tmp_path / "backbone.safetensors")
    assert loaded.name == TINY


@pytest.mark.realdata
def test_cuda_vit_attention_maps_match_the_cpu(device: torch.device, data_root: Path) -> None:
    images = _xrays(data_root, 4, 128)
    torch.manual_seed(0)
    bb = Backbone(TINY)
    model = nn.Sequential(bb, nn.Linear(bb.num_features, 2)).eval()
    masks = torch.zeros(4, 128, 128, dtype=torch.bool)
    masks[:, 32:96, 16:112] = True
    for method in ("gradcam", "attention_rollout", "cls_attention"):
        scorer = LungAttentionScorer(method=method, n_boot=20)
        cpu = scorer.saliency(model, images, 1)
        gpu = scorer.saliency(model.to(device), images.to(device), 1).cpu()
        model.cpu()
        corr = torch.corrcoef(torch.stack([cpu.flatten(), gpu.flatten()]))[0, 1]
        assert corr > 0.99, (method, float(corr))
        report = scorer.score(model.to(device), images.to(device), 1, masks=masks.to(device))
        model.cpu()
        assert 0.0 <= report.aggregate["energy_in_mask"].estimate <= 1.0


@pytest.mark.realdata
def test_cuda_lung_segmenter_matches_the_cpu(device: torch.device, data_root: Path) -> None:
    from cxr_curriculum import LungSegmenter

    images = _xrays(data_root, 4, 256)
    cpu = LungSegmenter().predict(images)
    gpu = LungSegmenter(device=device).predict(images.to(device))
    assert gpu.device.type == device.type
    gpu = gpu.cpu()
    iou = (cpu & gpu).sum() / (cpu | gpu).sum().clamp_min(1)
    assert iou > 0.98, float(iou)


def test_cuda_mae_and_dino_steps_under_bf16(device: torch.device) -> None:
    from cxr_curriculum.methods import DINO, MAE

    mae = MAE(decoder_dim=64, decoder_depth=1, decoder_heads=4)
    dino = DINO(output_dim=256, hidden_dim=64, bottleneck_dim=32, n_local_crops=2)
    for method in (mae, dino):
        torch.manual_seed(0)
        method.setup(Backbone(TINY).to(device))
        tf = method.make_transform(64, batched=True)
        batch = torch.stack([tf(torch.rand(1, 80, 80)) for _ in range(4)]).to(device)
        views = method.batch_transform(batch)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = method.training_step(views)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        grads = [p.grad for p in method.backbone.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
