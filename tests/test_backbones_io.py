"""Backbone files: paths as str or path-like, provenance, seeds, integrity on load."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from pathlib import Path
from typing import Any

import pytest
import torch

from cxr_curriculum import _artefacts
from cxr_curriculum.backbones import (
    ArtefactIntegrityError,
    ArtefactWriteError,
    Backbone,
    read_sidecar,
    verify_backbone_file,
)
from test_artefacts import full_disk_for, needs_dev_full

pytestmark = pytest.mark.usefixtures("one_thread")


class FsPath:
    """A minimal ``os.PathLike`` that is neither ``str`` nor ``pathlib.Path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return str(self.path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Backbone, Path]:
    folder = tmp_path_factory.mktemp("bb")
    bb = Backbone("resnet18", seed=0).eval()
    bb.save(folder / "bb.safetensors", produced_by="test")
    return bb, folder / "bb.safetensors"


@pytest.mark.parametrize("kind", [str, Path, FsPath])
def test_every_path_function_takes_str_and_pathlike(
    saved: tuple[Backbone, Path], kind: Any, tmp_path: Path
) -> None:
    bb, file = saved
    assert read_sidecar(kind(file))["meta"] == {"produced_by": "test"}
    assert verify_backbone_file(kind(file))["name"] == "resnet18"
    assert Backbone.from_file(kind(file)).name == "resnet18"
    assert Backbone("resnet18", weights=kind(file)).weights_source == "file:bb.safetensors"
    written = bb.save(kind(tmp_path / "again.safetensors"))  # the weights file's path
    assert written == tmp_path / "again.safetensors" and (tmp_path / "again.json").is_file()


def _public_modules() -> list[str]:
    """The package-level API of backbones and curriculum, and every module of the data,
    study, segmentation, attention and evaluation packages (their ``__all__`` names are
    public, including helpers such as ``data.shards.read_index``)."""
    names = ["cxr_curriculum.backbones", "cxr_curriculum.curriculum"]
    for pkg in ("data", "study", "segmentation", "attention", "evaluation"):
        package = importlib.import_module(f"cxr_curriculum.{pkg}")
        names.append(package.__name__)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    return names


def test_public_signatures_with_paths_accept_pathlike() -> None:
    # Every public function or method annotated with a path type must allow os.PathLike
    # (and so str through the same union). Results that the library builds and users
    # only read (StageResult.checkpoint) are not inputs.
    offenders = []
    scanned = 0
    for name in _public_modules():
        module = importlib.import_module(name)
        for public in sorted(set(getattr(module, "__all__", ())) - {"StageResult"}):
            obj = getattr(module, public)
            members = [obj] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                members = [
                    getattr(obj, m)
                    for m in vars(obj)
                    if (not m.startswith("_") or m == "__init__")
                    and inspect.isroutine(getattr(obj, m))
                ]
            for fn in members:
                try:
                    params = inspect.signature(fn).parameters.values()
                except (TypeError, ValueError):
                    continue
                for p in params:
                    ann = str(p.annotation)
                    scanned += "Path" in ann
                    if "Path" in ann and "PathLike" not in ann and "Callable" not in ann:
                        offenders.append(f"{name}.{public}.{fn.__name__}({p.name}: {ann})")
    assert not offenders, offenders
    assert scanned > 50  # the scan reached the path-taking API (not an empty walk)


def test_data_and_study_path_helpers_take_str(tmp_path: Path) -> None:
    from cxr_curriculum.data import ImageFiles, bundled_sample_root, scan_files
    from cxr_curriculum.data.shards import exclusive_lock, read_index, write_index

    files = sorted(str(f) for f in (bundled_sample_root() / "test").rglob("*.jpeg"))[:2]
    assert scan_files(files) == []
    assert len(ImageFiles(files)) == 2
    index = str(tmp_path / "index.json")
    write_index({"a": 1}, index)
    assert read_index(index) == {"a": 1}
    with exclusive_lock(str(tmp_path / "lock")):
        pass


def test_from_file_and_weights_path_record_the_same_source(saved: tuple[Backbone, Path]) -> None:
    _, file = saved
    assert Backbone.from_file(file).weights_source == "file:bb.safetensors"
    assert Backbone("resnet18", weights=file).weights_source == "file:bb.safetensors"


