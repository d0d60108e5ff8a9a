"""What a curriculum leaves for reuse: backbone files per stage and for the whole run.

With a ``checkpoint_dir`` and a :class:`~cxr_curriculum.Backbone` (anything with
``save``), every finished stage writes ``stageNN-<name>/backbone.safetensors`` (+ its
JSON sidecar), and the run writes ``checkpoint_dir/backbone.safetensors`` (+
``backbone.json``) after its last stage. Each sidecar holds the recipe that made the
weights (:meth:`RunManifest.recipe`). A rerun verifies these files against their
sidecars and rebuilds any that are missing, cut short or changed, from the stage's
verified ``final.pt``; it also finishes a stage whose run was killed after ``final.pt``
was written but before the stage was marked done.

**Footprint** (``Curriculum(..., keep=...)``): every weights file of a ResNet-18 is about
43 MB, and ``keep="all"`` leaves two per stage plus the run's. ``keep="backbones"``
deletes a stage's ``final.pt`` once the stage is done and its backbone file is written
(the same weights, verified by its sidecar); ``keep="final"`` also deletes the stages'
backbone files once the run's ``backbone.safetensors`` is written, so a finished run
keeps one weights file. The manifest records what was removed (``pruned``), so a rerun
skips those stages, loading their weights from whatever file still holds them and
matches the manifest's record (:func:`load_pruned_stage`), instead of training them again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from torch import nn

from cxr_curriculum._artefacts import ArtefactIntegrityError, content_sha256, sha256_file
from cxr_curriculum.backbones import load_checkpoint as load_weights
from cxr_curriculum.backbones import read_sidecar, verify_backbone_file
from cxr_curriculum.curriculum.manifest import RunManifest

__all__ = [
    "BACKBONE_FILE",
    "KEEP",
    "Keep",
    "can_save",
    "ensure_backbone_file",
    "load_pruned_stage",
    "prune_run",
    "prune_stage",
    "save_finished_stage",
    "settle_finished_stage",
    "write_run_backbone",
]

#: What a curriculum keeps on disk once stages (and the run) are done.
Keep = Literal["all", "backbones", "final"]
KEEP: tuple[str, ...] = ("all", "backbones", "final")

logger = logging.getLogger("cxr_curriculum.curriculum")

#: Name of the backbone file in a stage folder and in the checkpoint folder.
BACKBONE_FILE = "backbone.safetensors"


def can_save(backbone: nn.Module) -> bool:
    """Whether ``backbone`` writes backbone files (a ``cxr_curriculum.Backbone`` does)."""
    return callable(getattr(backbone, "save", None))


def _valid(path: Path, backbone: nn.Module | None = None) -> dict[str, Any] | None:
    """The sidecar of a complete backbone file (holding ``backbone``'s weights), else None."""
    try:
        info = verify_backbone_file(path)
    except (FileNotFoundError, ArtefactIntegrityError, ValueError):
        return None
    if backbone is not None:
        state = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
        if info.get("tensors_sha256") != content_sha256(state):
            return None
    return info


def ensure_backbone_file(
    backbone: nn.Module, path: Path, *, check_weights: bool = False, **meta: Any
) -> dict[str, str]:
    """Write ``backbone`` to ``path`` unless a complete file is already there.

    Args:
        backbone: a module with ``save(path, **meta)`` (a ``Backbone``).
        path: the ``.safetensors`` file; its sidecar is ``path.with_suffix(".json")``.
        check_weights: also rewrite a complete file that holds other weights.
        **meta: provenance for the sidecar (the recipe).

    Returns:
        ``{"backbone.safetensors": sha256, "backbone.json": sha256}`` of the files on disk.
    """
    info = _valid(path, backbone if check_weights else None)
    if info is None:
        if path.exists():
            logger.warning("%s is incomplete, changed or out of date; writing it again", path)
        backbone.save(path, **meta)  # type: ignore[operator]
        info = verify_backbone_file(path)
    sidecar = path.with_suffix(".json")
    return {path.name: str(info["sha256"]), sidecar.name: sha256_file(sidecar)}


def save_finished_stage(
    manifest: RunManifest,
    index: int,
    folder: Path,
    backbone: nn.Module,
    state: dict[str, Any],
    run_info: dict[str, Any],
) -> None:
    """Write a stage's ``final.pt``, then its backbone files, then mark it done.

    Args:
        manifest: the run's manifest.
        index: the stage.
        folder: the stage's folder.
        backbone: the backbone after the stage.
        state: ``{"total_steps", "metrics"}`` of the stage; the weights are added.
        run_info: device and precision settings, for the recipe.
    """
    weights = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    final = manifest.save_final(index, folder / "final.pt", {**state, "backbone": weights})
    manifest.record(index, **{"final.pt": final})
    files = {}
    if can_save(backbone):
        files = ensure_backbone_file(
            backbone, folder / BACKBONE_FILE, check_weights=True,
            curriculum_stage=manifest.data["stages"][index]["name"],
            recipe=manifest.recipe(index, run_info),
        )  # fmt: skip
    manifest.finish(index, int(state["total_steps"]), **files)


def settle_finished_stage(
    manifest: RunManifest,
    index: int,
    folder: Path,
    state: dict[str, Any],
    backbone: nn.Module,
    run_info: dict[str, Any],
) -> None:
    """Make a stage whose verified ``final.pt`` exists complete on disk and in the manifest.

    Rebuilds missing or damaged backbone files, and ones holding other weights, from the
    final weights (already loaded into ``backbone``), records every file's sha256, marks
    the stage done and removes its ``last.pt``: what a run killed between writing
    ``final.pt`` and finishing left undone.
    """
    entry = manifest.data["stages"][index]
    files = {"final.pt": sha256_file(folder / "final.pt")}
    if can_save(backbone):
        recipe = manifest.recipe(index, run_info)
        path = folder / BACKBONE_FILE
        files.update(
            ensure_backbone_file(
                backbone, path, check_weights=True, curriculum_stage=entry["name"], recipe=recipe
            )
        )
    recorded = entry.get("files", {})
    unfinished = entry.get("status") != "done" or (folder / "last.pt").exists()
    if unfinished or any(recorded.get(k) != v for k, v in files.items()):
        if unfinished:
            name = entry["name"]
            logger.warning("stage %d (%s): finishing what an interrupted run left", index, name)
        manifest.finish(index, int(state["total_steps"]), **files)


def write_run_backbone(
    manifest: RunManifest, backbone: nn.Module, path: Path, run_info: dict[str, Any]
) -> None:
    """Write (or keep, if complete and current) the run's backbone file; record its sha256.

    Args:
        manifest: the run's manifest (its ``backbone`` entry is updated).
        backbone: the backbone after the last stage.
        path: ``checkpoint_dir/backbone.safetensors``.
        run_info: device and precision settings, for the recipe.
    """
    if not can_save(backbone):
        logger.info("%s not written: %s has no save()", path, type(backbone).__name__)
        return
    recipe = manifest.recipe(len(manifest.data["stages"]) - 1, run_info)
    files = ensure_backbone_file(
        backbone, path, check_weights=True, produced_by="cxr_curriculum.Curriculum", recipe=recipe
    )
    record = {
        "file": path.name,
        "sha256": files[path.name],
        "sidecar_sha256": files[path.with_suffix(".json").name],
    }
    if manifest.data.get("backbone") != record:
        manifest.data["backbone"] = record
        manifest.write()


def prune_stage(manifest: RunManifest, index: int, folder: Path, keep: str) -> None:
    """Delete a finished stage's ``final.pt`` when ``keep`` asks and its backbone file holds
    the same weights (verified); record it in the manifest's ``pruned`` list."""
    final = folder / "final.pt"
    if keep == "all" or not final.exists():
        return
    try:
        verify_backbone_file(folder / BACKBONE_FILE)
    except (FileNotFoundError, ArtefactIntegrityError, ValueError):
        logger.info("%s kept: the stage has no backbone file holding its weights", final)
        return
    manifest.prune(index, final)


def prune_run(manifest: RunManifest, folders: list[Path], run_file: Path, keep: str) -> None:
    """With ``keep="final"``, delete the stages' backbone files once ``run_file`` is written."""
    if keep != "final" or not run_file.is_file():
        return
    for index, folder in enumerate(folders):
        for name in (BACKBONE_FILE, Path(BACKBONE_FILE).with_suffix(".json").name):
            if (folder / name).exists():
                manifest.prune(index, folder / name)


def load_pruned_stage(
    manifest: RunManifest, index: int, folder: Path, run_file: Path, backbone: nn.Module
) -> bool:
    """Load a pruned stage's weights into ``backbone`` from a file that still holds them.

    Looks at the stage's ``backbone.safetensors``, then at the run's, if its recipe ends
    with this stage (same settings hash). Both are verified against their sidecars and
    against the sha256 the manifest records for them.

    Returns:
        ``True`` if the weights were loaded; ``False`` if no file holds them any more
        (fine when a later stage is done too: its weights replace them).

    Raises:
        ArtefactIntegrityError: the file is damaged, or it is not the file the manifest
            records (e.g. another run's file with its sidecar).
    """
    entry = manifest.data["stages"][index]
    stage_file = folder / BACKBONE_FILE
    candidates = []
    if stage_file.exists():
        candidates.append((stage_file, entry.get("files", {}).get(BACKBONE_FILE)))
    if run_file.exists():
        try:
            last = read_sidecar(run_file)["meta"]["recipe"]["stages"][-1]
        except (KeyError, IndexError, TypeError, ValueError, FileNotFoundError):
            last = {}
        if last.get("index") == index and last.get("config_hash") == entry["config_hash"]:
            run_record = manifest.data.get("backbone") or {}
            recorded = run_record.get("sha256") if run_record.get("file") == run_file.name else None
            candidates.append((run_file, recorded))
    for path, recorded in candidates:
        info = verify_backbone_file(path)  # ArtefactIntegrityError names a damaged file
        if recorded is not None and info["sha256"] != recorded:
            raise ArtefactIntegrityError(
                f"{path} has sha256 {info['sha256']}, but {manifest.root / 'manifest.json'} "
                f"records {recorded}: the file was replaced or changed after the run wrote it "
                "(the record is kept); put the run's own file back, or rerun with "
                "resume='never' or another checkpoint_dir"
            )
        backbone.load_state_dict(load_weights(path))
        return True
    return False
