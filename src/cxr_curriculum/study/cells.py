"""Cells of a study on disk: one small JSON per (arm, seed, task, fraction, protocol).

Every finished cell is written atomically (temp file + ``fsync`` + ``os.replace``, via
:func:`cxr_curriculum._artefacts.atomic_write_bytes`) and carries the sha256 of its own
contents (``content_sha256``); its file's sha256 is then recorded in ``index.json``,
which carries a sha256 of its own table too. Writing a cell and recording it happen
under the folder's lock (:class:`~cxr_curriculum.study.folder.StudyFolder`) after
re-reading the index, so several workers never lose each other's entries, and a cell
that another worker already recorded is kept, never written twice.

Repair instead of refusal:

- a cell whose bytes no longer match the index and that fails its own sha256 (a flipped
  byte, a cut-short copy) is moved to ``set_aside/`` (the log names both paths) and
  counts as not computed: the next run or worker computes it again;
- a cell that verifies against its own sha256 while the index records another value has
  a healthy file and a damaged index entry: the entry is re-recorded and the log says so;
- a cut-short, garbled or altered ``index.json`` is set aside and rebuilt from the cell
  files that verify against their own sha256 (cells written before cells carried one
  cannot be verified: they are set aside too and recomputed).

A cell whose recorded settings differ from the study's current ones is refused with
the file and the fields named, as :class:`~cxr_curriculum.Curriculum` refuses a changed
stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_curriculum._artefacts import (
    CONTENT_KEY,
    ArtefactWriteError,
    atomic_write_bytes,
    content_sha256,
)
from cxr_curriculum.study.folder import StudyFolder, StudyFolderError
from cxr_curriculum.study.index import LEGACY, StudyIndex, check_record

__all__ = ["CellKey", "CellStore", "settings_diff"]

logger = logging.getLogger("cxr_curriculum.study")

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
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += settings_diff(a, b, f"{prefix.rstrip('.')}[{i}].")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


class CellStore:
    """The cell files of one study folder and their ``index.json``.

    Reading is lazy: nothing is read until a cell is asked for, and :meth:`refresh`
    re-reads the index that other workers may have extended.

    Args:
        root: The study's output folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.folder = StudyFolder(root)
        self.root = self.folder.root
        self.index = StudyIndex(self.folder)
        self._files: dict[str, str] | None = None
        self._units: dict[str, Any] = {}

    # ------------------------------------------------------------------ index
    def refresh(self) -> None:
        """Re-read ``index.json`` (repairing a damaged one, see the module docstring)."""
        self._files, self._units = self.index.load(locked=False)

    def _index(self) -> dict[str, str]:
        if self._files is None:
            self.refresh()
        assert self._files is not None
        return self._files

    def __contains__(self, key: CellKey) -> bool:
        return key.relpath in self._index() and (self.root / key.relpath).is_file()

    def keys(self) -> list[str]:
        """Relative paths of every indexed file."""
        return sorted(self._index())

    def units(self) -> dict[str, Any]:
        """What finished units recorded (``seconds``, ``worker``, ``finished``) by name."""
        self._index()
        return dict(self._units)

    # ------------------------------------------------------------------ cells
    def read(self, key: CellKey, settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The finished cell ``key``, or ``None`` if it has not been computed.

        A damaged cell is set aside and reads as ``None`` (computed again by the next
        run); a damaged index entry of a healthy cell is re-recorded.

        Args:
            key: The cell.
            settings: The study's current settings for this cell; a finished cell that
                was computed with other settings raises.

        Raises:
            StudyFolderError: The cell was computed with other settings (the fields are
                named).
        """
        files = self._index()
        rel, path = key.relpath, self.root / key.relpath
        if rel not in files:
            return None
        try:
            raw = path.read_bytes()
        except FileNotFoundError:  # never written, or set aside by another worker just now
            return None
        sha = hashlib.sha256(raw).hexdigest()
        record, problem = check_record(raw)
        if sha != files[rel] and problem is None:
            self._repair_entry(rel, files[rel], sha)
        elif sha != files[rel] or (problem is not None and problem != LEGACY):
            why = problem or "its sha256 differs from the one index.json records"
            self._set_aside_cell(rel, why)
            return None
        assert record is not None
        if settings is not None and record.get("settings") != settings:
            changes = settings_diff(record.get("settings"), settings)
            raise StudyFolderError(
                f"cell {rel} in {self.root} was computed with other settings: "
                + "; ".join(changes or ["settings differ"])
                + ". Restore the setting, use another output folder, or delete the cell files "
                "to recompute them."
            )
        return record

    def _repair_entry(self, rel: str, recorded: str, actual: str) -> None:
        with self.folder.lock():
            files, units = self.index.load(locked=True)
            if files.get(rel) == recorded:
                files[rel] = actual
                self.index.write(files, units)
                logger.warning(
                    "%s recorded sha256 %s for %s, but the cell verifies against its own "
                    "sha256: the index entry was damaged, not the cell; re-recorded %s",
                    self.folder.index, recorded, rel, actual,
                )  # fmt: skip
            self._files, self._units = files, units

    def _set_aside_cell(self, rel: str, why: str) -> None:
        path = self.root / rel
        try:
            with self.folder.lock():
                files, units = self.index.load(locked=True)
                if rel in files and path.is_file():
                    raw = path.read_bytes()
                    changed = hashlib.sha256(raw).hexdigest() != files[rel]
                    if changed or check_record(raw)[1] not in (None, LEGACY):
                        self.folder.set_aside(path, f"is damaged ({why}); it will be recomputed")
                        del files[rel]
                        self.index.write(files, units)
                self._files, self._units = files, units
        except ArtefactWriteError as err:
            logger.warning("%s is damaged (%s) and is not used; it cannot be set aside: %s",
                           path, why, err)  # fmt: skip
            self._index().pop(rel, None)

    def write(self, key: CellKey, record: dict[str, Any]) -> Path | None:
        """Write a finished cell (``record`` must hold its ``settings``) and index it.

        Returns:
            The cell's path, or ``None`` when another worker had already recorded this
            cell (its file is kept; nothing is written).

        Raises:
            ArtefactWriteError: The folder is read-only or full (nothing is torn: the
                previous index and cells are unchanged).
        """
        full = {**key.to_dict(), **record}
        full[CONTENT_KEY] = content_sha256(json.loads(json.dumps(full)))
        data = (json.dumps(full, indent=1, sort_keys=True) + "\n").encode()
        path = self.root / key.relpath
        with self.folder.lock():
            files, units = self.index.load(locked=True)
            if key.relpath in files and path.is_file():
                raw = path.read_bytes()
                if hashlib.sha256(raw).hexdigest() == files[key.relpath]:
                    self._files, self._units = files, units
                    return None
            written = atomic_write_bytes(path, data, what="study cell")
            files[key.relpath] = written.sha256
            self.index.write(files, units)
            self._files, self._units = files, units
        return written.path

    def record_unit(self, name: str, info: dict[str, Any]) -> set[str]:
        """Record a finished unit's timings; return every indexed cell path after it."""
        with self.folder.lock():
            files, units = self.index.load(locked=True)
            units[name] = info
            self.index.write(files, units)
            self._files, self._units = files, units
        return set(files)
