"""Arms of a study: named pretraining recipes, and the check that their budgets match.

An arm is what a study compares: a start (random weights, ImageNet, or a weights file:
a downloaded CXR foundation model, a previous curriculum's ``backbone.safetensors``) and
a list of SSL stages (empty: train from scratch). Comparisons are only fair at equal cost, so
every arm that pretrains must spend the same total budget: the same number of
optimiser steps and the same number of images seen (steps x batch size), however the
budget is split between stages (the curricula of arXiv 2301.10687 and arXiv 2112.12086
are compared with single-method baselines at equal epochs).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from cxr_curriculum.curriculum import Stage
from cxr_curriculum.curriculum.stage import method_config

__all__ = ["Arm", "ArmStage", "check_budgets"]

_STAGE_FIELDS = {f.name for f in dataclasses.fields(Stage)} - {"method", "data", "steps", "epochs"}


@dataclass(frozen=True, eq=False)
class ArmStage:
    """One stage of an arm: an SSL method and its share of the budget.

    Args:
        method: An ``SSLMethod`` instance (e.g. ``SimCLR()``); each (arm, seed) run gets
            a deep copy, so one object can serve every seed.
        steps: Optimiser steps of this stage.
        name: Stage name (default: the method's class name in lower case).
        options: Other :class:`~cxr_curriculum.Stage` settings (``lr``, ``optimizer``,
            ``batch_size``, ...); ``image_size`` and ``batch_size`` default to the study's.
    """

    method: nn.Module
    steps: int
    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"ArmStage.steps must be a positive int; got {self.steps!r}")
        unknown = sorted(set(self.options) - _STAGE_FIELDS)
        if unknown:
            raise ValueError(
                f"ArmStage.options has unknown Stage settings {unknown}; allowed: "
                f"{sorted(_STAGE_FIELDS)}"
            )

    def build(self, data: Dataset[Any], batch_size: int, image_size: int) -> Stage:
        """A :class:`Stage` on ``data`` with a fresh copy of the method."""
        kw: dict[str, Any] = {"batch_size": batch_size, "image_size": image_size}
        kw.update(self.options)
        return Stage(copy.deepcopy(self.method), data, steps=self.steps, name=self.name, **kw)

    def batch_size(self, default: int) -> int:
        """This stage's batch size (its own option or the study's)."""
        return int(self.options.get("batch_size", default))

    def config(self, batch_size: int, image_size: int) -> dict[str, Any]:
        """JSON-able settings (method hyper-parameters and stage options)."""
        opts = {"batch_size": batch_size, "image_size": image_size, **self.options}
        return {
            "name": self.name or type(self.method).__name__.lower(),
            "method": method_config(self.method),
            "steps": self.steps,
            **{k: opts[k] for k in sorted(opts)},
        }


@dataclass(frozen=True, eq=False)
class Arm:
    """A named pretraining recipe.

    Args:
        name: Unique name, used in folders and reports (letters, digits, ``-_>.+``).
        stages: The SSL stages in order; empty trains nothing (the scratch arm, or the
            ImageNet start as is).
        start: ``"random"`` weights, ``"imagenet"`` (needs the torchvision weights; a
            study records the arm as not measured when they cannot be loaded offline), or
            ``"file:PATH"``: a weights file for the study's architecture (a
            ``backbone.safetensors`` written by :meth:`~cxr_curriculum.Backbone.save`,
            checked against its sidecar, or a torchvision / timm state dict), loaded by
            :class:`~cxr_curriculum.Backbone` (``weights=PATH``). Its sha256 is part of
            every cell's settings; a study checks that it fits before any training.

    Raises:
        ValueError: A bad name or start, or a ``file:`` start whose file does not exist.
    """

    name: str
    stages: Sequence[ArmStage] = ()
    start: str = "random"

    def __post_init__(self) -> None:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_>.+")
        if not self.name or not set(self.name) <= allowed:
            raise ValueError(
                f"Arm.name must be non-empty and use letters, digits or -_>.+; got {self.name!r}"
            )
        is_file = isinstance(self.start, str) and self.start.startswith("file:")
        if not is_file and self.start not in ("random", "imagenet"):
            raise ValueError(
                f"Arm.start must be 'random', 'imagenet' or 'file:PATH'; got {self.start!r}"
            )
        if is_file and not Path(self.start[len("file:") :]).is_file():
            raise ValueError(
                f"Arm {self.name!r}: start file {self.start[len('file:') :]!r} does not exist"
            )
        object.__setattr__(self, "stages", tuple(self.stages))
        if not all(isinstance(s, ArmStage) for s in self.stages):
            raise TypeError(f"Arm {self.name!r}: stages must be ArmStage objects")

    @property
    def start_file(self) -> Path | None:
        """The weights file of a ``file:`` start, else None."""
        return Path(self.start[len("file:") :]) if self.start.startswith("file:") else None

    @property
    def folder(self) -> str:
        """File-system name of the arm (``->`` becomes ``_``)."""
        return self.name.replace("->", "_").replace(">", "_")

    def steps(self) -> int:
        """Total optimiser steps of the arm's stages."""
        return sum(s.steps for s in self.stages)

    def images(self, batch_size: int) -> int:
        """Total images seen: sum over stages of steps x batch size."""
        return sum(s.steps * s.batch_size(batch_size) for s in self.stages)

    def config(self, batch_size: int, image_size: int) -> dict[str, Any]:
        """JSON-able description used to detect a changed arm on resume.

        A ``file:`` start adds ``start_sha256``, the file's sha256 (read once), so a
        changed file is refused like a changed stage.
        """
        out: dict[str, Any] = {
            "name": self.name,
            "start": self.start,
            "stages": [s.config(batch_size, image_size) for s in self.stages],
        }
        if self.start_file is not None:
            from cxr_curriculum.study.starts import start_sha256

            out["start_sha256"] = start_sha256(self.start_file)
        return out


def check_budgets(arms: Sequence[Arm], batch_size: int) -> tuple[int, int]:
    """Check that every pretraining arm spends the same steps and images.

    Arms without stages (scratch, ImageNet as is) are references and exempt.

    Args:
        arms: The study's arms.
        batch_size: The study's default batch size.

    Returns:
        ``(steps, images)`` of the pretraining arms (``(0, 0)`` if there are none).

    Raises:
        ValueError: On duplicate arm names or a budget mismatch; the message names the
            arms and their budgets.
    """
    names = [a.name for a in arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"arm names must be unique; repeated: {dupes}")
    folders = [a.folder for a in arms]
    if len(set(folders)) != len(folders):
        raise ValueError(f"arm names collide once '->' is written as '_': {names}")
    budgets = {a.name: (a.steps(), a.images(batch_size)) for a in arms if a.stages}
    if len(set(budgets.values())) > 1:
        listing = ", ".join(f"{n}: {s} steps, {i} images" for n, (s, i) in budgets.items())
        raise ValueError(
            "pretraining budgets differ between arms (a fair comparison needs the same total "
            f"optimiser steps and images): {listing}"
        )
    return next(iter(budgets.values()), (0, 0))
