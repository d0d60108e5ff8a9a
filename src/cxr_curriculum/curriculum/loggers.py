"""Sending metrics where researchers look: TensorBoard, or any callable.

Beside ``metrics.csv`` and ``metrics.json`` (:mod:`~cxr_curriculum.curriculum.metrics_log`),
a :class:`~cxr_curriculum.Curriculum` (``loggers=[...]``) and a
:class:`~cxr_curriculum.study.Study` hand every logged row to each *metric logger*: any
callable ``logger(group, metrics, step)`` where ``group`` names the series (a stage's
folder, ``stage00-rotation``; a study prefixes it with ``pretrain/<arm>/seed<k>/``),
``metrics`` maps names to floats (``loss``, ``lr``, ``embedding_std``, ``images_per_s``,
a monitor's ``knn_auroc``, ...) and ``step`` is the curriculum's global optimiser step
(the steps of earlier stages plus the stage's own). A logger may also have ``flush()``
and ``close()``; the Curriculum flushes its loggers at the end of each stage.

:class:`TensorBoardLogger` writes TensorBoard event files with
``torch.utils.tensorboard`` (optional extra ``tensorboard``, imported only when one is
created), tag ``<group>/<name>``, so that ``tensorboard --logdir DIR`` shows one chart
per metric and stage. Like lightly's and PyTorch Lightning's loggers, nothing is sent
from processes other than rank 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TENSORBOARD_EXTRA_HINT", "MetricLogger", "TensorBoardLogger", "prefixed", "send"]

#: A metric logger: ``logger(group, metrics, step)``.
MetricLogger = Callable[[str, Mapping[str, float], int], object]

#: How to install TensorBoard support.
TENSORBOARD_EXTRA_HINT = 'pip install "cxr_curriculum[tensorboard]"'


class TensorBoardLogger:
    """Write metrics as TensorBoard scalars (``torch.utils.tensorboard.SummaryWriter``).

    Args:
        log_dir: Folder of the event files (``tensorboard --logdir log_dir``).
        flush_secs: How often the writer flushes to disk, in seconds.

    Raises:
        ImportError: TensorBoard is not installed (the message names the extra).

    Example::

        tb = TensorBoardLogger("runs/tb")
        Curriculum(stages, "runs/c1", loggers=[tb, print]).fit(backbone)
        tb.close()
    """

    def __init__(self, log_dir: str | os.PathLike[str], *, flush_secs: int = 10) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "TensorBoardLogger needs TensorBoard, the optional 'tensorboard' extra: "
                f"{TENSORBOARD_EXTRA_HINT}"
            ) from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=flush_secs)

    def __call__(self, group: str, metrics: Mapping[str, float], step: int) -> None:
        """Add one scalar per metric, tag ``<group>/<name>``."""
        for name, value in metrics.items():
            self.writer.add_scalar(f"{group}/{name}" if group else name, value, step)

    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()

    def __repr__(self) -> str:
        return f"TensorBoardLogger({str(self.log_dir)!r})"


class _Prefixed:
    """A logger whose groups are prefixed with ``prefix/`` (keeps ``flush``/``close``)."""

    def __init__(self, logger: MetricLogger, prefix: str) -> None:
        self.logger, self.prefix = logger, prefix.strip("/")

    def __call__(self, group: str, metrics: Mapping[str, float], step: int) -> None:
        self.logger(f"{self.prefix}/{group}" if group else self.prefix, metrics, step)

    def flush(self) -> None:
        fn = getattr(self.logger, "flush", None)
        if callable(fn):
            fn()

    def close(self) -> None:
        fn = getattr(self.logger, "close", None)
        if callable(fn):
            fn()


def prefixed(loggers: Iterable[MetricLogger], prefix: str) -> list[MetricLogger]:
    """The same loggers, with ``prefix/`` put before every group."""
    return [_Prefixed(logger, prefix) for logger in loggers]


def check_loggers(loggers: Sequence[Any]) -> list[MetricLogger]:
    """Validate a ``loggers=`` argument (a sequence of callables).

    Raises:
        TypeError: An item is not callable (a string or path is not a logger: wrap a
            folder in :class:`TensorBoardLogger`).
    """
    if isinstance(loggers, (str, os.PathLike)) or callable(loggers):
        raise TypeError(
            "loggers must be a sequence of callables logger(group, metrics, step), e.g. "
            f"[TensorBoardLogger(dir)]; got {type(loggers).__name__}"
        )
    out = list(loggers)
    bad = [type(x).__name__ for x in out if not callable(x)]
    if bad:
        raise TypeError(
            "every logger must be callable as logger(group, metrics, step) (e.g. "
            f"TensorBoardLogger(dir)); got {', '.join(bad)}"
        )
    return out


def send(loggers: Sequence[MetricLogger], group: str, row: Mapping[str, Any], step: int) -> None:
    """Hand the numeric, finite values of ``row`` to every logger (others are skipped)."""
    if not loggers:
        return
    metrics = {
        k: float(v)
        for k, v in row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    for logger in loggers:
        logger(group, metrics, step)


def flush(loggers: Sequence[MetricLogger]) -> None:
    """Call ``flush()`` on the loggers that have one."""
    for logger in loggers:
        fn = getattr(logger, "flush", None)
        if callable(fn):
            fn()


def log_cell(
    loggers: Sequence[MetricLogger], then: Callable[[Any, dict[str, Any]], object] | None = None
) -> Callable[[Any, dict[str, Any]], None]:
    """An ``on_cell(key, record)`` callback for a study that logs each finished cell.

    Group ``cells/<task>/<metric>/<protocol>/<fraction>`` (e.g.
    ``cells/kermany/auroc/fine_tune/0.01``), metrics ``{<arm>: record["value"]}``, step
    ``key.seed``; then calls ``then(key, record)`` and flushes the loggers.
    """

    def on_cell(key: Any, record: dict[str, Any]) -> None:
        metric = record.get("metric", "value")
        group = f"cells/{key.task}/{metric}/{key.protocol}/{key.fraction:g}"
        send(loggers, group, {key.arm: record.get("value")}, int(key.seed))
        flush(loggers)
        if then is not None:
            then(key, record)

    return on_cell
