"""The shared files of a study's output folder: one lock, a place for damaged files.

Several processes may work in one study folder at once (``study FILE --worker`` on one
machine or on many that share a file system). Every change to a shared file (the
``index.json`` of finished cells, the claims of units, the design record) happens while
holding one exclusive ``fcntl.flock`` on ``<output>/.lock`` (the lock
:class:`~cxr_curriculum.data.DecodedCache` uses for its builds), after re-reading the
file, and ends with an atomic replace: two workers never lose each other's entries and
no reader ever sees half a file. The file system must honour ``flock`` between the
machines that share it (local disks, NFSv4, CephFS, GPFS, BeeGFS; Lustre when mounted
with ``-o flock``).

A damaged file (a cell whose bytes changed, a garbled claim, a cut-short index) is never
deleted: it is moved to ``<output>/set_aside/`` under its own relative path with the
time appended, and the log says which file went where.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from cxr_curriculum._artefacts import ArtefactWriteError, _write_error
from cxr_curriculum.data.shards import exclusive_lock

__all__ = ["SET_ASIDE", "StudyFolder", "StudyFolderError"]

logger = logging.getLogger("cxr_curriculum.study")

#: Sub-folder of the output folder that receives damaged files.
SET_ASIDE = "set_aside"


class StudyFolderError(ValueError):
    """The output folder holds work this study must not use or change.

    A finished cell computed with other settings, a folder first used by a different
    study file, a unit that a live worker holds. The message names the files or fields
    and what to do.
    """


class StudyFolder:
    """Paths of one study's shared files and the lock that serialises their changes.

    Args:
        root: The study's output folder (created on the first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.index = self.root / "index.json"
        self.claims = self.root / "claims"
        self.design = self.root / "design.json"

    @contextlib.contextmanager
    def lock(self, name: str = ".lock") -> Iterator[None]:
        """Hold the folder's exclusive lock for the ``with`` block (blocking).

        Args:
            name: The lock file; ``.lock`` (the default) guards the index, claims and
                design record and is held only for short updates; ``.report.lock``
                serialises report writing.

        Raises:
            ArtefactWriteError: The folder cannot be created or the lock file opened
                (read-only file system, no permission, full disk); the message names
                the folder and what to do.
        """
        stack = contextlib.ExitStack()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            stack.enter_context(exclusive_lock(self.root / name))
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err)
            out = ArtefactWriteError(
                err.errno or errno.EIO,
                f"cannot write in the study folder {self.root}: {reason.lower()} (opening its "
                f"lock file {name}); nothing was changed; make {self.root} writable (or choose "
                "another output folder) and run again",
            )
            out.filename = str(self.root / name)
            raise out from err
        with stack:
            yield

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the folder (or as given when it lies elsewhere)."""
        with contextlib.suppress(ValueError):
            return Path(path).relative_to(self.root).as_posix()
        return str(path)

    def set_aside(self, path: str | os.PathLike[str], reason: str) -> Path:
        """Move a damaged file to ``set_aside/`` and log where it went; return the new path.

        Call it while holding :meth:`lock`.

        Raises:
            ArtefactWriteError: The file cannot be moved (read-only or full folder).
        """
        path = Path(path)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        rel = self.relative(path)
        target = self.root / SET_ASIDE / f"{rel}.{stamp}"
        n = 1
        while target.exists():
            n += 1
            target = self.root / SET_ASIDE / f"{rel}.{stamp}-{n}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError as err:
            raise _write_error(target, err, "set-aside copy of a damaged file", None) from err
        logger.warning("%s %s; set aside to %s", path, reason, target)
        return target
