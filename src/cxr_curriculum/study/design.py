"""One study per output folder: the design record ``design.json`` and its check.

The first run, worker or launch in a folder records the study's design there: every
setting that changes a cell (architecture, image side, pretraining pool fingerprint,
each arm's stages, each task's data, each protocol's settings) plus its seeds and
label fractions, and the file it came from. Every later run compares its own design
with the record **before any work** and refuses a folder whose record disagrees on a
shared setting, naming both study files and the differing fields. A study that only
adds (or leaves out) seeds, arms, tasks, fractions or protocols shares the cells it has
in common and is accepted; the record then grows to the union.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cxr_curriculum._artefacts import CONTENT_KEY, atomic_write_bytes, content_sha256
from cxr_curriculum.curriculum import data_fingerprint
from cxr_curriculum.study.cells import settings_diff
from cxr_curriculum.study.folder import StudyFolderError

if TYPE_CHECKING:
    from cxr_curriculum.study.study import Study

__all__ = ["check_design", "study_design"]

_SCALARS = ("arch", "image_size", "pretrain_data")
_TABLES = ("arms", "tasks", "protocols")
_LISTS = ("seeds", "fractions")


def study_design(study: Study) -> dict[str, Any]:
    """The settings that decide the study's cells (JSON-able)."""
    data = study.pretrain_data
    pool = None if data is None or not any(a.stages for a in study.arms) else data_fingerprint(data)
    design = {
        "arch": study.arch,
        "image_size": study.image_size,
        "pretrain_data": pool,
        "arms": {a.name: a.config(study.batch_size, study.image_size) for a in study.arms},
        "tasks": {t.name: t.config() for t in study.tasks},
        "protocols": {p: study.protocol_settings.config(p) for p in study.protocols},
        "seeds": list(study.seeds),
        "fractions": list(study.fractions),
    }
    return dict(json.loads(json.dumps(design)))  # as read back from the record


def _conflicts(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in _SCALARS:
        a, b = old.get(key), new.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    for key in _TABLES:
        a, b = old.get(key) or {}, new.get(key) or {}
        for name in sorted(set(a) & set(b)):
            out += settings_diff(a[name], b[name], f"{key}.{name}.")
    return out


def _union(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(new)
    for key in _SCALARS:
        out[key] = new.get(key) if new.get(key) is not None else old.get(key)
    for key in _TABLES:
        out[key] = {**(old.get(key) or {}), **(new.get(key) or {})}
    for key in _LISTS:
        out[key] = sorted(set(old.get(key) or []) | set(new.get(key) or []))
    return out


def _read(study: Study) -> dict[str, Any] | None:
    path = study.store.folder.design
    try:
        record = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise StudyFolderError(
            f"{path} (the design record of this output folder) is not valid JSON ({err}); "
            "restore it, or delete it if this folder holds only this study's files"
        ) from None
    if not isinstance(record, dict):
        raise StudyFolderError(
            f"{path} (the design record of this output folder) is not a JSON object; "
            "restore it, or delete it if this folder holds only this study's files"
        )
    body = {k: v for k, v in record.items() if k != CONTENT_KEY}
    if content_sha256(body) != record.get(CONTENT_KEY):
        raise StudyFolderError(
            f"{path} (the design record of this output folder) was changed or damaged: its "
            "sha256 does not match; restore it, or delete it if this folder holds only this "
            "study's files"
        )
    return body


def check_design(study: Study, *, record: bool = True) -> None:
    """Refuse an output folder first used by a different study; record this one's design.

    Args:
        study: The study (``study.source`` names its file, when it came from one).
        record: Write (or extend) ``design.json``; ``False`` only checks.

    Raises:
        StudyFolderError: The folder's record disagrees on a shared setting (the message
            names both study files and the fields).
        ArtefactWriteError: The record cannot be written.
    """
    folder = study.store.folder
    design = study_design(study)
    source = str(getattr(study, "source", None) or "a study built in Python")
    old = _read(study)
    if old is not None:
        clash = _conflicts(old["design"], design)
        if clash:
            raise StudyFolderError(
                f"{folder.root} was first used by another study: {old['sources'][0]} "
                f"(recorded in {folder.design}) and {source} differ in "
                + "; ".join(clash)
                + ". Use another output folder for this study, or restore the setting."
            )
        if _union(old["design"], design) == old["design"] or not record:
            return
    if not record:
        return
    with folder.lock():
        old = _read(study)  # another worker may have recorded it meanwhile
        if old is not None and _conflicts(old["design"], design):
            check_design(study, record=False)  # raises with the message above
        merged = design if old is None else _union(old["design"], design)
        sources = [] if old is None else list(old["sources"])
        body = {
            "format": 1,
            "design": merged,
            "sources": sources if source in sources else [*sources, source],
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        text = json.dumps({**body, CONTENT_KEY: content_sha256(body)}, indent=1, sort_keys=True)
        atomic_write_bytes(folder.design, (text + "\n").encode(), what="study design record")
