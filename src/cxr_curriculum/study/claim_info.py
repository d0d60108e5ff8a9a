"""A claim file as read from disk, and whether its worker is still alive.

A claim names its worker's machine (:func:`worker_host`) and process. It is stale when
its file was not renewed for the claim timeout (by its modification time) or, on the
worker's own machine, as soon as that process is gone (a reused process id is told
apart by the process's start time). A file that cannot be read (cut short, garbled) is
a claim of an unknown worker, stale only by its age.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HOST_VARIABLE",
    "ClaimInfo",
    "encode_claim",
    "process_start",
    "read_claim",
    "worker_host",
]

#: Environment variable naming this machine in claims (default: the host name).
HOST_VARIABLE = "CXR_STUDY_HOST"


def worker_host() -> str:
    """The name this worker gives its machine: ``$CXR_STUDY_HOST`` or the host name.

    Set ``CXR_STUDY_HOST`` when containers that share a folder also share a host name
    but not their process ids.
    """
    return os.environ.get(HOST_VARIABLE) or socket.gethostname()


def process_start(pid: int) -> str | None:
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
    now = process_start(pid)
    if Path("/proc/self/stat").exists() and now is None:
        return False  # a zombie: killed, not yet reaped
    return start is None or now is None or now == start


@dataclass(frozen=True)
class ClaimInfo:
    """A claim file as read from disk.

    Attributes:
        age: Seconds since it was last renewed (its modification time).
        worker: ``host:pid`` of the claiming worker (``None`` if the file is damaged).
        host: The worker's machine (:func:`worker_host`).
        pid: The worker's process id.
        since: When the unit was claimed (ISO 8601, UTC).
        status: What the worker last reported (phase, stage and step, cell, ...).
        token: The claim's unique id.
        damaged: Why the file could not be read, or ``None``.
    """

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


def read_claim(path: str | os.PathLike[str]) -> ClaimInfo | None:
    """The claim in ``path``, or ``None`` if there is none."""
    path = Path(path)
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
            age, str(data["worker"]), str(data["host"]), int(data["pid"]),
            data.get("pid_start"), str(data["since"]), dict(data.get("status") or {}),
            data["token"],
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as err:
        what = "empty" if not raw else f"{len(raw)} bytes, {type(err).__name__}: {err}"
        return ClaimInfo(age, damaged=what)


def encode_claim(payload: dict[str, Any]) -> bytes:
    return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()
