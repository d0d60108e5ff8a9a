"""SSL methods on ViT backbones: MAE checked against lightly's MAE pieces, DINO multi-crop,
and one training step of every method on a ViT-Tiny with real X-rays."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from _methods import SMALL, kermany_xrays, view_batch
from cxr_curriculum.backbones import IMAGENET_GRAY_NORM, Backbone
from cxr_curriculum.losses import MAELoss, normalize_pixels, patchify
from cxr_curriculum.methods import (
    DINO,
    MAE,
    METHODS,
    Jigsaw,
    RelativePatchLocation,
    Rotation,
    SimCLR,
    SSLMethod,
    mask_from_noise,
    random_patch_mask,
    sincos_2d,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = "timm:vit_tiny_patch16_224"
#: Sizes whose tiles / patches a patch-16 ViT takes (16 px each); the rest use 32 px.
IMAGE_SIZE = {Jigsaw: 57, RelativePatchLocation: 68}


@pytest.fixture(scope="module")
def xrays(data_root: Path) -> list[torch.Tensor]:
    """Four real Kermany X-rays (2 normal, 2 pneumonia) at 80 px."""
    return kermany_xrays(data_root, 2)


# ----------------------------------------------------------------------------- lightly parity
lightly_utils = pytest.importorskip(
    "lightly.models.utils", reason="lightly is the parity reference"
)


@pytest.mark.parametrize(("channels", "size", "patch"), [(1, 32, 8), (3, 48, 16), (1, 64, 16)])
def test_patchify_matches_lightly(channels: int, size: int, patch: int) -> None:
    images = torch.rand(2, channels, size, size)
    torch.testing.assert_close(
        patchify(images, patch), lightly_utils.patchify(images, patch), rtol=0, atol=0
    )
    with pytest.raises(ValueError, match="divide"):
        patchify(images, 5)


@pytest.mark.parametrize(("n_patches", "ratio"), [(16, 0.75), (64, 0.75), (49, 0.6), (16, 0.0)])
def test_masking_matches_lightly_random_token_mask(n_patches: int, ratio: float) -> None:
    # lightly draws one number per token (CLS at 0, never masked) from the global RNG and
    # sorts; the same numbers without the CLS column must give the same patches.
    torch.manual_seed(n_patches)
    keep_ref, masked_ref = lightly_utils.random_token_mask((4, n_patches + 1), ratio, False)
    torch.manual_seed(n_patches)
    noise = torch.rand(4, n_patches + 1)
    keep, masked = mask_from_noise(noise[:, 1:], ratio)
    assert torch.equal(keep_ref[:, 0], torch.zeros(4, dtype=torch.long))
    assert torch.equal(keep, keep_ref[:, 1:] - 1) and torch.equal(masked, masked_ref - 1)
    assert keep.shape[1] == int(n_patches * (1 - ratio))
    both = torch.sort(torch.cat([keep, masked], 1), dim=1).values
    assert torch.equal(both, torch.arange(n_patches).expand(4, -1))


def test_random_patch_mask_is_seeded_and_device_independent() -> None:
    a = random_patch_mask(3, 16, 0.75, generator=torch.Generator().manual_seed(1))
    b = random_patch_mask(3, 16, 0.75, generator=torch.Generator().manual_seed(1), device="cpu")
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)) and a[0].shape == (3, 4)
    with pytest.raises(ValueError, match="mask_ratio"):
        mask_from_noise(torch.rand(2, 4), 1.0)


def test_normalised_pixel_loss_matches_lightly() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 12, 64, generator=g), torch.rand(3, 12, 64, generator=g)
    torch.testing.assert_close(normalize_pixels(target), lightly_utils.normalize_mean_var(target))
    expected = F.mse_loss(pred, lightly_utils.normalize_mean_var(target))
    torch.testing.assert_close(MAELoss()(pred, target), expected)
    torch.testing.assert_close(MAELoss(norm_pix_loss=False)(pred, target), F.mse_loss(pred, target))


@pytest.mark.parametrize(("dim", "grid"), [(32, 4), (64, 7)])
def test_decoder_positions_match_lightly_sincos(dim: int, grid: int) -> None:
    ref = lightly_utils.get_2d_sine_cosine_positional_embedding(dim, grid, cls_token=True)
    torch.testing.assert_close(sincos_2d(dim, (grid, grid), 1), torch.from_numpy(ref).float())


def test_mae_forward_and_loss_match_lightly_mae() -> None:
    # The whole MAE step against lightly's MaskedVisionTransformerTIMM + MAEDecoderTIMM, built
    # on the same timm ViT and given the same decoder weights and the same masks.
    from lightly.models.modules import MaskedVisionTransformerTIMM
    from lightly.models.modules.masked_autoencoder_timm import MAEDecoderTIMM

    torch.manual_seed(0)
    backbone = Backbone(TINY).eval()
    mae = MAE(decoder_dim=64, decoder_depth=2, decoder_heads=4)
    mae.setup(backbone)
    mae.eval()
    images = torch.rand(3, 1, 64, 64)
    keep, masked = random_patch_mask(3, 16, 0.75, generator=torch.Generator().manual_seed(5))
    pred, target = mae.reconstruct(images, keep, masked)
    loss = mae.criterion(pred, target)

    encoder = MaskedVisionTransformerTIMM(
        vit=copy.deepcopy(backbone.body.model), weight_initialization="skip",
        pos_embed_initialization="skip",
    ).eval()  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MAEDecoderTIMM is deprecated in lightly 1.6
        decoder = MAEDecoderTIMM(
            num_patches=16, patch_size=16, in_chans=1, embed_dim=192,
            decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4,
        )  # fmt: skip
    ours = mae.decoder
    pairs = {"decoder_embed": ours.embed, "decoder_blocks": ours.blocks, "decoder_norm": ours.norm,
             "decoder_pred": ours.predict}  # fmt: skip
    for name, module in pairs.items():
        getattr(decoder, name).load_state_dict(module.state_dict())
    decoder.mask_token.data.copy_(ours.mask_token.data)
    decoder.eval()
    mean, std = IMAGENET_GRAY_NORM
    idx_keep = torch.cat([torch.zeros(3, 1, dtype=torch.long), keep + 1], dim=1)
    idx_mask = masked + 1
    with torch.no_grad():
        encoded = encoder.encode(images=(images - mean) / std, idx_keep=idx_keep)
        tokens = lightly_utils.repeat_token(decoder.mask_token, (3, 17))
        tokens = lightly_utils.set_at_index(tokens, idx_keep, decoder.embed(encoded))
        ref_pred = decoder.predict(lightly_utils.get_at_index(decoder.decode(tokens), idx_mask))
        ref_target = lightly_utils.get_at_index(lightly_utils.patchify(images, 16), idx_mask - 1)
        ref_loss = F.mse_loss(ref_pred, lightly_utils.normalize_mean_var(ref_target))
    torch.testing.assert_close(target, ref_target, rtol=0, atol=0)
    torch.testing.assert_close(pred, ref_pred, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- methods on a ViT
@pytest.mark.realdata
@pytest.mark.parametrize("cls", list(METHODS.values()), ids=lambda c: c.__name__)
def test_one_training_step_of_every_method_on_a_vit(
    cls: type[SSLMethod], xrays: list[torch.Tensor]
) -> None:
    assert set(SMALL) == set(METHODS.values())  # a new method must be tried on a ViT too
    torch.manual_seed(0)
    backbone = Backbone(TINY)
    method = cls(**SMALL[cls])
    method.setup(backbone)
    batch = view_batch(method, xrays, IMAGE_SIZE.get(cls, 32))
    before = copy.deepcopy(backbone.state_dict())
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    loss = method.training_step(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    opt.step()
    method.on_step_end(0, 10)
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert (
        "body.model.patch_embed.proj.weight" in changed
        and "body.model.blocks.11.attn.qkv.weight" in changed
    )
    emb = method.embedding_for_monitor(batch)
    assert emb.shape[0] == 4 and torch.isfinite(emb).all()


def test_vit_only_and_size_rules_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"MAE needs a ViT backbone.*CNN 'resnet18'"):
        MAE().setup(Backbone("resnet18"))
    vit = Backbone(TINY)
    for method, size, match in [
        (
            MAE(decoder_dim=32, decoder_heads=2, decoder_depth=1),
            40,
            r"MAE: image_size of 40 px on a ViT with patch size 16.*\[16, 32, 48, 64\]",
        ),
        (Jigsaw(**SMALL[Jigsaw]), 64, r"Jigsaw: tiles of 17 px.*\[57, 58, 59"),
        (RelativePatchLocation(hidden_dim=8), 64, r"patches of 15 px.*\[68, 69"),
        (SimCLR(hidden_dim=8, output_dim=8), 40, r"SimCLR: image_size of 40"),
        (Rotation(), 24, r"Rotation: image_size of 24"),
        (DINO(output_dim=8, hidden_dim=8, bottleneck_dim=8), 72, "DINO: image_size of 72"),
    ]:
        method.setup(vit)
        with pytest.raises(ValueError, match=match):
            method.make_transform(size)
    with pytest.raises(ValueError, match="mask_ratio"):
        MAE(mask_ratio=1.0)
    with pytest.raises(ValueError, match="decoder_heads"):
        MAE(decoder_dim=30, decoder_heads=4)


@pytest.mark.realdata
def test_dino_multi_crop_on_a_vit_and_on_a_cnn(xrays: list[torch.Tensor]) -> None:
    dino = DINO(output_dim=64, hidden_dim=64, bottleneck_dim=16, n_local_crops=3)
    assert dino.local_size(64) == 27  # no backbone yet: 64 * 96 / 224
    dino.setup(Backbone(TINY))
    assert dino.local_size(64) == 32 and dino.local_size(224) == 96 and dino.local_size(32) == 16
    views = view_batch(dino, xrays, 64)
    assert [tuple(v.shape) for v in views] == [(4, 1, 64, 64)] * 2 + [(4, 1, 32, 32)] * 3
    assert torch.isfinite(dino.training_step(views))
    tf = dino.make_transform(64, batched=True)  # on-device views, same sizes
    resized = default_collate([tf(img) for img in xrays])
    views = dino.batch_transform(resized, generator=torch.Generator().manual_seed(0))
    assert [v.shape[-1] for v in views] == [64, 64, 32, 32, 32]
    assert torch.isfinite(dino.training_step(views))
    dino.setup(Backbone("resnet18"))  # on a CNN the local crops keep the paper's ratio
    assert [v.shape[-1] for v in view_batch(dino, xrays, 64)] == [64, 64, 27, 27, 27]


@pytest.mark.realdata
def test_mae_learns_on_real_xrays_with_batched_augmentation(xrays: list[torch.Tensor]) -> None:
    torch.manual_seed(0)
    mae = MAE(decoder_dim=64, decoder_depth=1, decoder_heads=4)
    mae.setup(Backbone(TINY))
    tf = mae.make_transform(32, batched=True)
    resized = default_collate([tf(img) for img in xrays])
    images = mae.batch_transform(resized, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 32, 32)
    opt = torch.optim.AdamW([p for p in mae.parameters() if p.requires_grad], lr=1e-3)
    keep, masked = random_patch_mask(4, 4, 0.75, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(20):  # the same masks: reconstruction error must fall
        loss = mae.criterion(*mae.reconstruct(images, keep, masked))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
    assert torch.isfinite(mae.training_step(images))  # fresh random masks
