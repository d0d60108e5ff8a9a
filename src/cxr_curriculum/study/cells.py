"""Cells of a study on disk: one small JSON per (arm, seed, task, fraction, protocol).

Every finished cell is written atomically (temp file + ``fsync`` + ``os.replace``, via
:func:`cxr_curriculum._artefacts.atomic_write_bytes`) and its sha256 is then
recorded in ``index.json``. A study killed at any moment therefore leaves complete
cells that are listed in the index (finished, never recomputed), and at most one cell
that is not (recomputed). A cell whose bytes no longer match the index, or whose
recorded settings differ from the study's current ones, is refused with the file and
the fields named, as :class:`~cxr_curriculum.Curriculum` refuses a changed stage.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_curriculum._artefacts import atomic_write_bytes, verify_sha256
from cxr_curriculum.curriculum.checkpoint import atomic_write_json, read_json

__all__ = ["CellKey", "CellStore", "settings_diff"]

FORMAT_VERSION = 1
_MISSING = "<missing>"


@dataclass(frozen=True, order=True)
class CellKey:
    """Coordinates of one cell.

    Attributes:
        seed: Training seed (pretraining, label subset and downstream training).
        arm: Arm name.
        task: Task name.
        fraction: Share of training labels.
        protocol: ``"knn"``, ``"linear_probe"`` or ``"fine_tune"``.
    """

    seed: int
    arm: str
    task: str
    fraction: float
    protocol: str

    @property
    def relpath(self) -> str:
        """Path of the cell's JSON inside the study folder."""
        arm = self.arm.replace("->", "_").replace(">", "_")
        return f"cells/{self.task}/{arm}/seed{self.seed}/{self.protocol}-f{self.fraction:g}.json"

    def to_dict(self) -> dict[str, Any]:
        """The coordinates as a dict."""
        return {
            "arm": self.arm,
            "seed": self.seed,
            "task": self.task,
            "fraction": self.fraction,
            "protocol": self.protocol,
        }


def settings_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``"field: old -> new"`` for every leaf that differs between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += settings_diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


class CellStore:
    """The cell files of one study folder and their ``index.json``.

    Args:
        root: The study's output folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        index = self.root / "index.json"
        data = read_json(index) if index.exists() else {"format": FORMAT_VERSION, "files": {}}
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError(f"{index} is not a study index (expected a 'files' table)")
        self._files: dict[str, str] = dict(data["files"])

    def __contains__(self, key: CellKey) -> bool:
        return key.relpath in self._files and (self.root / key.relpath).is_file()

    def keys(self) -> list[str]:
        """Relative paths of every indexed file."""
        return sorted(self._files)

    def read_file(self, relpath: str) -> Any:
        """Read an indexed JSON file after checking its sha256.

        Raises:
            FileNotFoundError: If it is not indexed or missing.
            ValueError: If its bytes do not match the index.
        """
        path = self.root / relpath
        if relpath not in self._files or not path.is_file():
            raise FileNotFoundError(f"{path} is not a finished file of this study")
        verify_sha256(
            path,
            self._files[relpath],
            recorded_in=str(self.root / "index.json"),
            remedy="delete the file to recompute it",
        )
        return read_json(path)

    def write_file(self, relpath: str, record: Any) -> Path:
        """Write ``record`` atomically and index its sha256."""
        text = json.dumps(record, indent=1, sort_keys=True) + "\n"
        written = atomic_write_bytes(self.root / relpath, text.encode(), what="study cell")
        self._files[relpath] = written.sha256
        atomic_write_json(
            {"format": FORMAT_VERSION, "files": self._files}, self.root / "index.json"
        )
        return written.path

    def read(self, key: CellKey, settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The finished cell ``key``, or ``None`` if it has not been computed.

        Args:
            key: The cell.
            settings: The study's current settings for this cell; a finished cell that
                was computed with other settings raises.

        Raises:
            ValueError: Corrupted file, or settings that changed (the fields are named).
        """
        if key not in self:
            return None
        record: dict[str, Any] = self.read_file(key.relpath)
        if settings is not None and record.get("settings") != settings:
            changes = settings_diff(record.get("settings"), settings)
            raise ValueError(
                f"cell {key.relpath} in {self.root} was computed with other settings: "
                + "; ".join(changes or ["settings differ"])
                + ". Restore the setting, use another output folder, or delete the cell files "
                "to recompute them."
            )
        return record

    def write(self, key: CellKey, record: dict[str, Any]) -> Path:
        """Write a finished cell (``record`` must hold its ``settings``)."""
        return self.write_file(key.relpath, {**key.to_dict(), **record})
