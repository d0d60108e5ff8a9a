"""A claim this worker holds, renewed by a heartbeat thread while the unit is computed.

Every ``interval`` seconds (a tenth of the claim timeout) the heartbeat takes the
folder's lock, re-reads the claim and, if it is still this worker's, rewrites it when
the status changed (atomically) or else only touches it. If another worker has taken
the unit over (this worker was stopped for longer than the timeout), the claim is
marked lost and the worker abandons the unit at its next cell.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxr_curriculum._artefacts import atomic_write_bytes
from cxr_curriculum.study.claim_info import ClaimInfo, encode_claim, read_claim
from cxr_curriculum.study.folder import StudyFolder

__all__ = ["Claim"]

logger = logging.getLogger("cxr_curriculum.study")


class Claim:
    """A unit this worker holds; a heartbeat thread renews it while the ``with`` block runs.

    Attributes:
        status: What the worker is doing (the heartbeat writes it into the claim).
        lost: Set when another worker took the unit over.
        taken_over: The stale claim this one replaced, if any.
    """

    def __init__(
        self,
        folder: StudyFolder,
        interval: float,
        path: str | os.PathLike[str],
        payload: dict[str, Any],
    ) -> None:
        self.folder, self.interval, self.payload = folder, interval, payload
        self.path = Path(path)
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
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except OSError as err:  # full disk, flaky network: try again at the next beat
                logger.warning("could not renew the claim %s: %s", self.path, err)
            if self.lost.is_set():
                return

    def renew(self) -> None:
        """Rewrite the claim (status changed) or touch it; mark it lost if it is not ours."""
        status = self._current()
        with self.folder.lock():
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
            atomic_write_bytes(self.path, encode_claim(self.payload), what="unit claim")
            self._written = status

    def release(self) -> None:
        """Delete the claim if it is still ours."""
        try:
            with self.folder.lock():
                info = read_claim(self.path)
                if info is not None and info.token == self.payload["token"]:
                    self.path.unlink()
        except OSError as err:
            logger.warning("could not release the claim %s: %s", self.path, err)
