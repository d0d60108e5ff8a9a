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
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cxr_curriculum._artefacts import _write_error, atomic_write_bytes
from cxr_curriculum.study.folder import StudyFolder

__all__ = ["DEFAULT_CLAIM_TIMEOUT", "Claim", "ClaimBoard", "ClaimInfo", "worker_host"]

logger = logging.getLogger("cxr_curriculum.study")

#: Seconds without a heartbeat after which a claim is stale (``--claim-timeout``).
DEFAULT_CLAIM_TIMEOUT = 300.0
#: Environment variable naming this machine in claims (default: the host name).
HOST_VARIABLE = "CXR_STUDY_HOST"


def worker_host() -> str:
    """The name this worker gives its machine: ``$CXR_STUDY_HOST`` or the host name.

    Set ``CXR_STUDY_HOST`` when containers that share a folder also share a host name
    but not their process ids.
    """
    return os.environ.get(HOST_VARIABLE) or socket.gethostname()


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (``/proc``), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return None if fields and fields[0] == "Z" else fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` of this machine still runs (and is the one that claimed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    if Path("/proc/self/stat").exists() and now is None:
        return False  # a zombie: killed, not yet reaped
    return start is None or now is None or now == start


@dataclass(frozen=True)
class ClaimInfo:
    """A claim file as read from disk.

    Attributes:
        path: The claim file.
        age: Seconds since it was last renewed (its modification time).
        worker: ``host:pid`` of the claiming worker (``None`` if the file is damaged).
        host: The worker's machine (:func:`worker_host`).
        pid: The worker's process id.
        since: When the unit was claimed (ISO 8601, UTC).
        status: What the worker last reported (phase, stage and step, cell, ...).
        token: The claim's unique id.
        damaged: Why the file could not be read, or ``None``.
    """

    path: Path
    age: float
    worker: str | None = None
    host: str | None = None
    pid: int | None = None
    pid_start: str | None = None
    since: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    damaged: str | None = None

    def stale(self, timeout: float) -> bool:
        """Not renewed for ``timeout`` seconds, or its worker on this machine is gone."""
        if self.age > timeout:
            return True
        local = self.host is not None and self.host == worker_host()
        return local and self.pid is not None and not _alive(self.pid, self.pid_start)

    def describe(self) -> str:
        """One line for listings and logs."""
        if self.damaged:
            return f"damaged claim file ({self.damaged}), renewed {self.age:.0f} s ago"
        return f"claimed by {self.worker} since {self.since} (heartbeat {self.age:.0f} s ago)"


def read_claim(path: Path) -> ClaimInfo | None:
    """The claim in ``path``, or ``None`` if there is none."""
    try:
        raw = path.read_bytes()
        age = max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise ValueError("no claim token")
        return ClaimInfo(
            path, age, str(data["worker"]), str(data["host"]), int(data["pid"]),
            data.get("pid_start"), str(data["since"]), dict(data.get("status") or {}),
            data["token"],
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as err:
        what = "empty" if not raw else f"{len(raw)} bytes, {type(err).__name__}: {err}"
        return ClaimInfo(path, age, damaged=what)


class Claim:
    """A unit this worker holds; a heartbeat thread renews it while the ``with`` block runs.

    Attributes:
        status: What the worker is doing (the heartbeat writes it into the claim).
        lost: Set when another worker took the unit over.
        taken_over: The stale claim this one replaced, if any.
    """

    def __init__(self, board: ClaimBoard, path: Path, payload: dict[str, Any]) -> None:
        self.board, self.path, self.payload = board, path, payload
        self.status: dict[str, Any] = {}
        self.progress: Callable[[], dict[str, Any]] | None = None
        self.lost = threading.Event()
        self.taken_over: ClaimInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written: dict[str, Any] = dict(payload.get("status", {}))

    def __enter__(self) -> Claim:
        self._thread = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release()

    def _current(self) -> dict[str, Any]:
        status = dict(self.status)
        if self.progress is not None:
            with contextlib.suppress(Exception):  # a progress probe never stops a heartbeat
                status.update(self.progress())
        return status

    def _beat(self) -> None:
        while not self._stop.wait(self.board.interval):
            try:
                self.renew()
            except OSError as err:  # full disk, flaky network: try again at the next beat
                logger.warning("could not renew the claim %s: %s", self.path, err)
            if self.lost.is_set():
                return

    def renew(self) -> None:
        """Rewrite the claim (status changed) or touch it; mark it lost if it is not ours."""
        status = self._current()
        with self.board.folder.lock():
            info = read_claim(self.path)
            if info is None or info.token != self.payload["token"]:
                self.lost.set()
                holder = "nobody" if info is None else info.worker or "a damaged file"
                logger.warning("lost the claim %s (now held by %s)", self.path, holder)
                return
            if status == self._written:
                os.utime(self.path)
                return
            self.payload["status"] = status
            atomic_write_bytes(self.path, _encode(self.payload), what="unit claim")
            self._written = status

    def release(self) -> None:
        """Delete the claim if it is still ours."""
        try:
            with self.board.folder.lock():
                info = read_claim(self.path)
                if info is not None and info.token == self.payload["token"]:
                    self.path.unlink()
        except OSError as err:
            logger.warning("could not release the claim %s: %s", self.path, err)


def _encode(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()


class ClaimBoard:
    """The claims of one study folder.

    Args:
        folder: The study folder.
        timeout: Seconds without a heartbeat after which a claim is stale.
    """

    def __init__(self, folder: StudyFolder, timeout: float = DEFAULT_CLAIM_TIMEOUT) -> None:
        if not timeout > 0:
            raise ValueError(f"claim timeout must be > 0 seconds; got {timeout}")
        self.folder, self.timeout = folder, float(timeout)
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
            "pid_start": _process_start(self.pid),
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
                atomic_write_bytes(path, _encode(payload), what="unit claim")
            elif not self._create(path, _encode(payload)):
                return None
        claim = Claim(self, path, payload)
        claim.taken_over = old
        return claim

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
