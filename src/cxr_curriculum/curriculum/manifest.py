"""The run manifest (``manifest.json``) and the checks that make resuming safe.

The manifest records the library, torch and Python versions, the seed, and for every
stage its settings (:meth:`Stage.config`), a fingerprint of its data
(:func:`~cxr_curriculum.curriculum.sampling.data_fingerprint`), a hash of both, its
status (``pending``, ``running``, ``done``, ``failed``) and the steps done. Every
checkpoint carries its stage's hash too. A rerun that changed a stage which already has
progress stops with a ``ValueError`` naming the fields that differ, instead of silently
mixing two different runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from cxr_curriculum._version import __version__
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

#: Version of the checkpoint and manifest layout.
FORMAT_VERSION = 1
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


_MISSING = "<missing>"


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


class RunManifest:
    """``manifest.json`` of one checkpoint folder, owned by rank 0.

    Use :meth:`open`; the Curriculum calls it once per run.
    """

    def __init__(self, root: Path, data: dict[str, Any], writer: bool) -> None:
        self.root, self.data, self.writer = root, data, writer

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
            ValueError: a stage with progress changed, the seed changed, or
                ``resume="must"`` found nothing to resume.
        """
        path = root / "manifest.json"
        if info.is_main:
            remove_stale_temp_files(root)
            if resume == "never":
                _remove_run_files(root)
        barrier(info)
        entries = []
        for i, stage in enumerate(stages):
            config, fp = stage.config(), data_fingerprint(stage.data)
            entries.append(
                {
                    "index": i,
                    "name": stage.label,
                    "folder": str(folder(i).name),  # type: ignore[union-attr]
                    "config": config,
                    "data_fingerprint": fp,
                    "config_hash": stage_hash(config, fp),
                    "status": "pending",
                    "steps_done": 0,
                    "total_steps": None,
                }
            )
        old = read_json(path) if path.exists() else None
        started = [e for e in (old or {}).get("stages", []) if e.get("status") != "pending"]
        if resume == "must" and not started:
            raise ValueError(f"resume='must' but {root} holds no started stage to resume")
        if old is not None and started and int(old.get("seed", -1)) != seed:
            raise ValueError(
                f"{root} was trained with seed={old.get('seed')}, not seed={seed}; use the same "
                "seed, another checkpoint_dir, or resume='never' to start over"
            )
        for e in started:
            i = int(e["index"])
            if i < len(entries):
                if e["config_hash"] != entries[i]["config_hash"]:
                    changes = _diff(e.get("config"), entries[i]["config"])
                    if e.get("data_fingerprint") != entries[i]["data_fingerprint"]:
                        changes.append("data: the dataset's files, length or subset changed")
                    raise ValueError(
                        f"stage {i} ({e.get('name')}) in {root} was run with other settings: "
                        + "; ".join(changes or ["settings differ"])
                        + ". Use another checkpoint_dir, or resume='never' to start over."
                    )
                entries[i].update(
                    {k: e[k] for k in ("status", "steps_done", "total_steps") if k in e}
                )
        data = {
            "format": FORMAT_VERSION,
            "library": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "seed": seed,
            "world_size": info.world_size,
            "created": (old or {}).get("created", _now()),
            "updated": _now(),
            "stages": entries,
        }
        manifest = cls(root, data, writer=info.is_main)
        manifest.write()
        return manifest

    def write(self) -> None:
        """Write the manifest atomically (rank 0 only)."""
        if self.writer:
            self.data["updated"] = _now()
            atomic_write_json(self.data, self.root / "manifest.json")

    def mark(self, index: int, status: str, **extra: Any) -> None:
        """Set a stage's status (and extra fields such as ``error``) and write."""
        self.data["stages"][index].update(status=status, **extra)
        self.write()

    def check(self, state: dict[str, Any], index: int) -> dict[str, Any]:
        """Verify that a loaded checkpoint belongs to stage ``index`` as configured now.

        Raises:
            ValueError: the checkpoint comes from another stage or other settings.
        """
        entry = self.data["stages"][index]
        if (
            int(state.get("stage_index", -1)) != index
            or state.get("config_hash") != entry["config_hash"]
        ):
            raise ValueError(
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
        """Write a mid-stage checkpoint and record its step."""
        atomic_save(self._stamp(index, state, "partial"), path)
        self.mark(
            index, "running", steps_done=int(state["step"]), total_steps=int(state["total_steps"])
        )

    def save_final(self, index: int, path: Path, state: dict[str, Any]) -> None:
        """Write a stage's final checkpoint, drop its ``last.pt`` and mark it done."""
        atomic_save(self._stamp(index, state, "final"), path)
        with contextlib.suppress(FileNotFoundError):
            (path.parent / "last.pt").unlink()
        total = int(state["total_steps"])
        self.mark(index, "done", steps_done=total, total_steps=total)


def _remove_run_files(root: Path) -> None:
    """Delete the files a previous run wrote (``resume="never"``), nothing else."""
    with contextlib.suppress(FileNotFoundError):
        (root / "manifest.json").unlink()
    for folder in root.glob("stage[0-9][0-9]-*"):
        for name in _OUR_FILES:
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
