"""The pretraining images of a config file's ``[data]`` table.

``source`` names one of :data:`DATA_SOURCES`; each reads its own keys (any other key is
refused with the allowed ones listed):

* ``"folder"``: every image (PNG, JPEG, DICOM) under ``root``
  (:class:`~cxr_curriculum.data.UnlabeledImages`; mask and annotation folders skipped);
* ``"table"``: the images of a label table (``table``, ``root``, ``path_column``,
  ``patient_column``, ``split_column``, ``split``; labels are ignored) as a
  :class:`~cxr_curriculum.data.LabelTable`, whose patient ids let a study remove its
  test patients;
* ``"kermany"`` (``root``, ``split``), ``"covid"``, ``"nih"``, ``"shenzhen"`` (``root``):
  a dataset of the shared data root with its patient ids; ``"sample"`` (``split``): the
  bundled Kermany sample;
* ``"pool"``: several of the above, listed as ``[[data.sources]]`` sub-tables, as one
  pool; without ``sources``, the legacy shared pool (Kermany's train split, the covid
  collection, the NIH subset and Shenzhen/Montgomery under ``root`` or the data root).

Every source takes ``stride`` (keep every n-th image) and ``cache`` (a
:class:`~cxr_curriculum.data.DecodedCache` folder), ``cache_long_side``,
``cache_workers``. A study file's ``[data]`` also takes ``exclude_test_patients``
(default true): every task's test patients are removed from the pool before pretraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from cxr_curriculum.config.keys import ConfigError, Table

__all__ = ["DATA_SOURCES", "build_data"]

#: Data sources a config's ``[data]`` table (or a pool's sub-table) may name.
DATA_SOURCES = ("covid", "folder", "kermany", "nih", "pool", "sample", "shenzhen", "table")


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


def _existing(table: Table, name: str, value: str | None, default: Path | None) -> Path:
    """``value`` (or ``default``) as a path that exists; a ConfigError naming the key if not."""
    if value is None:
        if default is None:
            raise ConfigError(f"{table.key(name)}: required key is missing")
        if not default.exists():
            raise ConfigError(
                f"{table.key(name)}: not set, and the default {default} does not exist; "
                f"set {name} = ..."
            )
        return default
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"{table.key(name)}: {path} not found")
    return path


def _source(table: Table, source: str) -> Dataset[Any]:
    """The dataset of one source (its keys read from ``table``)."""
    from cxr_curriculum import data as d

    root_value = None if source == "sample" else table.get("root", "str")
    if source == "sample":
        split = table.get("split", "str", "train", choices=("train", "test"))
        return d.KermanyPneumonia(d.bundled_sample_root(), split=split)
    if source == "table":
        file = _existing(table, "table", table.get("table", "str", required=True), None)
        root = _existing(table, "root", root_value, file.parent)
        options = {
            "path_column": table.get("path_column", "str", required=True),
            "patient_column": table.get("patient_column", "str"),
            "split_column": table.get("split_column", "str"),
            "split": table.get("split", "str"),
        }
        return d.LabelTable(file, root, **options)
    folders = {"kermany": "kermany-pneumonia", "covid": "covid-chestxray",
               "nih": "nih-chestxray14-subset", "shenzhen": "shenzhen-montgomery-tb"}  # fmt: skip
    if source == "folder":
        return d.UnlabeledImages(_existing(table, "root", root_value, None))
    if source == "pool":
        return _pool(table, root_value)
    root = _existing(table, "root", root_value, d.data_root() / folders[source])
    if source == "kermany":
        split = table.get("split", "str", "train", choices=("train", "test"))
        return d.KermanyPneumonia(root, split=split)
    if source == "covid":
        return d.CovidChestXray(root)
    if source == "nih":
        return d.NIHChestXray14(root)
    return d.ShenzhenMontgomery(root)


def _pool(table: Table, root_value: str | None) -> Dataset[Any]:
    from cxr_curriculum.data import DecodedCache, ImagePool, data_root

    subs = table.tables("sources")
    if not subs:
        return _shared_pool(_existing(table, "root", root_value, data_root()))
    if root_value is not None:
        raise ConfigError(f"{table.key('root')}: a pool with sources takes root per source")
    parts = [_one(t, in_pool=True) for t in subs]
    if any(isinstance(p, DecodedCache) for p in parts):
        return ConcatDataset(parts)  # cached sources serve their own decoded images
    return ImagePool(*parts)


def _one(table: Table, *, in_pool: bool) -> Dataset[Any]:
    choices = [s for s in DATA_SOURCES if not (in_pool and s == "pool")]
    source = table.get("source", "str", required=True, choices=choices)
    stride = table.get("stride", "int", 1)
    if stride < 1:
        raise ConfigError(f"{table.key('stride')}: expected an integer >= 1, got {stride}")
    cache = table.get("cache", "str")
    long_side = table.get("cache_long_side", "int", 512)
    cache_workers = table.get("cache_workers", "int", 0)
    try:
        data = _source(table, source)
    except (FileNotFoundError, OSError) as err:
        raise ConfigError(f"{table.path}: cannot read the {source!r} data: {err}") from err
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{table.path}: {err}") from err
    table.finish()
    if stride > 1:
        data = Subset(data, range(0, len(data), stride))  # type: ignore[arg-type]
    if cache is not None:
        from cxr_curriculum.data import DecodedCache

        if isinstance(data, ConcatDataset):
            raise ConfigError(
                f"{table.key('cache')}: this pool's sources are cached one by one; cache "
                "either the sources or the pool"
            )
        data = DecodedCache(data, cache, long_side, num_workers=cache_workers)
    return data


def build_data(table: Table) -> Dataset[Any]:
    """The unlabelled pretraining images of a ``[data]`` table (see the module docstring).

    Raises:
        ConfigError: Unknown source or key, a missing required key, or a path or data
            that cannot be read (the key is named).
    """
    return _one(table, in_pool=False)
