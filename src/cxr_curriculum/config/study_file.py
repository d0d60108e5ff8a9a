"""The keys of a study config file and the :class:`~cxr_curriculum.study.Study` they build.

Top level: ``output``, ``pretrain_dir``, ``seeds``, ``arch``, ``batch_size``,
``image_size``, ``threads``, ``device``, ``workers``; tables ``[data]`` (the pretraining
pool), ``[[arms]]`` (``name``, ``start``, ``[[arms.stages]]``), ``[[tasks]]`` (``kind``,
``name``, ``root``; Kermany: ``stride``, ``cache``, ``cache_long_side``,
``cache_workers``; NIH: ``csv_file``, ``test_share``, ``split_seed``, ``min_positives``) and
``[evaluation]`` (``fractions``, ``protocols`` and
the :class:`~cxr_curriculum.study.Protocols` settings).
"""

from __future__ import annotations

import dataclasses

from cxr_curriculum.backbones import check_backbone
from cxr_curriculum.config.builders import build_data, build_method, stage_options
from cxr_curriculum.config.keys import ConfigError, Table
from cxr_curriculum.study import (
    PROTOCOLS,
    Arm,
    ArmStage,
    KermanyTask,
    NIHFindingsTask,
    Protocols,
    Study,
    Task,
)

__all__ = ["TASK_KINDS", "study_from_table"]

#: Task kinds a ``[[tasks]]`` table may name.
TASK_KINDS = ("kermany", "nih")


def _arm(table: Table) -> Arm:
    name = table.get("name", "str", required=True)
    start = table.get("start", "str", "random", choices=("random", "imagenet"))
    stages = []
    for t in table.tables("stages"):
        method = build_method(t.get("method", ["str", "table"], required=True), t.key("method"))
        steps = t.get("steps", "int", required=True)
        stage_name = t.get("name", "str")
        options = stage_options(t)
        t.finish()
        try:
            stages.append(ArmStage(method, steps, stage_name, options))
        except ValueError as err:
            raise ConfigError(f"{t.path}: {err}") from err
    table.finish()
    try:
        return Arm(name, stages, start)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{table.path}: {err}") from err


def _task(table: Table) -> Task:
    kind = table.get("kind", "str", required=True, choices=TASK_KINDS)
    name = table.get("name", "str", kind)
    root = table.get("root", "str")
    if kind == "nih":
        csv_file = table.get("csv_file", "str")
        share = table.get("test_share", "number", 0.3)
        split_seed = table.get("split_seed", "int", 0)
        min_positives = table.get("min_positives", "int", 5)
        table.finish()
        try:
            return NIHFindingsTask(
                root,
                csv_file,
                test_share=share,
                split_seed=split_seed,
                min_positives=min_positives,
                name=name,
            )
        except ValueError as err:
            raise ConfigError(f"{table.path}: {err}") from err
    stride = table.get("stride", "int", 1)
    cache = table.get("cache", "str")
    long_side = table.get("cache_long_side", "int", 512)
    cache_workers = table.get("cache_workers", "int", 0)
    table.finish()
    if root == "sample":
        from cxr_curriculum.data import bundled_sample_root

        root = str(bundled_sample_root())
    try:
        return KermanyTask(
            root,
            name=name,
            stride=stride,
            cache_dir=cache,
            cache_long_side=long_side,
            cache_workers=cache_workers,
        )
    except ValueError as err:
        raise ConfigError(f"{table.path}: {err}") from err


def _protocols(table: Table) -> tuple[list[float], list[str], Protocols]:
    fractions = table.list_of("fractions", "number", [0.01, 0.1, 1.0])
    protocols = table.list_of("protocols", "str", list(PROTOCOLS))
    for i, p in enumerate(protocols):
        if p not in PROTOCOLS:
            raise ConfigError(
                f"{table.key('protocols')}[{i}]: expected one of {PROTOCOLS}, got {p!r}"
            )
    kw = {}
    for field in dataclasses.fields(Protocols):
        kind = "number" if isinstance(field.default, float) else "int"
        value = table.get(field.name, kind)
        if value is not None:
            kw[field.name] = value
    table.finish()
    return fractions, protocols, Protocols(**kw)


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
    threads = top.get("threads", "int")
    device = top.get("device", "str")
    workers = top.get("workers", "int", 0)
    arms = [_arm(t) for t in top.tables("arms", required=True)]
    tasks = [_task(t) for t in top.tables("tasks", required=True)]
    data = build_data(top.table("data")) if "data" in top else None
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
    )
    return study
