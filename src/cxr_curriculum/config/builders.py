"""Objects described in a config file: SSL methods, stage options and data sources.

Each builder reads one :class:`~cxr_curriculum.config.keys.Table` and returns the same
object the Python API takes (an ``SSLMethod``, ``Stage`` keyword arguments, a
``Dataset``: :mod:`~cxr_curriculum.config.data_sources`), so a run from a file and a
run from Python are the same run. Method hyper-parameters are checked against the
method's constructor signature.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from cxr_curriculum.config.data_sources import DATA_SOURCES, build_data
from cxr_curriculum.config.keys import ConfigError, Table, check_type
from cxr_curriculum.curriculum import Stage
from cxr_curriculum.methods import METHODS

__all__ = [
    "DATA_SOURCES",
    "STAGE_SETTINGS",
    "build_data",
    "build_method",
    "check_stage",
    "check_stage_defaults",
    "read_device",
    "stage_options",
]

# read by the stage table itself (method, steps, epochs, name), or not expressible in a
# file (data, and the monitor and divergence objects)
_NOT_OPTIONS = {"method", "data", "steps", "epochs", "name", "monitor", "divergence"}

#: :class:`~cxr_curriculum.Stage` settings a config file may set in ``[defaults]`` or a stage.
STAGE_SETTINGS = tuple(f.name for f in dataclasses.fields(Stage) if f.name not in _NOT_OPTIONS)


#: One image: enough for a Stage to check its settings without reading the real data.
_PROBE_DATA = TensorDataset(torch.zeros(1, 1, 8, 8))


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
    table.finish(allowed=params)  # an unknown key is told every hyper-parameter
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from err


def stage_options(table: Table) -> dict[str, Any]:
    """:class:`~cxr_curriculum.Stage` settings present in ``table`` (``lr``, ``optimizer``...).

    Every name of :data:`STAGE_SETTINGS` counts as read, so a later ``table.finish()``
    suggests the closest of them for a misspelt key and lists them all.
    """
    out = {}
    fields = {f.name: f for f in dataclasses.fields(Stage)}
    for name in STAGE_SETTINGS:
        present = name in table
        if name == "optimizer":
            value = table.get(name, "str", choices=("sgd", "adamw", "lars"))
        else:
            kinds = _kinds_of(fields[name].type, fields[name].default)
            value = table.get(name, kinds)
            if present:
                value = _checked(table.key(name), value, kinds)
        if present:
            out[name] = value
    return out


def check_stage(
    path: str, method: nn.Module, steps: int, name: str | None, options: dict[str, Any]
) -> None:
    """Check settings the way :class:`~cxr_curriculum.Stage` will (a study builds its
    stages only when an arm trains), so ``--check`` refuses what a run would.

    Raises:
        ConfigError: ``"arms[1].stages[0]: lr must be a finite number >= 0 or None; ..."``.
    """
    try:
        Stage(method, _PROBE_DATA, steps=steps, name=name, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from err


def check_stage_defaults(table: Table, options: dict[str, Any]) -> None:
    """Check each ``[defaults]`` setting on its own, so an error names ``defaults.<key>``.

    Raises:
        ConfigError: ``"defaults.lr: lr must be a finite number >= 0 or None; got -1.0"``.
    """
    probe = METHODS["rotation"]()  # any method: Stage checks its settings one by one
    for key, value in options.items():
        check_stage(table.key(key), probe, 1, None, {key: value})


def read_device(table: Table, name: str = "device") -> str | None:
    """A device string torch accepts (``"cpu"``, ``"cuda:1"``...), or ``None`` if absent.

    Raises:
        ConfigError: ``"curriculum.device: Expected one of cpu, cuda, ... got: blah"``.
    """
    device = table.get(name, "str")
    if device is not None:
        try:
            torch.device(device)
        except RuntimeError as err:
            raise ConfigError(f"{table.key(name)}: {err}") from err
    return device
