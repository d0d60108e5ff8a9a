"""What a curriculum leaves on disk: the final backbone and its recipe, sha256 records,
repair of what an interrupted run left, corrupted files and full disks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from cxr_curriculum.backbones import Backbone, read_sidecar
from cxr_curriculum.curriculum import (
    ArtefactIntegrityError,
    ArtefactWriteError,
    Curriculum,
    Stage,
    data_fingerprint,
    load_checkpoint,
)
from cxr_curriculum.curriculum import outputs as outputs_module
from cxr_curriculum.curriculum.manifest import RunManifest
from test_artefacts import _flip_tensor_byte, full_disk_for, needs_dev_full, sha256_file
from test_curriculum import NoiseImages, TinyBackbone, engine_stages

pytestmark = pytest.mark.usefixtures("one_thread")


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _manifest(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / "manifest.json").read_text()))


def _resnet_stages(data: Any, steps: int = 2) -> list[Stage]:
    from cxr_curriculum.methods import Rotation, SimCLR

    return [
        Stage(Rotation(), data, steps=steps, batch_size=8, image_size=32),
        Stage(SimCLR(temperature=0.2), data, steps=steps, batch_size=8, image_size=32,
              optimizer="adamw", lr=2e-3),
    ]  # fmt: skip


class Killed(BaseException):
    """Stands for SIGKILL at one point of the run (nothing after it runs)."""


# ----------------------------------------------------------------------------- final file
def test_finished_curriculum_writes_backbone_with_its_whole_recipe(tmp_path: Path) -> None:
    data = NoiseImages(16)
    cur = Curriculum(_resnet_stages(data), tmp_path, seed=4, progress=False)
    bb = cur.fit(Backbone("resnet18", seed=0))
    assert cur.backbone_path == tmp_path / "backbone.safetensors"
    loaded = Backbone.from_file(str(cur.backbone_path))
    assert (
        _same(_state(loaded), _state(bb)) and loaded.weights_source == "file:backbone.safetensors"
    )

    info = read_sidecar(cur.backbone_path)
    recipe, manifest = info["meta"]["recipe"], _manifest(tmp_path)
    assert info["seed"] == 0 and info["initial_weights"] is None
    assert recipe["seed"] == 4 and recipe["versions"]["torch"] == torch.__version__
    assert recipe["versions"]["library"] == manifest["library"]
    assert recipe["run"] == {"device": "cpu", "amp": None, "channels_last": False,
                             "deterministic": False, "world_size": 1}  # fmt: skip
    rot, sim = recipe["stages"]
    assert (rot["name"], sim["name"]) == ("rotation", "simclr")
    assert rot["config"]["method"]["class"].endswith("Rotation")
    assert sim["config"]["method"]["temperature"] == 0.2
    assert (sim["config"]["steps"], sim["config"]["optimizer"], sim["config"]["lr"]) == (
        2, "adamw", 2e-3,
    )  # fmt: skip
    assert sim["total_steps"] == 2 and sim["data_size"] == 16
    assert sim["data_fingerprint"] == data_fingerprint(data)
    for i, stage in enumerate(recipe["stages"]):
        entry = manifest["stages"][i]
        final = tmp_path / entry["folder"] / "final.pt"
        assert stage["final_sha256"] == entry["files"]["final.pt"] == sha256_file(final)
        stage_file = tmp_path / entry["folder"] / "backbone.safetensors"
        assert entry["files"]["backbone.safetensors"] == sha256_file(stage_file)
        assert len(read_sidecar(stage_file)["meta"]["recipe"]["stages"]) == i + 1
    assert manifest["backbone"]["sha256"] == sha256_file(cur.backbone_path)

    rerun = Curriculum(_resnet_stages(data), tmp_path, seed=4)  # skips, keeps the file
    rerun.fit(Backbone("resnet18"))
    assert _manifest(tmp_path)["backbone"] == manifest["backbone"]


# ----------------------------------------------------------------------------- repair
def test_kill_after_final_pt_is_repaired_by_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stages = _resnet_stages(NoiseImages(16), steps=4)[:1]

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as patch:  # dies after final.pt, before the backbone files
        patch.setattr(outputs_module, "ensure_backbone_file", killed)
        with pytest.raises(Killed):
            Curriculum(stages, tmp_path, checkpoint_every=2).fit(Backbone("resnet18", seed=0))
    folder = tmp_path / "stage00-rotation"
    assert (folder / "final.pt").is_file() and (folder / "last.pt").is_file()
    assert not (folder / "backbone.safetensors").exists()
    assert _manifest(tmp_path)["stages"][0]["status"] == "running"

    bb = Backbone("resnet18", seed=1)
    (result,) = list(Curriculum(stages, tmp_path).iter_stages(bb))
    final = load_checkpoint(folder / "final.pt")["backbone"]
    assert result.skipped and _same(_state(bb), final)
    entry = _manifest(tmp_path)["stages"][0]
    assert entry["status"] == "done" and not (folder / "last.pt").exists()
    assert "last.pt" not in entry["files"]
    for file in (folder / "backbone.safetensors", tmp_path / "backbone.safetensors"):
        assert _same(_state(Backbone.from_file(file)), final)


def test_cut_short_backbone_file_is_refused_then_rebuilt(tmp_path: Path) -> None:
    stages = _resnet_stages(NoiseImages(16))[:1]
    Curriculum(stages, tmp_path).fit(Backbone("resnet18", seed=0))
    file = tmp_path / "stage00-rotation" / "backbone.safetensors"
    good = _state(Backbone.from_file(file))
    file.write_bytes(file.read_bytes()[:-1000])
    with pytest.raises(ArtefactIntegrityError, match=rf"{file} has sha256"):
        Backbone.from_file(file)
    (result,) = list(Curriculum(stages, tmp_path).iter_stages(Backbone("resnet18")))
    assert result.skipped and _same(_state(Backbone.from_file(file)), good)


# ----------------------------------------------------------------------------- integrity
def test_flipped_byte_in_final_or_last_checkpoint_is_an_error(tmp_path: Path) -> None:
    data = NoiseImages(24)
    ref = TinyBackbone()
    start = _state(ref)
    Curriculum(engine_stages(data, steps=4), tmp_path / "a", seed=5).fit(ref)
    final = tmp_path / "a" / "stage00-rot" / "final.pt"
    _flip_tensor_byte(final, load_checkpoint(final)["backbone"]["body.0.weight"])
    again = TinyBackbone()
    with pytest.raises(ArtefactIntegrityError, match=rf"{final} has sha256 .*manifest\.json records"
                       r".*delete it and run"):  # fmt: skip
        Curriculum(engine_stages(data, steps=4), tmp_path / "a", seed=5).fit(again)
    final.unlink()  # what the message says to do: the stage is trained again, identically
    again.load_state_dict(start)
    Curriculum(engine_stages(data, steps=4), tmp_path / "a", seed=5).fit(again)
    assert _same(_state(again), _state(ref))

    # 8 probe images and 3 steps (step 3 writes the step-2 checkpoint), then a failed read
    data.fail_after, data.calls = 8 + 3 * 8, 0
    with pytest.raises(RuntimeError, match="interrupted"):
        Curriculum(engine_stages(data, steps=4), tmp_path / "b", checkpoint_every=2).fit(
            TinyBackbone()
        )
    last = tmp_path / "b" / "stage00-rot" / "last.pt"
    assert _manifest(tmp_path / "b")["stages"][0]["files"]["last.pt"] == sha256_file(last)
    _flip_tensor_byte(last, load_checkpoint(last)["backbone"]["body.0.weight"])
    data.fail_after = None
    with pytest.raises(ArtefactIntegrityError, match=rf"{last} has sha256 .*restarts"):
        Curriculum(engine_stages(data, steps=4), tmp_path / "b").fit(TinyBackbone())


@needs_dev_full
def test_full_disk_during_a_checkpoint_keeps_the_previous_one_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = engine_stages(NoiseImages(24), steps=6)[:1]
    torch.manual_seed(0)
    ref = TinyBackbone()
    Curriculum(stage, seed=5).fit(ref)

    writes: list[int] = []
    real = RunManifest.save_partial

    def counted(self: RunManifest, index: int, path: Path, state: dict[str, Any]) -> None:
        writes.append(int(state["step"]))
        if len(writes) == 2:  # the disk is full from the second checkpoint on
            full_disk_for(monkeypatch, lambda name: name.startswith("last.pt"))
        real(self, index, path, state)

    monkeypatch.setattr(RunManifest, "save_partial", counted)
    torch.manual_seed(0)
    with pytest.raises(ArtefactWriteError) as info:
        Curriculum(stage, tmp_path, seed=5, checkpoint_every=2).fit(TinyBackbone())
    last = tmp_path / "stage00-rot" / "last.pt"
    text = str(info.value)
    assert f"checkpoint {last}: no space left on the device" in text and "needs about" in text
    assert load_checkpoint(last)["step"] == 2 and not list(tmp_path.rglob(".tmp-*"))
    assert "no space left" in _manifest(tmp_path)["stages"][0]["error"]

    monkeypatch.undo()  # space freed: the rerun resumes from step 2 and ends as ref
    torch.manual_seed(0)
    resumed = TinyBackbone()
    (result,) = list(Curriculum(stage, tmp_path, seed=5).iter_stages(resumed))
    assert result.resumed_from == 2 and _same(_state(resumed), _state(ref))


# ----------------------------------------------------------------------------- issue 18, item 4
def test_every_flipped_byte_of_final_pt_is_caught_and_the_record_is_kept(tmp_path: Path) -> None:
    # 23 of 121 single-byte flips (zip metadata: names, offsets, the central directory)
    # loaded silently, and a rerun re-recorded the changed file's sha256.
    stages = engine_stages(NoiseImages(16), steps=1)[:1]
    Curriculum(stages, tmp_path, seed=1).fit(TinyBackbone())
    final = tmp_path / "stage00-rot" / "final.pt"
    good, recorded = final.read_bytes(), _manifest(tmp_path)["stages"][0]["files"]["final.pt"]
    positions = sorted(
        set(range(0, len(good), len(good) // 100)) | set(range(len(good) - 21, len(good)))
    )
    missed = []
    for at in positions:
        blob = bytearray(good)
        blob[at] ^= 0x10
        final.write_bytes(bytes(blob))
        try:
            Curriculum(stages, tmp_path, seed=1).fit(TinyBackbone())
            missed.append(at)
        except (ArtefactIntegrityError, RuntimeError):
            pass
        assert _manifest(tmp_path)["stages"][0]["files"]["final.pt"] == recorded
    assert len(positions) >= 121 and missed == []
    final.write_bytes(good)
    Curriculum(stages, tmp_path, seed=1).fit(TinyBackbone())  # the original is accepted


def test_a_digest_is_pending_until_its_file_replaced_the_old_one(tmp_path: Path) -> None:
    stages = engine_stages(NoiseImages(16), steps=1)[:1]
    Curriculum(stages, tmp_path, seed=1).fit(TinyBackbone())
    final, manifest_file = tmp_path / "stage00-rot" / "final.pt", tmp_path / "manifest.json"
    data = _manifest(tmp_path)
    actual = data["stages"][0]["files"]["final.pt"]
    assert "pending" not in data["stages"][0]
    # a run killed after the new final.pt replaced the old one, before recording it
    data["stages"][0]["files"]["final.pt"] = "0" * 64
    data["stages"][0]["pending"] = {"final.pt": actual}
    manifest_file.write_text(json.dumps(data))
    (result,) = list(Curriculum(stages, tmp_path, seed=1).iter_stages(TinyBackbone()))
    entry = _manifest(tmp_path)["stages"][0]
    assert result.skipped and entry["files"]["final.pt"] == actual and "pending" not in entry
    # the same with the pending digest not matching either: refused, nothing re-recorded
    entry_data = _manifest(tmp_path)
    entry_data["stages"][0]["files"]["final.pt"] = "1" * 64
    entry_data["stages"][0]["pending"] = {"final.pt": "2" * 64}
    manifest_file.write_text(json.dumps(entry_data))
    with pytest.raises(ArtefactIntegrityError, match=f"records {'1' * 64}"):
        Curriculum(stages, tmp_path, seed=1).fit(TinyBackbone())
    assert _manifest(tmp_path)["stages"][0]["files"]["final.pt"] == "1" * 64
    final.unlink()  # as the message says: the stage is trained again and recorded afresh
    Curriculum(stages, tmp_path, seed=1).fit(TinyBackbone())
    assert _manifest(tmp_path)["stages"][0]["files"]["final.pt"] == sha256_file(final)


# ----------------------------------------------------------------------------- issue 18, item 6
def _weights_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".pt", ".safetensors")
    )


def test_keep_final_leaves_one_weights_file_and_reruns_skip_or_extend(tmp_path: Path) -> None:
    # Issue 18: a 30-step run left five 43 MB weight files; keep="final" leaves one.
    data = NoiseImages(16)
    stages = engine_stages(data, steps=2)
    ref = Backbone("resnet18", seed=0)
    Curriculum(stages, tmp_path / "all", seed=3).fit(ref)
    assert len(_weights_files(tmp_path / "all")) == 5
    bb = Backbone("resnet18", seed=0)
    Curriculum(stages, tmp_path / "final", seed=3, keep="final").fit(bb)
    assert _weights_files(tmp_path / "final") == ["backbone.safetensors"]
    assert _same(_state(bb), _state(ref))  # pruning does not change the weights
    manifest = _manifest(tmp_path / "final")
    assert manifest["keep"] == "final"
    for entry in manifest["stages"]:
        assert entry["status"] == "done" and entry["files"] == {}
        assert entry["pruned"] == ["final.pt", "backbone.safetensors", "backbone.json"]
    again = Backbone("resnet18", seed=1)
    results = list(Curriculum(stages, tmp_path / "final", seed=3).iter_stages(again))
    assert [r.skipped for r in results] == [True, True] and _same(_state(again), _state(ref))
    assert [len(r.metrics) for r in results] == [1, 1]  # from metrics.json
    # a third stage starts from the kept run backbone, as it would from stage 1's final.pt
    third = [*stages, stages[0].replace(name="rot-again")]
    longer = Backbone("resnet18", seed=1)
    results = list(Curriculum(third, tmp_path / "final", seed=3, keep="final").iter_stages(longer))
    assert [r.skipped for r in results] == [True, True, False]
    full = Backbone("resnet18", seed=0)
    Curriculum(third, tmp_path / "all3", seed=3).fit(full)
    assert _same(_state(longer), _state(full)) and _weights_files(tmp_path / "final") == [
        "backbone.safetensors"
    ]


def test_keep_backbones_drops_final_pt_only(tmp_path: Path) -> None:
    stages = engine_stages(NoiseImages(16), steps=1)
    Curriculum(stages, tmp_path, seed=3, keep="backbones").fit(Backbone("resnet18", seed=0))
    assert _weights_files(tmp_path) == [
        "backbone.safetensors",
        "stage00-rot/backbone.safetensors",
        "stage01-rot24/backbone.safetensors",
    ]
    with pytest.raises(ValueError, match=r"keep must be one of \('all', 'backbones', 'final'\)"):
        Curriculum(stages, tmp_path, keep="none")  # type: ignore[arg-type]
    tiny = TinyBackbone()  # no save(): its final.pt is the only copy of its weights, kept
    Curriculum(stages, tmp_path / "tiny", seed=3, keep="final").fit(tiny)
    assert _weights_files(tmp_path / "tiny") == ["stage00-rot/final.pt", "stage01-rot24/final.pt"]
    for name in ("backbone.safetensors", "stage01-rot24/backbone.safetensors"):
        (tmp_path / name).unlink()  # every copy of the last stage's weights
    with pytest.raises(ValueError, match=r"stage 1 \(rot24\) .* no file holds its weights"):
        Curriculum(stages, tmp_path, seed=3, keep="final").fit(Backbone("resnet18"))


@pytest.mark.parametrize("deleted", [False, True])
def test_kill_during_pruning_never_makes_a_finished_stage_train_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deleted: bool
) -> None:
    stages = engine_stages(NoiseImages(16), steps=1)
    folder = tmp_path / "stage00-rot"
    unlink = Path.unlink

    def killed_at_final(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name == "final.pt":
            if deleted:
                unlink(self, *args, **kwargs)
            raise Killed
        unlink(self, *args, **kwargs)

    with monkeypatch.context() as patch:  # dies just before or just after deleting final.pt
        patch.setattr(Path, "unlink", killed_at_final)
        with pytest.raises(Killed):
            Curriculum(stages, tmp_path, seed=3, keep="backbones").fit(Backbone("resnet18", seed=0))
    assert (folder / "final.pt").exists() is not deleted
    entry = _manifest(tmp_path)["stages"][0]
    assert entry["status"] == "done" and entry["pruned"] == ["final.pt"]  # recorded first
    bb = Backbone("resnet18", seed=5)
    results = list(Curriculum(stages, tmp_path, seed=3, keep="backbones").iter_stages(bb))
    assert [r.skipped for r in results] == [True, False]  # stage 0 is not trained again
    assert _weights_files(tmp_path) == [
        "backbone.safetensors",
        "stage00-rot/backbone.safetensors",
        "stage01-rot24/backbone.safetensors",
    ]
    entry = _manifest(tmp_path)["stages"][0]
    assert entry["pruned"] == ["final.pt"] and "final.pt" not in entry["files"]
    ref = Backbone("resnet18", seed=0)
    Curriculum(stages, tmp_path / "ref", seed=3).fit(ref)
    assert _same(_state(bb), _state(ref))


def test_swapped_stage_backbone_file_is_rebuilt_from_final_pt_before_pruning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stages = engine_stages(NoiseImages(16), steps=1)
    Curriculum(stages, tmp_path / "a", seed=3).fit(Backbone("resnet18", seed=0))
    Curriculum(stages, tmp_path / "b", seed=3).fit(Backbone("resnet18", seed=1))
    folder = tmp_path / "a" / "stage00-rot"
    recorded = _manifest(tmp_path / "a")["stages"][0]["files"]["backbone.safetensors"]
    final = load_checkpoint(folder / "final.pt")["backbone"]
    for name in ("backbone.safetensors", "backbone.json"):  # another run's matching pair
        (folder / name).write_bytes((tmp_path / "b" / "stage00-rot" / name).read_bytes())
    Curriculum(stages, tmp_path / "a", seed=3, keep="backbones").fit(Backbone("resnet18", seed=0))
    assert "changed or out of date; writing it again" in caplog.text
    assert not (folder / "final.pt").exists()  # pruned: the backbone file is the only copy
    assert _same(_state(Backbone.from_file(folder / "backbone.safetensors")), final)
    entry = _manifest(tmp_path / "a")["stages"][0]
    rebuilt = sha256_file(folder / "backbone.safetensors")
    assert entry["files"]["backbone.safetensors"] == rebuilt != recorded  # with a warning


@pytest.mark.parametrize(
    ("keep", "swapped"), [("backbones", "stage01-rot24"), ("final", ".")]
)  # fmt: skip
def test_pruned_stage_refuses_a_backbone_file_the_manifest_does_not_record(
    tmp_path: Path, keep: str, swapped: str
) -> None:
    stages = engine_stages(NoiseImages(16), steps=1)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    Curriculum(stages, run_a, seed=3, keep=keep).fit(Backbone("resnet18", seed=0))  # type: ignore[arg-type]
    Curriculum(stages, run_b, seed=3, keep=keep).fit(Backbone("resnet18", seed=1))  # type: ignore[arg-type]
    good = _state(Backbone.from_file(run_a / "backbone.safetensors"))
    record = _manifest(run_a)["backbone"]
    file = run_a / swapped / "backbone.safetensors"
    for name in ("backbone.safetensors", "backbone.json"):  # another run's matching pair
        (file.parent / name).write_bytes((run_b / swapped / name).read_bytes())
    Backbone.from_file(file)  # it matches its own sidecar
    message = rf"{file} has sha256 .* but {run_a / 'manifest.json'} records"
    with pytest.raises(ArtefactIntegrityError, match=message):
        Curriculum(stages, run_a, seed=3, keep=keep).fit(Backbone("resnet18", seed=7))  # type: ignore[arg-type]
    assert _manifest(run_a)["backbone"] == record  # the record is kept
    if swapped != ".":
        assert _same(_state(Backbone.from_file(run_a / "backbone.safetensors")), good)
