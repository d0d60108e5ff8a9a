"""Backbone weights on disk: safetensors plus a JSON sidecar that says how to rebuild them.

The sidecar (``<path>.with_suffix(".json")``) holds the architecture name, ``in_chans``,
``num_features``, ``input_norm``, ``pool``, where the starting weights came from, the
initialisation seed, library versions, free-form ``meta`` (what produced the weights,
e.g. a curriculum's whole recipe) and the sha256 of the weights file. The same JSON
(without the file's own sha256) is stored in the safetensors header (key
``"cxr_curriculum"``) together with the sha256 of the tensors, so a lone
``.safetensors`` file can still be rebuilt and verified. Both files are written
atomically; loading verifies the recorded digests and names the file on any mismatch.
"""

from __future__ import annotations

import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from .._artefacts import (
    ArtefactIntegrityError,
    atomic_write_bytes,
    content_sha256,
    verify_sha256,
)
from .._version import __version__

if TYPE_CHECKING:
    from .backbone import Backbone

__all__ = [
    "FORMAT",
    "load_backbone",
    "read_safetensors",
    "read_sidecar",
    "save_backbone",
    "sidecar_path",
    "verify_backbone_file",
]

FORMAT = "cxr_curriculum.backbone/1"
_HEADER_KEY = "cxr_curriculum"
_REMEDY = (
    "save the backbone again (Backbone.save), or for a curriculum's file run the curriculum "
    "again with the same checkpoint_dir: it rebuilds the file from the stage's final.pt"
)
B = TypeVar("B", bound="Backbone")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a weights file: ``bb.safetensors`` -> ``bb.json``."""
    return Path(path).with_suffix(".json")


def _versions(name: str) -> dict[str, str]:
    out = {"cxr_curriculum": __version__, "torch": torch.__version__}
    for pkg in ("torchvision", "timm") if name.startswith("timm:") else ("torchvision",):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "not installed"
    return out


def save_backbone(backbone: Backbone, path: str | os.PathLike[str], meta: dict[str, Any]) -> Path:
    """Implementation of :meth:`Backbone.save`; returns the weights file's path."""
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: the weights file cannot end in .json (that is the sidecar)")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
    info = {
        "format": FORMAT,
        "name": backbone.name,
        "in_chans": backbone.in_chans,
        "num_features": backbone.num_features,
        "input_norm": list(backbone.input_norm) if backbone.input_norm is not None else None,
        "pool": backbone.pool,
        "initial_weights": backbone.weights_source,
        "seed": backbone.seed,
        "versions": _versions(backbone.name),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tensors_sha256": content_sha256(tensors),
        "meta": meta,
    }
    try:
        header = json.dumps(info, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serialisable: {err}") from err
    data = safetensors_bytes(tensors, metadata={"format": "pt", _HEADER_KEY: header})
    written = atomic_write_bytes(path, data, what="backbone file")
    sidecar = sidecar_path(path)
    text = json.dumps({**info, "sha256": written.sha256}, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(sidecar, text.encode(), what="backbone sidecar")
    return written.path


def _json(text: str | bytes, where: str) -> Any:
    """Parse a sidecar's JSON; a damaged one is an :class:`ArtefactIntegrityError` naming it."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise ArtefactIntegrityError(
            f"{where} is not valid JSON ({type(err).__name__}: {err}): it was changed, cut short "
            f"or only partly copied after it was written; {_REMEDY}"
        ) from err


def _read_sidecar_file(sidecar: Path) -> Any:
    return _json(sidecar.read_bytes(), f"the backbone sidecar {sidecar}")


def _our_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar of ``path`` if it exists and is one of ours, else ``None``."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    info = _read_sidecar_file(sidecar)
    return info if isinstance(info, dict) and info.get("format") == FORMAT else None


def _read(path: Path, tensors: bool) -> tuple[dict[str, str], dict[str, Tensor]]:
    """The header metadata (and the tensors, on the CPU) of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            names = list(f.keys()) if tensors else []
            return meta, {k: f.get_tensor(k) for k in names}
    except Exception as err:  # safetensors' messages do not name the file
        raise ValueError(
            f"could not read the safetensors file {path} ({type(err).__name__}: {err}); it is "
            f"truncated or not a safetensors file; {_REMEDY}"
        ) from err


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of ``path``, or the copy in its safetensors header if the JSON is absent.

    Args:
        path: The weights file (``str`` or path-like), e.g. ``"bb.safetensors"``.

    Raises:
        FileNotFoundError: Neither ``path`` nor its sidecar exists.
        ArtefactIntegrityError: The sidecar (or the header's copy) is not valid JSON.
        ValueError: ``path`` exists but was not written by :meth:`Backbone.save` (no
            sidecar and no header: a torch checkpoint, a foreign safetensors file; the
            message says to load it with ``Backbone(name, weights=path)``), the format is
            not :data:`FORMAT`, or the file cannot be read.
    """
    path = Path(path)
    sidecar = sidecar_path(path)
    how = f"load it with Backbone(name, weights={str(path)!r}) and the architecture's name"
    where = str(sidecar)
    if sidecar.is_file():
        info = _read_sidecar_file(sidecar)
    elif not path.exists():
        raise FileNotFoundError(f"backbone file not found: {path} (and no sidecar {sidecar})")
    elif not path.is_file():
        raise ValueError(f"{path} is not a file; give the backbone's .safetensors file")
    elif not _is_safetensors(path):
        raise ValueError(
            f"{path} exists but is not a backbone file written by Backbone.save: it has no "
            f"sidecar {sidecar} and is not a safetensors file (a torch checkpoint?); {how}"
        )
    else:
        header = _read(path, tensors=False)[0].get(_HEADER_KEY)
        if header is None:
            raise ValueError(
                f"{path} is a safetensors file without a sidecar {sidecar} and without the "
                f"'{_HEADER_KEY}' header Backbone.save writes, so its architecture is unknown; "
                f"{how}"
            )
        where = f"the '{_HEADER_KEY}' header of {path}"
        info = _json(header, where)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise ValueError(f"{where}: format {found!r} is not {FORMAT!r}")
    return dict(info)


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file: a little-endian u64 header length
    followed by a JSON object (the name's suffix is not trusted)."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    size = int.from_bytes(head[:8], "little")
    return 2 <= size <= path.stat().st_size - 8 and head[8:9] == b"{"


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a ``.safetensors`` state dict on the CPU, verifying what was recorded for it.

    The file's sha256 is checked against its sidecar (when one of ours exists) and the
    tensors against the digest in its header (when :meth:`Backbone.save` wrote it).

    Raises:
        ArtefactIntegrityError: A recorded sha256 does not match (the message names the file).
        ValueError: The file cannot be read (truncated, not safetensors).
    """
    path = Path(path)
    info = _our_sidecar(path)
    if info is not None and "sha256" in info:
        verify_sha256(path, info["sha256"], recorded_in=str(sidecar_path(path)), remedy=_REMEDY)
    meta, tensors = _read(path, tensors=True)
    header = None
    if _HEADER_KEY in meta:
        header = _json(meta[_HEADER_KEY], f"the '{_HEADER_KEY}' header of {path}")
    recorded = header.get("tensors_sha256") if isinstance(header, dict) else None
    if recorded is not None and content_sha256(tensors) != recorded:
        raise ArtefactIntegrityError(
            f"{path} is corrupted: its tensors do not match the sha256 in its header; {_REMEDY}"
        )
    return tensors


def verify_backbone_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that a backbone file is complete: its sidecar exists and matches its bytes.

    Args:
        path: A file written by :meth:`Backbone.save`.

    Returns:
        The sidecar.

    Raises:
        FileNotFoundError: The file or its sidecar is missing.
        ArtefactIntegrityError: The file's sha256 differs from the sidecar's record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone file not found: {path}")
    info = _our_sidecar(path)
    if info is None or "sha256" not in info:
        raise FileNotFoundError(f"{path} has no sidecar {sidecar_path(path)} with its sha256")
    verify_sha256(path, info["sha256"], recorded_in=str(sidecar_path(path)), remedy=_REMEDY)
    return info


def load_backbone(cls: type[B], path: str | os.PathLike[str]) -> B:
    """Implementation of :meth:`Backbone.from_file`."""
    path = Path(path)
    info = read_sidecar(path)
    norm = info.get("input_norm")
    backbone = cls(
        info["name"],
        in_chans=int(info["in_chans"]),
        weights=path,
        input_norm=(float(norm[0]), float(norm[1])) if norm is not None else None,
        pool=info.get("pool"),  # absent in files written before pooling was a setting
    )
    if backbone.num_features != info["num_features"]:
        raise ValueError(
            f"{path}: sidecar says num_features={info['num_features']}, "
            f"the rebuilt {info['name']!r} has {backbone.num_features}"
        )
    return backbone
