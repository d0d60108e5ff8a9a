"""Claims on units: which worker computes which (arm, seed), renewed by a heartbeat.

A worker claims a unit by creating ``<output>/claims/seed<k>-<arm>.json`` with
``os.open(..., O_CREAT | O_EXCL)`` while holding the folder's lock
(:class:`~cxr_curriculum.study.folder.StudyFolder`); the file names the worker
(``host:pid``), when it claimed the unit and what it is doing. While the worker works,
a heartbeat thread renews the claim every ``timeout / 10`` seconds: it rewrites the
file (atomically) when the status changed, else touches it. A claim whose file was not
renewed for ``timeout`` seconds (by its modification time; the machines' clocks must
agree to well within the timeout), or whose worker ran on this machine and is gone, is
**stale**: the next worker takes the unit over. Taking over happens under the folder's
lock after re-reading the claim, so two workers never both take over one stale claim.
A claim file that is cut short or garbled is treated as a claim of an unknown worker:
stale by its modification time, then set aside (the log says where) and replaced.

The heartbeat also watches the claim: if another worker took the unit over (this worker
was stopped for longer than the timeout), the claim is marked lost and the worker
abandons the unit at its next cell.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cxr_curriculum._artefacts import _write_error, atomic_write_bytes
from cxr_curriculum.study.claim_info import (
    ClaimInfo,
    encode_claim,
    process_start,
    read_claim,
    worker_host,
)
from cxr_curriculum.study.folder import StudyFolder
from cxr_curriculum.study.heartbeat import Claim

__all__ = ["DEFAULT_CLAIM_TIMEOUT", "ClaimBoard", "check_claim_timeout"]

#: Seconds without a heartbeat after which a claim is stale (``--claim-timeout``).
DEFAULT_CLAIM_TIMEOUT = 300.0


def check_claim_timeout(timeout: float) -> float:
    """A claim timeout in seconds, checked: a finite number > 0 (the heartbeat renews a
    claim every tenth of it). One rule for :class:`ClaimBoard`, ``launch_study`` and the
    command line's ``--claim-timeout``.

    Raises:
        ValueError: ``"claim timeout must be a finite number > 0 seconds; got 0"``.
    """
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"claim timeout must be a finite number > 0 seconds; got {timeout}")
    return float(timeout)


class ClaimBoard:
    """The claims of one study folder.

    Args:
        folder: The study folder.
        timeout: Seconds without a heartbeat after which a claim is stale.
    """

    def __init__(self, folder: StudyFolder, timeout: float = DEFAULT_CLAIM_TIMEOUT) -> None:
        self.folder, self.timeout = folder, check_claim_timeout(timeout)
        self.interval = self.timeout / 10
        self.host, self.pid = worker_host(), os.getpid()
        self.worker = f"{self.host}:{self.pid}"

    def path(self, name: str) -> Path:
        """The claim file of unit ``name`` (``seed<k>/<arm folder>``)."""
        return self.folder.claims / f"{name.replace('/', '-')}.json"

    def read(self, name: str) -> ClaimInfo | None:
        """The current claim of unit ``name``, if any."""
        return read_claim(self.path(name))

    def acquire(self, name: str, status: dict[str, Any] | None = None) -> Claim | None:
        """Claim unit ``name``; ``None`` if a live worker holds it.

        A stale claim is replaced (a damaged one is set aside first) and the returned
        :class:`Claim` names it in ``taken_over``.

        Raises:
            ArtefactWriteError: The claims folder cannot be written.
        """
        path = self.path(name)
        payload = {
            "format": 1,
            "unit": name,
            "worker": self.worker,
            "host": self.host,
            "pid": self.pid,
            "pid_start": process_start(self.pid),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "status": dict(status or {}),
            "token": uuid.uuid4().hex,
        }
        with self.folder.lock():
            old = read_claim(path)
            if old is not None and not old.stale(self.timeout):
                return None
            if old is not None and old.damaged:
                self.folder.set_aside(path, f"is a damaged claim ({old.damaged})")
            if old is not None and not old.damaged:
                atomic_write_bytes(path, encode_claim(payload), what="unit claim")
            elif not self._create(path, encode_claim(payload)):
                return None
        claim = Claim(self.folder, self.interval, path, payload)
        claim.taken_over = old
        return claim

    def discard_stale(self, name: str) -> bool:
        """Delete the claim of a finished unit if it is stale (its worker died after the
        unit's last cell); ``True`` if one was deleted."""
        with self.folder.lock():
            info = read_claim(self.path(name))
            if info is None or not info.stale(self.timeout):
                return False
            self.path(name).unlink()
        return True

    def _create(self, path: Path, data: bytes) -> bool:
        """Create ``path`` exclusively (``O_CREAT | O_EXCL``); ``False`` if it exists."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as err:
            raise _write_error(path, err, "unit claim", len(data)) from err
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            with contextlib.suppress(OSError):
                path.unlink()
            raise _write_error(path, err, "unit claim", len(data)) from err
        return True
