"""A study's ``index.json``: the sha256 of every finished cell and the units' timings.

The index carries a sha256 of its own tables; each cell carries one of its own contents
(:func:`check_record`). A cut-short, garbled or altered index is moved to
``set_aside/`` and rebuilt from the cell files that verify against their own sha256 (a
cell without one, written by an earlier version, cannot be verified: it is set aside
too and recomputed). Rebuilding happens under the folder's lock after re-reading the
index, so that one worker repairs it and the others read the repaired file; on a folder
that cannot be written, the rebuilt index is used in memory only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from cxr_curriculum._artefacts import (
    CONTENT_KEY,
    ArtefactWriteError,
    atomic_write_bytes,
    content_sha256,
)
from cxr_curriculum.study.folder import StudyFolder

__all__ = ["FORMAT_VERSION", "LEGACY", "StudyIndex", "check_record"]

logger = logging.getLogger("cxr_curriculum.study")

#: 2: cells and the index carry the sha256 of their own contents; units record timings.
FORMAT_VERSION = 2
#: :func:`check_record`'s verdict on a readable cell written without its own sha256.
LEGACY = "written without a sha256 of its own (before format 2)"
#: ``(files, units)``: relative cell path -> sha256 of its file; unit name -> timings.
Tables = tuple[dict[str, str], dict[str, Any]]


class DamagedIndexError(Exception):
    """``index.json`` cannot be used (the message says why)."""


def check_record(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a cell file and check its own sha256: ``(record, problem)``.

    ``record`` is returned without its digest; ``problem`` is ``None`` for a verified
    cell, :data:`LEGACY` for a readable cell without a digest, else why it is damaged
    (and ``record`` is ``None``).
    """
    try:
        record = json.loads(raw)
    except ValueError as err:
        return None, f"not valid JSON: {err}"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    digest = record.pop(CONTENT_KEY, None)
    if digest is None:
        return record, LEGACY
    if content_sha256(record) != digest:
        return None, "its contents do not match the sha256 stored in it"
    return record, None


def parse_index(raw: bytes) -> Tables:
    """The tables of an ``index.json``; raises :class:`DamagedIndexError` saying why not."""
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise DamagedIndexError(f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise DamagedIndexError("not a study index (no 'files' table)")
    files, units = data["files"], data.get("units", {})
    ok = all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    if not ok or not isinstance(units, dict):
        raise DamagedIndexError("its 'files' or 'units' table is malformed")
    digest = data.get(CONTENT_KEY)
    if digest is None and data.get("format", 1) >= 2:
        raise DamagedIndexError("its own sha256 is missing")
    if digest is not None and content_sha256({"files": files, "units": units}) != digest:
        raise DamagedIndexError("its tables do not match the sha256 stored in it")
    return dict(files), dict(units)


class StudyIndex:
    """Reads, repairs and writes one study folder's ``index.json``.

    Args:
        folder: The study folder.
    """

    def __init__(self, folder: StudyFolder) -> None:
        self.folder = folder
        self.root = folder.root

    def load(self, *, locked: bool) -> Tables:
        """Read the index; a damaged one is rebuilt (``locked``: the caller holds the lock)."""
        path = self.folder.index
        try:
            return parse_index(path.read_bytes())
        except FileNotFoundError:
            return {}, {}
        except DamagedIndexError as err:
            reason = str(err)
        if locked:
            return self.rebuild(reason, persist=True)
        try:
            with self.folder.lock():
                return self.load(locked=True)  # re-read: another worker may have repaired it
        except ArtefactWriteError as err:
            logger.warning("%s is damaged (%s) and cannot be repaired here: %s", path, reason, err)
            return self.rebuild(reason, persist=False)

    def rebuild(self, reason: str, *, persist: bool) -> Tables:
        """Index the cells that verify against their own sha256 (lock held if ``persist``)."""
        if persist:
            self.folder.set_aside(self.folder.index, f"is damaged ({reason})")
        files: dict[str, str] = {}
        for path in sorted((self.root / "cells").rglob("*.json")):
            raw = path.read_bytes()
            _, problem = check_record(raw)
            if problem is None:
                files[self.folder.relative(path)] = hashlib.sha256(raw).hexdigest()
            elif persist:
                self.folder.set_aside(path, f"cannot be verified against its own sha256: {problem}")
        if persist:
            self.write(files, {})
        logger.warning(
            "%s was damaged (%s): rebuilt from the %d cell files that verify against their "
            "own sha256",
            self.folder.index, reason, len(files),
        )  # fmt: skip
        return files, {}

    def write(self, files: dict[str, str], units: dict[str, Any]) -> None:
        """Replace ``index.json`` atomically (call it holding the folder's lock)."""
        data = {
            "format": FORMAT_VERSION,
            "files": files,
            "units": units,
            CONTENT_KEY: content_sha256({"files": files, "units": units}),
        }
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        atomic_write_bytes(self.folder.index, text.encode(), what="study index")
