"""Where the real chest X-ray data lives.

The rule, in order: the ``CXR_DATA_ROOT`` environment variable (a relative value is
taken from the current directory); else ``default`` (``../shared/data``) relative to the
project folder when the package runs from a source or editable checkout (the folder
holding ``pyproject.toml`` and ``src/cxr_curriculum``), so that the same data is found
from any working directory; else, for an installed wheel, relative to the current
directory.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

__all__ = ["DATA_ROOT_ENV", "DEFAULT_DATA_ROOT", "data_root", "project_root"]

#: Environment variable that points at the folder of public CXR datasets.
DATA_ROOT_ENV = "CXR_DATA_ROOT"
#: The default folder, relative to the project (or to the current directory).
DEFAULT_DATA_ROOT = "../shared/data"


@lru_cache(maxsize=1)
def project_root() -> Path | None:
    """The source checkout this package runs from, or ``None`` for an installed wheel.

    ``<project>/src/cxr_curriculum/data/_root.py``: the project is the folder three levels
    above this file's package folder, if it holds ``pyproject.toml``.
    """
    here = Path(__file__).resolve()
    project = here.parents[3]
    if (project / "pyproject.toml").is_file() and here.parents[2].name == "src":
        return project
    return None


def data_root(default: str | os.PathLike[str] = DEFAULT_DATA_ROOT) -> Path:
    """Return the folder that holds the public CXR datasets.

    ``CXR_DATA_ROOT`` wins; otherwise ``default`` (``../shared/data``) is taken relative
    to the project folder of a source or editable checkout (:func:`project_root`), else
    relative to the current working directory (an installed wheel). An absolute
    ``default`` is used as it is. The path is returned whether or not it exists; callers
    decide whether a missing folder is an error or a skip.

    Returns:
        The resolved path.
    """
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    path = Path(default).expanduser()
    project = project_root()
    if not path.is_absolute() and project is not None:
        path = project / path
    return path.resolve()
