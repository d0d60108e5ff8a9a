"""Objects described in a config file: SSL methods, stage options and data sources.

Each builder reads one :class:`~cxr_curriculum.config.keys.Table` and returns the same
object the Python API takes (an ``SSLMethod``, ``Stage`` keyword arguments, a
``Dataset``), so a run from a file and a run from Python are the same run. Method
hyper-parameters are checked against the method's constructor signature.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset, Subset

from cxr_curriculum.config.keys import ConfigError, Table, check_type
from cxr_curriculum.curriculum import Stage
from cxr_curriculum.methods import METHODS

__all__ = ["DATA_SOURCES", "build_data", "build_method", "stage_options"]

#: Data sources a config's ``[data]`` table may name.
DATA_SOURCES = ("sample", "kermany", "pool", "folder")
_NOT_OPTIONS = {"method", "data", "steps", "epochs", "name", "monitor"}


def _kinds_of(annotation: Any, default: Any) -> list[str]:
    """Allowed config kinds for a parameter, from its default or its annotation."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    text = str(text)
    if isinstance(default, bool) or text.startswith("bool"):
        return ["bool"]
    if isinstance(default, float) or "float" in text:
        return ["number"]
    if isinstance(default, int) or text.startswith("int"):
        return ["int"]
    if isinstance(default, tuple) or "tuple" in text:
        return ["list"]
    return ["str"]


def _checked(path: str, value: Any, kinds: list[str]) -> Any:
    value = check_type(path, value, kinds)
    if kinds == ["list"]:
        return tuple(check_type(f"{path}[{i}]", v, ["number"]) for i, v in enumerate(value))
    return value


def build_method(value: Any, path: str) -> nn.Module:
    """An SSL method from ``"simclr"`` or ``{name = "simclr", temperature = 0.2}``.

    Raises:
        ConfigError: Unknown method or hyper-parameter, or a value of the wrong type.
    """
    table = Table({"name": value} if isinstance(value, str) else value, path)
    name = table.get("name", "str", required=True, choices=sorted(METHODS))
    cls = METHODS[name]
    params = {
        p.name: p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD
    }
    kwargs = {}
    for key, param in params.items():
        if key in table:
            kinds = _kinds_of(param.annotation, param.default)
            kwargs[key] = _checked(table.key(key), table.get(key, kinds), kinds)
    table.finish()
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from err


def stage_options(table: Table) -> dict[str, Any]:
    """:class:`~cxr_curriculum.Stage` settings present in ``table`` (``lr``, ``optimizer``...)."""
    out = {}
    for field in dataclasses.fields(Stage):
        if field.name in _NOT_OPTIONS or field.name not in table:
            continue
        kinds = _kinds_of(field.type, field.default)
        if field.name == "optimizer":
            out[field.name] = table.get(field.name, "str", choices=("sgd", "adamw", "lars"))
        else:
            out[field.name] = _checked(table.key(field.name), table.get(field.name, kinds), kinds)
    return out


def _shared_pool(root: Path) -> Dataset[Any]:
    """Every image under the data root except the Kermany test split (no labels used)."""
    from cxr_curriculum.data import (
        CovidChestXray,
        ImagePool,
        KermanyPneumonia,
        NIHChestXray14,
        ShenzhenMontgomery,
    )

    return ImagePool(
        KermanyPneumonia(root / "kermany-pneumonia", split="train"),
        CovidChestXray(root / "covid-chestxray"),
        NIHChestXray14(root / "nih-chestxray14-subset"),
        ShenzhenMontgomery(root / "shenzhen-montgomery-tb"),
    )


def build_data(table: Table) -> Dataset[Any]:
    """The unlabelled pretraining images of a ``[data]`` table.

    ``source``: ``"sample"`` (the bundled Kermany sample's train split), ``"kermany"``
    (``root``, ``split``), ``"pool"`` (every dataset under ``root`` or the data root
    except the Kermany test split, as ``benchmarks/bench_curriculum.py`` uses) or
    ``"folder"`` (every image under ``root``). ``stride`` keeps every n-th image.

    Raises:
        ConfigError: Unknown source, missing ``root`` for a folder, or unreadable data.
    """
    from cxr_curriculum.data import (
        KermanyPneumonia,
        UnlabeledImages,
        bundled_sample_root,
        data_root,
    )

    source = table.get("source", "str", required=True, choices=DATA_SOURCES)
    root_value = table.get("root", "str")
    stride = table.get("stride", "int", 1)
    if stride < 1:
        raise ConfigError(f"{table.key('stride')}: expected an integer >= 1, got {stride}")
    split = table.get("split", "str", "train", choices=("train", "test"))
    cache = table.get("cache", "str")
    long_side = table.get("cache_long_side", "int", 512)
    cache_workers = table.get("cache_workers", "int", 0)
    table.finish()
    try:
        if source == "sample":
            data: Dataset[Any] = KermanyPneumonia(bundled_sample_root(), split=split)
        elif source == "kermany":
            root = Path(root_value) if root_value else data_root() / "kermany-pneumonia"
            data = KermanyPneumonia(root, split=split)
        elif source == "pool":
            data = _shared_pool(Path(root_value) if root_value else data_root())
        else:
            if not root_value:
                raise ConfigError(f"{table.key('root')}: required for source = 'folder'")
            data = UnlabeledImages(root_value)
    except (FileNotFoundError, OSError) as err:
        raise ConfigError(f"{table.path}: cannot read the {source!r} data: {err}") from err
    if stride > 1:
        data = Subset(data, range(0, len(data), stride))  # type: ignore[arg-type]
    if cache is not None:
        from cxr_curriculum.data import DecodedCache

        data = DecodedCache(data, cache, long_side, num_workers=cache_workers)
    return data
