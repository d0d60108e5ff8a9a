"""The keys of a study config file and the :class:`~cxr_curriculum.study.Study` they build.

Top level: ``output``, ``pretrain_dir``, ``seeds``, ``arch``, ``batch_size``,
``image_size``, ``threads``, ``device``, ``workers``; tables ``[data]`` (the pretraining
pool, :mod:`~cxr_curriculum.config.data_sources`, plus ``exclude_test_patients``),
``[[arms]]`` (``name``, ``start``: ``"random"``, ``"imagenet"`` or ``"file:PATH"``,
``[[arms.stages]]``), ``[[tasks]]`` (``kind``: a key of
:data:`~cxr_curriculum.study.TASK_KINDS`, whose builder's keyword arguments are the
table's other keys, or ``"python:package.module:Class"`` with that class's constructor
arguments) and ``[evaluation]`` (``fractions``, ``protocols`` and the
:class:`~cxr_curriculum.study.Protocols` settings, including ``faithfulness``, a list
of perturbation metrics for the attention record).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxr_curriculum.backbones import check_backbone
from cxr_curriculum.config.builders import (
    build_data,
    build_method,
    check_stage,
    read_device,
    stage_options,
)
from cxr_curriculum.config.keys import ConfigError, Table
from cxr_curriculum.study import (
    PROTOCOLS,
    Arm,
    ArmStage,
    Protocols,
    Study,
    Task,
)
from cxr_curriculum.study import TASK_KINDS as _BUILDERS
from cxr_curriculum.study.task_kinds import DEFAULT_FOLDERS, custom_task_class

__all__ = ["TASK_KINDS", "study_from_table"]

#: Task kinds a ``[[tasks]]`` table may name (besides ``"python:package.module:Class"``).
TASK_KINDS = tuple(sorted(_BUILDERS))
_CUSTOM = "python:package.module:Class"
#: Options that name a file or folder: checked to exist when the file is read.
_PATH_OPTIONS = ("root", "table", "csv_file", "valid_csv")


def _arm(table: Table) -> Arm:
    name = table.get("name", "str", required=True)
    start = table.get("start", "str", "random")
    if start not in ("random", "imagenet") and not start.startswith("file:"):
        raise ConfigError(
            f"{table.key('start')}: expected one of ['random', 'imagenet', 'file:PATH'], "
            f"got {start!r}"
        )
    if start.startswith("file:") and not Path(start[len("file:") :]).is_file():
        raise ConfigError(f"{table.key('start')}: file {start[len('file:') :]!r} not found")
    stages = []
    for t in table.tables("stages"):
        method = build_method(t.get("method", ["str", "table"], required=True), t.key("method"))
        steps = t.get("steps", "int", required=True)
        stage_name = t.get("name", "str")
        options = stage_options(t)
        t.finish()
        # the Stage is built only when the arm trains: check its settings now
        check_stage(t.path, method, steps, stage_name, options)
        try:
            stages.append(ArmStage(method, steps, stage_name, options))
        except ValueError as err:
            raise ConfigError(f"{t.path}: {err}") from err
    table.finish()
    try:
        return Arm(name, stages, start)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{table.path}: {err}") from err


def _option_kind(annotation: Any) -> str:
    """Config kind of a builder parameter from its annotation (``"list"``: of strings)."""
    text = str(annotation)
    if "Sequence[str]" in text or "list[str]" in text or "tuple[str" in text:
        return "list"
    for prefix, kind in (("bool", "bool"), ("float", "number"), ("int", "int")):
        if text.startswith(prefix):
            return kind
    return "str"


def _options(table: Table, function: Callable[..., Any]) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments of ``function`` present in ``table`` (typed), and all names."""
    params = [
        p
        for p in inspect.signature(function).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    out: dict[str, Any] = {}
    for p in params:
        if p.name not in table:
            if p.default is inspect.Parameter.empty:  # names the key (or a typo of it)
                table.get(p.name, _option_kind(p.annotation), required=True)
            continue
        kind = _option_kind(p.annotation)
        if kind == "list":
            value = table.get(p.name, ["list", "str"])
            out[p.name] = [value] if isinstance(value, str) else table.list_of(p.name, "str")
        else:
            out[p.name] = table.get(p.name, kind)
    return out, [p.name for p in params]


def _check_paths(table: Table, kind: str, options: dict[str, Any]) -> None:
    """Refuse a path option that does not exist, naming the key (also a default root)."""
    from cxr_curriculum.data import data_root

    for name in _PATH_OPTIONS:
        value = options.get(name)
        sample = kind == "kermany" and value == "sample"
        if isinstance(value, str) and not sample and not Path(value).exists():
            raise ConfigError(f"{table.key(name)}: {value} not found")
    if "root" not in options and kind in DEFAULT_FOLDERS:
        default = data_root() / DEFAULT_FOLDERS[kind]
        if not default.exists():
            raise ConfigError(
                f"{table.key('root')}: not set, and the default folder {default} does not "
                "exist; set root = ... (or CXR_DATA_ROOT)"
            )


def _task(table: Table) -> Task:
    kind = table.get("kind", "str", required=True)
    if kind.startswith("python:"):
        try:
            builder: Callable[..., Task] = custom_task_class(kind)
        except ValueError as err:
            raise ConfigError(f"{table.key('kind')}: {err}") from err
    elif kind in _BUILDERS:
        builder = _BUILDERS[kind]
    else:
        raise ConfigError(
            f"{table.key('kind')}: expected one of {[*TASK_KINDS, _CUSTOM]}, got {kind!r}"
        )
    if kind.startswith("python:"):
        known = [p for p in inspect.signature(builder).parameters if p != "self"]
        options = {k: table.get(k, ["str", "int", "number", "bool", "list", "table"])
                   for k in known if k in table}  # fmt: skip
    else:
        options, known = _options(table, builder)
        _check_paths(table, kind, options)
    table.finish(allowed=known)
    try:
        return builder(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{table.path}: {err}") from err


def _protocols(table: Table) -> tuple[list[float], list[str], Protocols]:
    fractions = table.list_of("fractions", "number", [0.01, 0.1, 1.0])
    protocols = table.list_of("protocols", "str", list(PROTOCOLS))
    for i, p in enumerate(protocols):
        if p not in PROTOCOLS:
            raise ConfigError(
                f"{table.key('protocols')}[{i}]: expected one of {PROTOCOLS}, got {p!r}"
            )
    kw: dict[str, Any] = {}
    for field in dataclasses.fields(Protocols):
        if isinstance(field.default, tuple):  # faithfulness: a list of names
            names = table.list_of(field.name, "str")
            if names is not None:
                kw[field.name] = tuple(names)
            continue
        kind = "number" if isinstance(field.default, float) else "int"
        value = table.get(field.name, kind)
        if value is not None:
            kw[field.name] = value
    table.finish()
    try:
        return fractions, protocols, Protocols(**kw)
    except ValueError as err:
        raise ConfigError(f"{table.path}: {err}") from err


def study_from_table(top: Table) -> Study:
    """Build a :class:`Study` from a study file's top-level table.

    Raises:
        ConfigError: On any invalid key or value (the key path is named).
    """
    output = top.get("output", "str", required=True)
    pretrain_dir = top.get("pretrain_dir", "str")
    seeds = top.list_of("seeds", "int", required=True)
    arch = top.get("arch", "str", "resnet18")
    batch_size = top.get("batch_size", "int", 32)
    image_size = top.get("image_size", "int", 64)
    try:  # a wrong name, or a size a ViT cannot take, fails at --check, not in a worker
        check_backbone(arch, image_size)
    except ValueError as err:
        raise ConfigError(f"{top.key('arch')}: {err}") from err
    threads = top.at_least("threads", 1)  # torch.set_num_threads refuses 0 and below
    device = read_device(top)
    workers = top.at_least("workers", 0, 0) or 0
    arms = [_arm(t) for t in top.tables("arms", required=True)]
    tasks = [_task(t) for t in top.tables("tasks", required=True)]
    data, exclude = None, True
    if "data" in top:
        data_table = top.table("data")
        exclude = data_table.get("exclude_test_patients", "bool", True)
        data = build_data(data_table)
    fractions, protocols, settings = _protocols(top.table("evaluation"))
    top.finish()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    study = Study(
        arms,
        seeds,
        tasks,
        output,
        pretrain_data=data,
        pretrain_dir=pretrain_dir,
        arch=arch,
        batch_size=batch_size,
        image_size=image_size,
        fractions=fractions,
        protocols=protocols,
        protocol_settings=settings,
        device=device,
        workers=workers,
        exclude_test_patients=exclude,
    )
    return study
