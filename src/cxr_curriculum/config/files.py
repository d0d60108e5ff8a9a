"""Pretraining runs and studies described in TOML files.

``python -m cxr_curriculum pretrain RUN.toml`` and ``python -m cxr_curriculum study
STUDY.toml`` read these files; :func:`load_run` and :func:`load_study` return the same
:class:`~cxr_curriculum.Curriculum` and :class:`~cxr_curriculum.study.Study` objects a
Python script would build, so both write the same checkpoints and reports. Relative
paths in a file are relative to the current directory (as on a command line). See
``docs/study.md`` for the keys.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cxr_curriculum.backbones import Backbone, check_backbone
from cxr_curriculum.config.builders import (
    build_data,
    build_method,
    check_stage_defaults,
    read_device,
    stage_options,
)
from cxr_curriculum.config.keys import ConfigError, Table
from cxr_curriculum.curriculum import Curriculum, Stage

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ImportError as err:
        raise ImportError(
            "reading config files on Python 3.10 needs tomli (pip install tomli)"
        ) from err

__all__ = ["PretrainRun", "load_run", "load_study", "read_toml"]


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        FileNotFoundError: If it does not exist.
        ConfigError: If it is not valid TOML (the message names the file and line).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from err


def _stage(table: Table, data: Any, defaults: dict[str, Any]) -> Stage:
    method = build_method(table.get("method", ["str", "table"], required=True), table.key("method"))
    steps, epochs = table.get("steps", "int"), table.get("epochs", "int")
    name = table.get("name", "str")
    options = {**defaults, **stage_options(table)}
    table.finish()
    try:
        return Stage(method, data, steps=steps, epochs=epochs, name=name, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{table.path}: {err}") from err


@dataclass
class PretrainRun:
    """A pretraining run read from a file: the curriculum and its starting backbone.

    Attributes:
        curriculum: The :class:`~cxr_curriculum.Curriculum` (checkpoints in ``output``).
        backbone: The starting backbone (random weights drawn after ``torch.manual_seed(seed)``).
        threads: ``torch.set_num_threads`` value, if the file sets one.
    """

    curriculum: Curriculum
    backbone: Backbone
    threads: int | None = None

    def run(self) -> Backbone:
        """Train every stage (resuming what the output folder holds); return the backbone."""
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return self.curriculum.fit(self.backbone)


def _curriculum_options(table: Table) -> dict[str, Any]:
    opts = {
        "checkpoint_every": table.get("checkpoint_every", "int", 200),
        "log_every": table.get("log_every", "int", 10),
        "deterministic": table.get("deterministic", "bool", False),
        "resume": table.get("resume", "str", "auto", choices=("auto", "must", "never", "continue")),
        "device": read_device(table),  # checked now, not when the run starts
    }
    amp = table.get("amp", ["bool", "str"])
    if amp is not None:
        if amp not in (True, False, "bf16", "fp16"):
            raise ConfigError(f"{table.key('amp')}: expected true, false, 'bf16' or 'fp16'")
        opts["amp"] = amp
    table.finish()
    return opts


def load_run(path: str | os.PathLike[str]) -> PretrainRun:
    """Read a pretraining config (``output``, ``seed``, ``[data]``, ``[[stages]]``, ...).

    Raises:
        ConfigError: On any invalid key or value; the message names the file and key.
    """
    top = Table(read_toml(path))
    try:
        output = top.get("output", "str", required=True)
        seed = top.get("seed", "int", 0)
        arch = top.get("arch", "str", "resnet18")
        threads = top.at_least("threads", 1)  # torch.set_num_threads refuses 0 and below
        data = build_data(top.table("data", required=True))
        default_table = top.table("defaults")
        defaults = stage_options(default_table)
        default_table.finish()
        check_stage_defaults(default_table, defaults)
        stages = [_stage(t, data, defaults) for t in top.tables("stages", required=True)]
        if not stages:
            raise ConfigError("stages: at least one [[stages]] table is needed")
        for size in sorted({None, *(stage.image_size for stage in stages)}, key=str):
            try:  # a wrong name, or a size a ViT cannot take, names the key (as in a study)
                check_backbone(arch, size)
            except ValueError as err:
                raise ConfigError(f"{top.key('arch')}: {err}") from err
        options = _curriculum_options(top.table("curriculum"))
        top.finish()
        curriculum = Curriculum(stages, checkpoint_dir=output, seed=seed, **options)
        torch.manual_seed(seed)  # the random start is part of the run: same seed, same weights
        backbone = Backbone(arch)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from err
    return PretrainRun(curriculum, backbone, threads)


def load_study(path: str | os.PathLike[str]) -> Any:
    """Read a study config and return the :class:`~cxr_curriculum.study.Study`.

    Raises:
        ConfigError: On any invalid key or value; the message names the file and key.
    """
    from cxr_curriculum.config.study_file import study_from_table

    try:
        study = study_from_table(Table(read_toml(path)))
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from err
    study.source = str(path)  # named by the output folder's design record
    return study
