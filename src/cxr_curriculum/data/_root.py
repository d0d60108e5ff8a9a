"""Where the real chest X-ray data lives."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ROOT_ENV", "data_root"]

#: Environment variable that points at the folder of public CXR datasets.
DATA_ROOT_ENV = "CXR_DATA_ROOT"


def data_root(default: str | os.PathLike[str] = "../shared/data") -> Path:
    """Return the folder that holds the public CXR datasets.

    The folder is read from the ``CXR_DATA_ROOT`` environment variable and defaults
    to ``../shared/data`` (relative to the current working directory), the layout used
    by this project's tests and benchmarks. The path is returned whether or not it
    exists; callers decide whether a missing folder is an error or a skip.

    Returns:
        The resolved path.
    """
    return Path(os.environ.get(DATA_ROOT_ENV, os.fspath(default))).expanduser().resolve()