def test_seeded_backbones_do_not_depend_on_the_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = Backbone("resnet18", seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # nothing drawn from the global RNG
    torch.manual_seed(999)
    b = Backbone("resnet18", seed=7)
    c = Backbone("resnet18", seed=8)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    t1, t2 = Backbone("timm:resnet10t", seed=1), Backbone("timm:resnet10t", seed=1)
    assert all(torch.equal(v, t2.state_dict()[k]) for k, v in t1.state_dict().items())
    with pytest.raises(ValueError, match="seed"):
        Backbone("resnet18", seed=-1)


def test_sidecar_records_seed_and_sha256(saved: tuple[Backbone, Path]) -> None:
    _, file = saved
    info = read_sidecar(file)
    assert info["seed"] == 0 and info["sha256"] == _artefacts.sha256_file(file)
    assert len(info["tensors_sha256"]) == 64


def _flip_last_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0x01  # the last byte of a safetensors file is tensor data
    path.write_bytes(bytes(blob))


def test_a_flipped_byte_is_caught_with_or_without_the_sidecar(
    saved: tuple[Backbone, Path], tmp_path: Path
) -> None:
    bb, _ = saved
    file = tmp_path / "w.safetensors"
    bb.save(file)
    sidecar = tmp_path / "w.json"
    _flip_last_byte(file)
    for load in (Backbone.from_file, lambda p: Backbone("resnet18", weights=p)):
        with pytest.raises(ArtefactIntegrityError, match=rf"{file}.*w\.json records.*save"):
            load(file)
    with pytest.raises(ArtefactIntegrityError):
        verify_backbone_file(file)
    sidecar.unlink()  # a lone file: the tensors' digest in its header still catches it
    with pytest.raises(ArtefactIntegrityError, match=r"w\.safetensors is corrupted"):
        Backbone.from_file(file)


def test_a_cut_short_file_is_an_error_naming_it(
    saved: tuple[Backbone, Path], tmp_path: Path
) -> None:
    bb, _ = saved
    file = tmp_path / "cut.safetensors"
    bb.save(file)
    sidecar = tmp_path / "cut.json"
    file.write_bytes(file.read_bytes()[: os.path.getsize(file) // 2])
    with pytest.raises(ArtefactIntegrityError, match=r"cut\.safetensors has sha256"):
        Backbone.from_file(file)
    sidecar.unlink()
    with pytest.raises(ValueError, match=r"could not read the safetensors file .*cut\.safetensors"):
        Backbone.from_file(file)


@needs_dev_full
def test_a_full_disk_while_saving_never_leaves_a_file_that_loads_wrong(
    saved: tuple[Backbone, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bb, _ = saved
    file = tmp_path / "b.safetensors"
    Backbone("resnet18", seed=1).save(file)
    with monkeypatch.context() as patch:
        full_disk_for(patch, lambda name: name.startswith("b.safetensors"))
        with pytest.raises(ArtefactWriteError, match=r"b\.safetensors: no space left"):
            bb.save(file)
    assert Backbone.from_file(file).seed is None  # the old pair, complete
    assert read_sidecar(file)["seed"] == 1
    with monkeypatch.context() as patch:
        full_disk_for(patch, lambda name: name.startswith("b.json"))
        with pytest.raises(ArtefactWriteError, match=r"b\.json: no space left"):
            bb.save(file)
    with pytest.raises(ArtefactIntegrityError, match="save the backbone again"):
        Backbone.from_file(file)  # new weights, old sidecar: refused, not loaded
    assert not list(tmp_path.glob(".tmp-*"))


# ----------------------------------------------------------------------------- issue 18, item 4
def test_a_damaged_sidecar_is_an_integrity_error_naming_it(
    saved: tuple[Backbone, Path], tmp_path: Path
) -> None:
    bb, _ = saved
    path = bb.save(tmp_path / "bb.safetensors")
    sidecar = tmp_path / "bb.json"
    text = sidecar.read_text()
    for damaged in (text[: len(text) // 2], text.replace("{", "[", 1), "\xff\xfe"):
        sidecar.write_text(damaged, encoding="latin-1")
        for load in (Backbone.from_file, read_sidecar, verify_backbone_file):
            with pytest.raises(
                ArtefactIntegrityError, match=rf"sidecar {sidecar} is not valid JSON"
            ):
                load(path)
        with pytest.raises(ArtefactIntegrityError, match=r"bb\.json is not valid JSON"):
            Backbone("resnet18", weights=path)


def test_from_file_says_what_is_wrong_with_a_file_it_cannot_read(
    saved: tuple[Backbone, Path], tmp_path: Path
) -> None:
    bb, _ = saved
    checkpoint = tmp_path / "x.pt"
    torch.save(bb.state_dict(), checkpoint)
    with pytest.raises(ValueError, match="exists but is not a backbone file") as info:
        Backbone.from_file(checkpoint)
    assert "no sidecar" in str(info.value) and "Backbone(name, weights=" in str(info.value)
    assert not isinstance(info.value, FileNotFoundError)
    assert Backbone("resnet18", weights=checkpoint).weights_source == "file:x.pt"  # as it says

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({k: v.contiguous() for k, v in bb.state_dict().items()}, str(foreign))
    with pytest.raises(ValueError, match=r"without the 'cxr_curriculum' header.*weights="):
        Backbone.from_file(foreign)
    renamed = tmp_path / "renamed.pt"  # a file of ours under another name, sidecar lost
    path = bb.save(tmp_path / "ours.safetensors")
    renamed.write_bytes(path.read_bytes())
    assert read_sidecar(renamed)["name"] == "resnet18"  # told apart by content, not name
    with pytest.raises(FileNotFoundError, match="backbone file not found"):
        Backbone.from_file(tmp_path / "missing.safetensors")


def test_a_wrong_format_in_the_header_of_a_lone_file_names_the_header(tmp_path: Path) -> None:
    import json

    from safetensors.torch import save_file

    lone = tmp_path / "lone.safetensors"
    header = {"cxr_curriculum": json.dumps({"format": "other/9"})}
    save_file({"x": torch.zeros(2)}, str(lone), metadata={"format": "pt", **header})
    with pytest.raises(ValueError, match="format 'other/9' is not") as info:
        read_sidecar(lone)
    assert str(info.value).startswith(f"the 'cxr_curriculum' header of {lone}: ")
    assert "lone.json" not in str(info.value)  # there is no sidecar to look at


@pytest.mark.parametrize("name", ["model.weights", "model.pt", "model"])
def test_what_save_writes_under_any_name_loads_back(
    saved: tuple[Backbone, Path], tmp_path: Path, name: str
) -> None:
    bb, _ = saved
    path = bb.save(tmp_path / name)
    for loaded in (Backbone.from_file(path), Backbone("resnet18", weights=path)):
        state = loaded.state_dict()
        assert all(torch.equal(v, state[k]) for k, v in bb.state_dict().items())
