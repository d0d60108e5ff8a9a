"""The run manifest (``manifest.json``) and the checks that make resuming safe.

The manifest records the library, torch and Python versions, the seed, and for every
stage its settings (:meth:`Stage.config`), a fingerprint of its data
(:func:`~cxr_curriculum.curriculum.sampling.data_fingerprint`), a hash of both, its
status (``pending``, ``running``, ``done``, ``failed``), the steps done, the sha256
of every file it wrote (``files``) and the thresholds of its divergence rule
(``divergence``, not part of the hash). Every checkpoint carries its stage's hash too. A
rerun that changed a stage which already has progress stops with a ``ValueError``
naming the fields that differ, instead of silently mixing two different runs; with
``resume="continue"`` a stage that has not finished may change its optimiser settings
and continue from its last checkpoint (:mod:`~cxr_curriculum.curriculum.changes`), and
the change is recorded (``changes``: the step and the fields).

Checkpoint files are verified whole against the manifest (:meth:`RunManifest.verify`):
a checkpoint's own content digest misses changes to its zip metadata, and a digest once
recorded is never replaced by another one. A new file's digest is recorded as
``pending`` before the file replaces the old one and moved to ``files`` after, so a
run killed in between leaves a file whose digest is one of the two.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from cxr_curriculum._artefacts import ArtefactIntegrityError, Written, sha256_file
from cxr_curriculum._version import __version__
from cxr_curriculum.curriculum.changes import ResumeError, accept_change, now
from cxr_curriculum.curriculum.checkpoint import (
    atomic_save,
    atomic_write_json,
    read_json,
    remove_stale_temp_files,
)
from cxr_curriculum.curriculum.distributed import DistInfo, barrier
from cxr_curriculum.curriculum.sampling import data_fingerprint
from cxr_curriculum.curriculum.stage import Stage

__all__ = ["FORMAT_VERSION", "RunManifest", "stage_hash"]

logger = logging.getLogger("cxr_curriculum.curriculum")

#: Version of the checkpoint and manifest layout (2: sha256 of every file; 3: a file's
#: sha256 is recorded as ``pending`` before the file replaces the old one, and a file
#: whose digest is neither recorded nor pending is refused).
FORMAT_VERSION = 3
#: Fields of a stage's entry that a rerun carries over from the manifest on disk.
_CARRIED = (
    "status", "steps_done", "total_steps", "files", "pending", "pruned", "changes",
    "accepted_hashes",
)  # fmt: skip
_OUR_FILES = (
    "final.pt",
    "last.pt",
    "metrics.csv",
    "metrics.json",
    "backbone.safetensors",
    "backbone.json",
)


def stage_hash(config: dict[str, Any], fingerprint: str) -> str:
    """Hash of a stage's settings and data fingerprint (16 hex digits)."""
    blob = json.dumps({"config": config, "data": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class RunManifest:
    """``manifest.json`` of one checkpoint folder, owned by rank 0.

    Use :meth:`open`; the Curriculum calls it once per run.
    """

    def __init__(
        self, root: Path, data: dict[str, Any], writer: bool, legacy: bool = False
    ) -> None:
        self.root, self.data, self.writer = root, data, writer
        #: written by a version before pending digests (a killed run's record may be stale)
        self.legacy = legacy

    @classmethod
    def open(
        cls,
        root: Path,
        stages: Sequence[Stage],
        seed: int,
        info: DistInfo,
        resume: str,
        folder: Callable[[int], Path | None],
    ) -> RunManifest:
        """Read (or create) the manifest of ``root`` and check it against ``stages``.

        Raises:
            ResumeError: a stage with progress changed (beyond what ``resume="continue"``
                allows), the seed changed, or ``resume="must"`` found nothing to resume.
        """
        path = root / "manifest.json"
        if info.is_main:
            remove_stale_temp_files(root)
            if resume == "never":
                _remove_run_files(root)
        barrier(info)
        entries = [_entry(i, stage, folder(i)) for i, stage in enumerate(stages)]
        old = read_json(path) if path.exists() else None
        started = [e for e in (old or {}).get("stages", []) if e.get("status") != "pending"]
        if resume == "must" and not started:
            raise ResumeError(f"resume='must' but {root} holds no started stage to resume")
        if old is not None and started and int(old.get("seed", -1)) != seed:
            raise ResumeError(
                f"{root} was trained with seed={old.get('seed')}, not seed={seed}; use the same "
                "seed, another checkpoint_dir, or resume='never' to start over"
            )
        for e in started:
            i = int(e["index"])
            if i >= len(entries):
                continue
            changed = e["config_hash"] != entries[i]["config_hash"]
            entries[i].update({k: e[k] for k in _CARRIED if k in e})
            if changed:  # after carrying: records the change on top of earlier ones
                accept_change(root, e, entries[i], resume)
        data = {
            "format": FORMAT_VERSION,
            "library": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "seed": seed,
            "world_size": info.world_size,
            "created": (old or {}).get("created", now()),
            "updated": now(),
            "stages": entries,
        }
        if old is not None and "backbone" in old:
            data["backbone"] = old["backbone"]
        legacy = old is not None and int(old.get("format", 0)) < FORMAT_VERSION
        manifest = cls(root, data, writer=info.is_main, legacy=legacy)
        manifest.write()
        return manifest

    def write(self) -> None:
        """Write the manifest atomically (rank 0 only)."""
        if self.writer:
            self.data["updated"] = now()
            atomic_write_json(self.data, self.root / "manifest.json")

    def mark(self, index: int, status: str, **extra: Any) -> None:
        """Set a stage's status (and extra fields such as ``error``) and write."""
        entry = self.data["stages"][index]
        if status != "failed":
            entry.pop("error", None)
        entry.update(status=status, **extra)
        self.write()

    def record(self, index: int, **files: str | None) -> None:
        """Record (``name=sha256``) or forget (``name=None``) files of stage ``index``; write.

        Recording a file also clears its pending digest.
        """
        entry = self.data["stages"][index]
        recorded, pending = entry.setdefault("files", {}), entry.get("pending", {})
        for name, sha in files.items():
            pending.pop(name, None)
            if sha is None:
                recorded.pop(name, None)
            else:
                recorded[name] = sha
        if not pending:
            entry.pop("pending", None)
        self.write()

    def _pending(self, index: int, written: Written) -> None:
        """Record a file's sha256 as pending, before it replaces the recorded one."""
        self.data["stages"][index].setdefault("pending", {})[written.path.name] = written.sha256
        self.write()

    def verify(self, index: int, path: Path, remedy: str) -> str:
        """Check a file of stage ``index`` against its recorded (or pending) sha256.

        A pending digest that matches becomes the recorded one (a run was killed between
        writing the file and recording it). A file with no digest on record is accepted.

        Returns:
            The file's sha256.

        Raises:
            ArtefactIntegrityError: the file's sha256 is neither recorded nor pending (a
                changed byte anywhere in it, zip metadata included); the record is kept.
        """
        entry, name = self.data["stages"][index], path.name
        recorded = entry.get("files", {}).get(name)
        pending = entry.get("pending", {}).get(name)
        actual = sha256_file(path)
        if actual == recorded or (recorded is None and pending is None):
            return actual
        if actual == pending or self.legacy:
            if actual != pending:
                logger.warning(
                    "%s: sha256 %s differs from %s recorded by an older version of the "
                    "package (a run killed before it recorded the file); recording the new one",
                    path, actual, recorded,
                )  # fmt: skip
            self.record(index, **{name: actual})
            return actual
        raise ArtefactIntegrityError(
            f"{path} has sha256 {actual}, but {self.root / 'manifest.json'} records "
            f"{recorded}: the file was changed, corrupted or only partly copied after it was "
            f"written (the record is kept); {remedy}"
        )

    def prune(self, index: int, path: Path) -> None:
        """Delete a file of a finished stage on purpose (``Curriculum(keep=...)``); the
        manifest forgets its digest and lists it under ``pruned``.

        The manifest is written before the file is deleted: a run killed in between leaves
        a file recorded as pruned, which the rerun deletes (:meth:`redo_prunes`), never a
        finished stage whose recorded file is gone (it would be trained again).
        """
        entry = self.data["stages"][index]
        pruned = entry.setdefault("pruned", [])
        if path.name not in pruned:
            pruned.append(path.name)
        self.record(index, **{path.name: None})
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def redo_prunes(self, index: int, folder: Path) -> None:
        """Delete the files of a finished stage that the manifest lists as pruned but that
        still exist (a run killed between recording a prune and deleting the file)."""
        entry = self.data["stages"][index]
        if entry.get("status") != "done":
            return
        for name in entry.get("pruned", []):
            if (folder / name).exists():
                logger.info("%s: deleting what an interrupted run pruned", folder / name)
                self.prune(index, folder / name)

    def is_pruned(self, index: int) -> bool:
        """Whether stage ``index`` is done and its ``final.pt`` was removed on purpose."""
        entry = self.data["stages"][index]
        return entry.get("status") == "done" and "final.pt" in entry.get("pruned", [])

    def forget_missing(self, index: int, folder: Path) -> None:
        """Drop the records of checkpoints that were deleted (e.g. as an error advised)."""
        entry = self.data["stages"][index]
        names = set(entry.get("files", {})) | set(entry.get("pending", {}))
        gone = [n for n in ("final.pt", "last.pt") if n in names and not (folder / n).exists()]
        if gone:
            self.record(index, **dict.fromkeys(gone))

    def check(self, state: dict[str, Any], index: int) -> dict[str, Any]:
        """Verify that a loaded checkpoint belongs to stage ``index`` as configured now.

        A checkpoint written before a ``resume="continue"`` change of optimiser settings
        is accepted (its hash is among the entry's ``accepted_hashes``).

        Raises:
            ResumeError: the checkpoint comes from another stage or other settings.
        """
        entry = self.data["stages"][index]
        hashes = [entry["config_hash"], *entry.get("accepted_hashes", [])]
        if int(state.get("stage_index", -1)) != index or state.get("config_hash") not in hashes:
            raise ResumeError(
                f"checkpoint of stage {index} ({entry['name']}) in {self.root} does not match the "
                "stage's current settings or data; use another checkpoint_dir or resume='never'"
            )
        return state

    def _stamp(self, index: int, state: dict[str, Any], kind: str) -> dict[str, Any]:
        return {
            **state,
            "format": FORMAT_VERSION,
            "kind": kind,
            "stage_index": index,
            "config_hash": self.data["stages"][index]["config_hash"],
        }

    def save_partial(self, index: int, path: Path, state: dict[str, Any]) -> None:
        """Write a mid-stage checkpoint and record its step and sha256."""
        written = atomic_save(
            self._stamp(index, state, "partial"),
            path,
            before_replace=lambda w: self._pending(index, w),
        )
        entry = self.data["stages"][index]
        files = {**entry.get("files", {}), path.name: written.sha256}
        entry.get("pending", {}).pop(path.name, None)
        if not entry.get("pending"):
            entry.pop("pending", None)
        self.mark(
            index,
            "running",
            steps_done=int(state["step"]),
            total_steps=int(state["total_steps"]),
            files=files,
        )

    def save_final(self, index: int, path: Path, state: dict[str, Any]) -> str:
        """Write a stage's final checkpoint (not yet marked done); return its sha256.

        Its digest is pending until :meth:`record` records it.
        """
        written = atomic_save(
            self._stamp(index, state, "final"),
            path,
            before_replace=lambda w: self._pending(index, w),
        )
        self.data["stages"][index].pop("pruned", None)  # the stage was trained again
        return written.sha256

    def finish(self, index: int, total_steps: int, **files: str) -> None:
        """Mark a stage done with the sha256 of its files, then drop its ``last.pt``."""
        entry = self.data["stages"][index]
        recorded = {k: v for k, v in entry.get("files", {}).items() if k != "last.pt"}
        entry.pop("pending", None)
        self.mark(
            index, "done", steps_done=total_steps, total_steps=total_steps,
            files={**recorded, **files},
        )  # fmt: skip
        folder = self.root / entry["folder"]
        with contextlib.suppress(FileNotFoundError):
            (folder / "last.pt").unlink()

    def recipe(self, upto: int, run: dict[str, Any]) -> dict[str, Any]:
        """How the backbone after stage ``upto`` was made, for its sidecar.

        Returns:
            Versions, seed, run settings (device, precision, processes) and, for stages
            ``0..upto``, the settings (method and hyper-parameters, budget, optimiser,
            schedule), total steps, data fingerprint and size, settings hash, sha256 of
            ``final.pt`` and any ``resume="continue"`` changes.
        """
        keys = ("index", "name", "config", "data_fingerprint", "data_size", "config_hash",
                "total_steps", "changes")  # fmt: skip
        stages = []
        for entry in self.data["stages"][: upto + 1]:
            item = {k: entry[k] for k in keys if k in entry}
            item["final_sha256"] = entry.get("files", {}).get("final.pt")
            stages.append(item)
        versions = ("library", "torch", "python")
        return {
            "format": "cxr_curriculum.recipe/1",
            "versions": {k: self.data[k] for k in versions},
            "seed": self.data["seed"],
            "run": {**run, "world_size": self.data["world_size"]},
            "stages": stages,
        }


def _entry(index: int, stage: Stage, folder: Path | None) -> dict[str, Any]:
    config, fp = stage.config(), data_fingerprint(stage.data)
    return {
        "index": index,
        "name": stage.label,
        "folder": str(folder.name) if folder is not None else None,
        "config": config,
        "data_fingerprint": fp,
        "data_size": len(stage.data),  # type: ignore[arg-type]
        "config_hash": stage_hash(config, fp),
        "status": "pending",
        "steps_done": 0,
        "total_steps": None,
        "files": {},
        "divergence": None if stage.divergence is None else stage.divergence.config(),
    }


def _remove_run_files(root: Path) -> None:
    """Delete the files a previous run wrote (``resume="never"``), nothing else."""
    for name in ("manifest.json", "backbone.safetensors", "backbone.json"):
        with contextlib.suppress(FileNotFoundError):
            (root / name).unlink()
    for folder in root.glob("stage[0-9][0-9]-*"):
        for name in _OUR_FILES:
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
