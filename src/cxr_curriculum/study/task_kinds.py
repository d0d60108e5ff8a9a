"""One builder per dataset kind: ``build_task("covid", ...)`` and ``[[tasks]] kind = "covid"``.

Every kind becomes a :class:`~cxr_curriculum.study.KermanyTask`, a
:class:`~cxr_curriculum.study.BinaryTask` or a
:class:`~cxr_curriculum.study.MultiLabelTask` over the dataset's loader in
:mod:`cxr_curriculum.data`. A builder's keyword arguments are the keys its ``[[tasks]]``
table accepts (a config file reads them from the signature, so the two cannot drift).
Official test splits are used where a dataset has one (Kermany's ``test/``, CheXpert's
``valid.csv``, MIMIC-CXR's split table, a table's split column); otherwise a
patient-level, label-stratified split with ``test_share`` and ``split_seed``, recorded
in the task's config so that a changed split is refused on resume. Every kind takes
``cache`` (a :class:`~cxr_curriculum.data.DecodedCache` folder), ``cache_long_side`` and
``cache_workers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cxr_curriculum.study.table_builders import (
    chexpert_task,
    mimic_task,
    padchest_task,
    table_task,
    vindr_task,
)
from cxr_curriculum.study.task_builders import (
    covid_task,
    kermany_task,
    nih_task,
    rsna_task,
    shenzhen_task,
    siim_task,
)
from cxr_curriculum.study.tasks import Task

__all__ = ["DEFAULT_FOLDERS", "TASK_KINDS", "build_task", "custom_task_class"]

#: The folder under :func:`~cxr_curriculum.data.data_root` each kind reads by default
#: (``table`` has none: its images are relative to the table's folder).
DEFAULT_FOLDERS: dict[str, str] = {
    "kermany": "kermany-pneumonia",
    "covid": "covid-chestxray",
    "nih": "nih-chestxray14-subset",
    "shenzhen": "shenzhen-montgomery-tb",
    "chexpert": "chexpert",
    "mimic": "mimic-cxr-jpg",
    "vindr": "vindr-cxr",
    "rsna": "rsna-pneumonia",
    "siim": "siim-acr-pneumothorax",
    "padchest": "padchest",
}


#: Builder per task kind (``build_task(kind, ...)``; a ``[[tasks]]`` table's ``kind``).
TASK_KINDS: dict[str, Callable[..., Task]] = {
    "kermany": kermany_task,
    "covid": covid_task,
    "nih": nih_task,
    "chexpert": chexpert_task,
    "mimic": mimic_task,
    "vindr": vindr_task,
    "rsna": rsna_task,
    "siim": siim_task,
    "padchest": padchest_task,
    "shenzhen": shenzhen_task,
    "table": table_task,
}


def build_task(kind: str, **options: Any) -> Task:
    """The task of ``kind`` with the builder's keyword ``options``.

    ``kind`` is a key of :data:`TASK_KINDS` or ``"python:package.module:Class"``, a
    :class:`~cxr_curriculum.study.Task` subclass of your own built with ``options`` as
    keyword arguments.

    Raises:
        ValueError: Unknown kind or option (the allowed ones are listed).
    """
    if kind.startswith("python:"):
        return custom_task_class(kind)(**options)
    if kind not in TASK_KINDS:
        raise ValueError(
            f"unknown task kind {kind!r}; allowed: {sorted(TASK_KINDS)} or "
            "'python:package.module:Class'"
        )
    return TASK_KINDS[kind](**options)


def custom_task_class(kind: str) -> type[Task]:
    """The class named by ``"python:package.module:Class"`` (imported; must subclass Task).

    Raises:
        ValueError: Malformed kind, module or class not found, or not a Task subclass.
    """
    import importlib

    spec = kind[len("python:") :]
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"kind {kind!r}: expected 'python:package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"kind {kind!r}: cannot import {module_name!r} ({err})") from err
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(
            f"kind {kind!r}: {module_name}.{class_name} is not a subclass of "
            "cxr_curriculum.study.Task"
        )
    return cls
