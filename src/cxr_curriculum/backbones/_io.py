"""Backbone weights on disk: safetensors plus a JSON sidecar that says how to rebuild them.

The sidecar (``<path>.with_suffix(".json")``) holds the architecture name, ``in_chans``,
``num_features``, ``input_norm``, where the starting weights came from, library
versions and free-form ``meta`` (what produced the weights). The same JSON is also
stored in the safetensors header (key ``"cxr_curriculum"``) so that a lone
``.safetensors`` file can still be rebuilt.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .._version import __version__

if TYPE_CHECKING:
    from .backbone import Backbone

__all__ = ["FORMAT", "load_backbone", "read_sidecar", "save_backbone", "sidecar_path"]

FORMAT = "cxr_curriculum.backbone/1"
_HEADER_KEY = "cxr_curriculum"
B = TypeVar("B", bound="Backbone")


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a weights file: ``bb.safetensors`` -> ``bb.json``."""
    return path.with_suffix(".json")


def _versions(name: str) -> dict[str, str]:
    out = {"cxr_curriculum": __version__, "torch": torch.__version__}
    for pkg in ("torchvision", "timm") if name.startswith("timm:") else ("torchvision",):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "not installed"
    return out


def save_backbone(backbone: Backbone, path: Path, meta: dict[str, Any]) -> Path:
    """Implementation of :meth:`Backbone.save`; returns the sidecar path."""
    if path.suffix == ".json":
        raise ValueError(f"{path}: the weights file cannot end in .json (that is the sidecar)")
    info = {
        "format": FORMAT,
        "name": backbone.name,
        "in_chans": backbone.in_chans,
        "num_features": backbone.num_features,
        "input_norm": list(backbone.input_norm) if backbone.input_norm is not None else None,
        "initial_weights": backbone.weights_source,
        "versions": _versions(backbone.name),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "meta": meta,
    }
    try:
        text = json.dumps(info, indent=2, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must be JSON-serialisable: {err}") from err
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt", _HEADER_KEY: text})
    sidecar = sidecar_path(path)
    sidecar.write_text(text + "\n", encoding="utf-8")
    return sidecar


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of ``path``, or the copy in its safetensors header if the JSON is absent."""
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        info = json.loads(sidecar.read_text(encoding="utf-8"))
    elif path.is_file() and path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get(_HEADER_KEY)
        if header is None:
            raise FileNotFoundError(
                f"no sidecar {sidecar} and no '{_HEADER_KEY}' header in {path}; "
                "was it written by Backbone.save?"
            )
        info = json.loads(header)
    else:
        raise FileNotFoundError(f"neither {sidecar} nor a .safetensors file {path} exists")
    if info.get("format") != FORMAT:
        raise ValueError(f"{sidecar}: format {info.get('format')!r} is not {FORMAT!r}")
    return dict(info)


def load_backbone(cls: type[B], path: Path) -> B:
    """Implementation of :meth:`Backbone.from_file`."""
    info = read_sidecar(path)
    norm = info.get("input_norm")
    backbone = cls(
        info["name"],
        in_chans=int(info["in_chans"]),
        weights=path,
        input_norm=(float(norm[0]), float(norm[1])) if norm is not None else None,
    )
    if backbone.num_features != info["num_features"]:
        raise ValueError(
            f"{path}: sidecar says num_features={info['num_features']}, "
            f"the rebuilt {info['name']!r} has {backbone.num_features}"
        )
    backbone.weights_source = info.get("initial_weights")
    return backbone
