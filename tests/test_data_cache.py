"""DecodedCache: same items, decoded once, never stale, resumable, verified, shared."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset, TensorDataset

from cxr_curriculum.data import (
    CacheIntegrityError,
    DecodedCache,
    ImageReadError,
    KermanyPneumonia,
    LabeledImage,
    MaskedImage,
    ShenzhenMontgomery,
    UnlabeledImages,
    bundled_sample_root,
    patient_split,
    preprocess,
    read_image,
    read_mask,
)
from cxr_curriculum.data.cache import CACHE_VERSION
from cxr_curriculum.data.preprocess import resize_long_side

fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)


def _folder(tmp_path: Path, n: int = 6, size: tuple[int, int] = (40, 100)) -> Path:
    """n gray PNGs, 8-bit and 16-bit alternately, with distinct content."""
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        smooth = np.cumsum(np.cumsum(rng.random(size), 0), 1)
        smooth /= smooth.max()
        if i % 2:
            Image.fromarray(np.rint(smooth * 65535).astype(np.uint16)).save(root / f"{i:02d}.png")
        else:
            Image.fromarray(np.rint(smooth * 255).astype(np.uint8)).save(root / f"{i:02d}.png")
    return root


def test_serves_the_same_items_as_the_dataset(tmp_path: Path) -> None:
    ds = KermanyPneumonia(bundled_sample_root(), "train", transform=lambda x: x.flip(-1))
    train, _ = patient_split(ds, (0.5, 0.5), seed=0)
    cached = DecodedCache(train, tmp_path / "cache", long_side=512, progress=False)
    assert len(cached) == len(train) and cached.built == len(train)
    assert cached.files == [ds.files[i] for i in train.indices]
    assert cached.labels == [ds.labels[i] for i in train.indices]
    assert cached.patient_ids == [ds.patient_ids[i] for i in train.indices]
    assert cached.classes == ds.classes
    for k in (0, len(train) - 1):
        want, got = train[k], cached[k]
        assert isinstance(got, LabeledImage) and got.label == want.label
        assert got.patient_id == want.patient_id
        # 224 px 8-bit JPEGs: smaller than long_side, stored as uint8: bit-identical.
        assert torch.equal(got.image, want.image)
    assert len(patient_split(cached, (0.5, 0.5))[0]) > 0  # splits work on the cache too
    again = DecodedCache(train, tmp_path / "cache", long_side=512)
    assert again.built == 0 and torch.equal(again[1].image, cached[1].image)


def test_resized_images_keep_their_bit_depth(tmp_path: Path) -> None:
    root = _folder(tmp_path, n=2, size=(300, 90))
    pool = UnlabeledImages(root)
    cached = DecodedCache(pool, tmp_path / "cache", long_side=64, progress=False)
    for i, step in ((0, 255.0), (1, 65535.0)):
        source = read_image(pool.files[i])[0].numpy()
        # Independent reference: Pillow's antialiased bilinear reduction of the same floats.
        ref = Image.fromarray(source, mode="F").resize((19, 64), Image.Resampling.BILINEAR)
        got = cached[i][0].numpy()
        assert got.shape == (64, 19)
        # Half a quantisation step of the source's depth (uint8 vs uint16), + Pillow's rounding.
        assert np.abs(got - np.asarray(ref)).max() <= 0.5 / step + 1e-6
        np.testing.assert_array_equal(got * step, np.rint(got * step))
        expected = np.rint(resize_long_side(source, 64) * step) / step
        np.testing.assert_allclose(got, expected, atol=1e-7)


@pytest.mark.realdata
def test_masks_are_cached_with_their_images(tmp_path: Path, data_root: Path) -> None:
    ds = ShenzhenMontgomery(data_root / "shenzhen-montgomery-tb")
    part = Subset(ds, [0, 1])
    flip = lambda im, m: (im.flip(-1), m.flip(-1))  # noqa: E731
    joint = ShenzhenMontgomery(data_root / "shenzhen-montgomery-tb", joint_transform=flip)
    cached = DecodedCache(part, tmp_path / "c", long_side=128, progress=False)
    flipped = DecodedCache(Subset(joint, [0, 1]), tmp_path / "c", long_side=128)
    assert flipped.built == 0  # same files, same settings: already cached
    for k in range(2):
        item = cached[k]
        assert isinstance(item, MaskedImage) and item.patient_id == ds.patient_ids[k]
        full = read_mask(ds.mask_files[k])[0].numpy()  # type: ignore[index]
        assert item.mask.shape == item.image.shape and max(item.mask.shape) == 128
        np.testing.assert_array_equal(item.mask[0].numpy(), resize_long_side(full, 128, mask=True))
        assert set(np.unique(item.mask.numpy())) <= {0, 1}
        assert torch.equal(flipped[k].mask, item.mask.flip(-1))  # joint_transform still runs


@pytest.mark.realdata
def test_dicom_films_through_the_cache(tmp_path: Path, data_root: Path) -> None:
    pool = UnlabeledImages(data_root / "dicom-cxr")
    names = [p.name for p in pool.files]
    small = Subset(pool, [names.index("CR-MONO1-10-chest"), names.index("00000001_000.dcm")])
    cached = DecodedCache(small, tmp_path / "c", long_side=256, progress=False)
    for k, step in ((0, 65535.0), (1, 255.0)):  # 10-bit ACR-NEMA -> uint16; 8-bit NIH -> uint8
        source = read_image(cached.files[k])[0].numpy()
        expected = np.rint(resize_long_side(source, 256) * step) / step
        np.testing.assert_allclose(cached[k][0].numpy(), expected, atol=1e-7)


def test_a_changed_file_or_setting_is_rebuilt(tmp_path: Path) -> None:
    root = _folder(tmp_path, n=4)
    pool = UnlabeledImages(root)
    first = DecodedCache(pool, tmp_path / "c", long_side=64, progress=False)
    assert first.built == 4
    Image.fromarray(np.full((40, 100), 7, np.uint8)).save(root / "02.png")  # new content
    st = os.stat(root / "02.png")
    os.utime(root / "02.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = DecodedCache(pool, tmp_path / "c", long_side=64)
    assert second.built == 1 and float(second[2].max()) == pytest.approx(7 / 255)
    assert torch.equal(second[0], first[0]) and not torch.equal(second[2], first[2])
    assert DecodedCache(pool, tmp_path / "c", long_side=32).built == 4
    assert DecodedCache(UnlabeledImages(root, window="minmax"), tmp_path / "c", 64).built == 4
    assert DecodedCache(pool, tmp_path / "c", long_side=64).built == 0


def test_a_bad_file_stops_the_build_and_the_rest_resumes(tmp_path: Path) -> None:
    root = _folder(tmp_path, n=5)
    (root / "03.png").write_bytes(b"")
    pool = UnlabeledImages(root)
    with pytest.raises(ImageReadError, match="empty file") as info:
        DecodedCache(pool, tmp_path / "c", long_side=64, shard_mb=1e-6, progress=False)
    assert info.value.path == root / "03.png"
    Image.fromarray(np.zeros((40, 100), np.uint8)).save(root / "03.png")
    resumed = DecodedCache(pool, tmp_path / "c", long_side=64, shard_mb=1e-6)
    assert resumed.built == 2  # 00-02 were kept; 03 and 04 are new


# 64x26 images: uint8 1664 bytes, uint16 3328 bytes; two of them pass 4000 bytes.
_TWO_PER_SHARD = 4000 / 2**20


def _killed_build(pool: UnlabeledImages, folder: Path) -> None:
    """Child process: SIGKILL itself while decoding the 4th image."""
    calls = 0
    decode = preprocess.decode_task

    def dying(task: tuple[Any, ...]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return decode(task)

    preprocess.decode_task = dying
    DecodedCache(pool, folder, long_side=64, shard_mb=_TWO_PER_SHARD, progress=False)


@fork
def test_a_killed_build_resumes(tmp_path: Path) -> None:
    pool = UnlabeledImages(_folder(tmp_path, n=6))
    folder = tmp_path / "c"
    child = multiprocessing.get_context("fork").Process(target=_killed_build, args=(pool, folder))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    index = json.loads((folder / "index.json").read_text())["payload"]
    assert len(index["entries"]) == 2 and len(index["shards"]) == 1  # images 0 and 1
    assert len(list(folder.glob(".tmp-shard-*"))) == 1  # the shard being written (image 2)
    resumed = DecodedCache(pool, folder, long_side=64, shard_mb=_TWO_PER_SHARD)
    assert resumed.built == 4
    assert not list(folder.glob(".tmp-*"))  # the unfinished shard was removed
    for i in range(6):
        step = 255.0 if i % 2 == 0 else 65535.0
        expected = np.rint(resize_long_side(read_image(pool.files[i])[0].numpy(), 64) * step)
        np.testing.assert_allclose(resumed[i][0].numpy(), expected / step, atol=1e-7)


def test_damaged_files_are_refused_with_their_name(tmp_path: Path) -> None:
    pool = UnlabeledImages(_folder(tmp_path, n=2))
    folder = tmp_path / "c"
    DecodedCache(pool, folder, long_side=64, progress=False)
    shard = next(folder.glob("shard-*.bin"))
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # one flipped byte: same size, other content
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheIntegrityError, match=f"{shard.name}.*delete the folder"):
        DecodedCache(pool, folder, long_side=64)
    DecodedCache(pool, folder, long_side=64, verify=False)  # sizes only: not detected
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(CacheIntegrityError, match=shard.name):
        DecodedCache(pool, folder, long_side=64, verify=False)  # a cut shard always is
    index = folder / "index.json"
    text = index.read_text()
    assert f'"version": {CACHE_VERSION}' in text
    index.write_text(text.replace(f'"version": {CACHE_VERSION}', f'"version": {CACHE_VERSION + 1}'))
    with pytest.raises(CacheIntegrityError, match=r"index\.json is damaged"):
        DecodedCache(pool, folder, long_side=64)


def _open_and_report(pool: UnlabeledImages, folder: Path, queue: Any, start: Any) -> None:
    start.wait()  # all processes open the cache at the same moment
    cached = DecodedCache(pool, folder, long_side=64, progress=False)
    queue.put((cached.built, [float(cached[i].sum()) for i in range(len(cached))]))


@fork
def test_processes_opening_at_once_build_once(tmp_path: Path) -> None:
    pool = UnlabeledImages(_folder(tmp_path, n=6))
    ctx = multiprocessing.get_context("fork")
    queue, start = ctx.Queue(), ctx.Barrier(3)
    args = (pool, tmp_path / "c", queue, start)
    procs = [ctx.Process(target=_open_and_report, args=args) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert sorted(r[0] for r in results) == [0, 0, 6]  # one builder, two readers
    assert results[0][1] == results[1][1] == results[2][1]
    assert len(list((tmp_path / "c").glob("shard-*.bin"))) == 1


def test_building_memory_is_flat_in_the_number_of_images(tmp_path: Path) -> None:
    root = _folder(tmp_path, n=24, size=(256, 256))  # 16-bit ones: 128 KiB each when stored
    files = sorted(root.glob("*.png"))

    def peak(n: int) -> int:
        pool = UnlabeledImages(root, exclude=files[n:])
        tracemalloc.start()
        # verify=False: the sha256 check reads shards in 1 MiB chunks, which is flat too
        # but would hide the build's own memory in small caches like these.
        DecodedCache(pool, tmp_path / f"c{n}", long_side=512, progress=False, verify=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    few, many = peak(4), peak(24)
    assert many - few < 512 * 1024, (few, many)  # 20 more images would be 1.9 MiB held


def test_workers_dataloader_and_a_curriculum_stage(tmp_path: Path) -> None:
    from cxr_curriculum import Backbone, Curriculum, Stage
    from cxr_curriculum.methods import Rotation

    ds = KermanyPneumonia(bundled_sample_root(), "test")
    cached = DecodedCache(ds, tmp_path / "c", long_side=128, num_workers=2, progress=False)
    assert cached.built == 16 and cached[0].image.shape == (1, 128, 128)
    batches = list(DataLoader(cached, batch_size=8, num_workers=1))
    assert len(batches) == 2 and batches[0][0].shape == (8, 1, 128, 128)
    stage = Stage(Rotation(), data=cached, steps=1, batch_size=4, image_size=32)
    Curriculum([stage], tmp_path / "run", seed=0, progress=False).fit(Backbone("resnet18"))


def test_bad_arguments(tmp_path: Path) -> None:
    pool = UnlabeledImages(_folder(tmp_path, n=1))
    with pytest.raises(TypeError, match=r"caches the datasets of cxr_curriculum\.data"):
        DecodedCache(TensorDataset(torch.zeros(2, 1, 8, 8)), tmp_path / "c")

    class Custom(UnlabeledImages):
        def __getitem__(self, index: int) -> Any:
            return ("custom", super().__getitem__(index))

    with pytest.raises(TypeError, match="overrides __getitem__ but not item_from"):
        DecodedCache(Custom(pool.root), tmp_path / "c")
    for kwargs in ({"long_side": 8}, {"num_workers": -1}, {"shard_mb": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            DecodedCache(pool, tmp_path / "c", **kwargs)  # type: ignore[arg-type]


@pytest.mark.realdata
@pytest.mark.slow
def test_multilabel_fields_pass_through_to_splits_and_fine_tune(
    tmp_path: Path, data_root: Path
) -> None:
    """NIH with its real multi-label rows: the cache serves what the protocols read."""
    from cxr_curriculum.backbones import Backbone
    from cxr_curriculum.data import (
        NIHChestXray14,
        harmonised_targets,
        label_fraction_subset,
        patient_split,
    )
    from cxr_curriculum.evaluation import fine_tune
    from cxr_curriculum.evaluation.fractions import targets_of, train_subset

    ds = NIHChestXray14(
        data_root / "nih-chestxray14-subset",
        csv_file=data_root / "label-tables" / "Data_Entry_2017_v2020.csv.gz",
    )
    small, _ = patient_split(ds, (0.04, 0.96), seed=0)  # about 40 real images
    # long_side=1024: NIH's 8-bit 1024 px PNGs are stored as they are, so the cache's
    # items are bit-identical to the dataset's and every protocol must agree exactly.
    cached = DecodedCache(small, tmp_path / "c", long_side=1024, progress=False)
    raw_targets = targets_of(small)
    assert raw_targets is not None and raw_targets.shape == (len(small), 14)
    assert cached.targets is not None and torch.equal(cached.targets, raw_targets)
    assert torch.equal(targets_of(cached), raw_targets)  # type: ignore[arg-type]
    assert cached.classes == ds.classes and cached.finding_map == ds.finding_map
    assert cached.labels == [ds.labels[i] for i in small.indices]
    assert cached.patient_ids == [ds.patient_ids[i] for i in small.indices]
    assert cached.files == [ds.files[i] for i in small.indices]
    assert cached.window == ds.window and cached.mask_files is None
    k = int(raw_targets.sum(dim=1).argmax())  # an item with several findings
    assert torch.equal(cached[k].label, small[k].label) and int(cached[k].label.sum()) > 1
    pooled = harmonised_targets(cached)
    assert bool(pooled.isnan().any())  # findings NIH does not label stay unknown
    torch.testing.assert_close(pooled, harmonised_targets(small), rtol=0, atol=0, equal_nan=True)
    for fraction in (0.3, 0.6):
        assert train_subset(cached, fraction).indices == train_subset(small, fraction).indices
        lf_cached = label_fraction_subset(cached, fraction, seed=1)
        assert lf_cached.indices == label_fraction_subset(small, fraction, seed=1).indices

    def run(data: Any) -> Any:
        train, test = patient_split(data, (0.6, 0.4), seed=0)
        torch.manual_seed(0)
        backbone = Backbone("resnet18", in_chans=1)
        return fine_tune(backbone, train, test, image_size=32, steps=2, batch_size=8, fraction=0.5)

    raw, got = run(small), run(cached)
    assert got.multilabel and got.scores.shape == raw.scores.shape == (len(got.labels), 14)
    assert got.n_train == raw.n_train and got.classes == raw.classes == tuple(ds.classes)
    assert torch.equal(got.labels, raw.labels)
    torch.testing.assert_close(got.scores, raw.scores)
    assert got.train_loss == raw.train_loss
