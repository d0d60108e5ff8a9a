"""Files the package writes: atomic writes that return a sha256, verification, clear errors.

Every artefact (checkpoints, backbone weights and sidecars, manifests) goes through
:func:`atomic_write`: the bytes go to a temporary file in the target folder and are
hashed as they are written, the file is flushed and ``fsync``-ed, moved over the target
with ``os.replace`` (atomic on POSIX) and the folder is ``fsync``-ed. A process killed
at any moment leaves the previous complete file or the new complete file, never half
of one. A write that fails (disk full, no permission) removes its temporary file,
leaves the previous file as it was, and raises :class:`ArtefactWriteError`, which names
the file, the cause, the size the file needs and the space that was free when the write
began (read after a failure, a full disk's own partial file would show "0 B free").

Integrity: :func:`sha256_file` is what manifests and sidecars record, and
:func:`content_sha256` is a digest of a checkpoint's *contents* (every tensor's bytes,
dtype and shape, every plain value) that a checkpoint carries inside itself, so it can
be verified after loading even when the record that names it was not yet updated (a
run killed between writing a file and recording it). A mismatch raises
:class:`ArtefactIntegrityError`, naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import torch

__all__ = [
    "CONTENT_KEY",
    "TMP_PREFIX",
    "ArtefactIntegrityError",
    "ArtefactWriteError",
    "Written",
    "atomic_write",
    "atomic_write_bytes",
    "content_sha256",
    "format_size",
    "payload_nbytes",
    "remove_stale_temp_files",
    "sha256_file",
    "verify_content",
    "verify_sha256",
]


_UMASK_LOCK = threading.Lock()
#: Where Linux shows a process's umask.
_PROC_STATUS = "/proc/self/status"


def _umask() -> int:
    """The process's umask now: read without changing it where ``/proc`` shows it (Linux),
    else by setting a strict one for an instant and restoring it, under a lock."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(_PROC_STATUS).read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # a file another thread makes meanwhile gets 0o077, never looser
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _file_mode() -> int:
    """Mode of every artefact: what ``open(path, "w")`` would give now (0o666 less the
    umask, read at each write, so a umask set after import is respected)."""
    return 0o666 & ~_umask()


def _share(fd: int) -> None:
    """Give a new temporary file the usual mode instead of mkstemp's 0600, so that results
    in a folder shared by a group (a study's workers) stay readable. Regular files only."""
    if hasattr(os, "fchmod") and stat.S_ISREG(os.fstat(fd).st_mode):
        os.fchmod(fd, _file_mode())


#: Prefix of temporary files; a rerun removes the ones a killed process left.
TMP_PREFIX = ".tmp-"
#: Key under which a checkpoint dict carries the :func:`content_sha256` of the rest.
CONTENT_KEY = "content_sha256"
_CHUNK = 1 << 20


class ArtefactWriteError(OSError):
    """A file could not be written (disk full, no permission, read-only file system).

    ``errno`` is the cause's, ``filename`` the target file. The previous version of the
    file, if any, is unchanged and no temporary file is left behind.
    """


class ArtefactIntegrityError(ValueError):
    """A file's bytes or contents differ from the sha256 recorded when it was written."""


class Written(NamedTuple):
    """A file written by :func:`atomic_write`: where, its sha256 (hex) and its size in bytes."""

    path: Path
    sha256: str
    nbytes: int


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``.

    Errors of the underlying file (``ENOSPC``, ...) propagate as ``OSError``; torch's own
    writer would turn a full disk into ``unexpected pos`` with no file and no cause.
    """

    def __init__(self, target: IO[bytes]) -> None:
        super().__init__()
        self.target, self.hash, self.nbytes = target, hashlib.sha256(), 0
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        try:
            self.target.write(view)
        except OSError as err:  # kept: a caller may wrap it in another exception
            self.error = err
            raise
        self.hash.update(view)
        self.nbytes += len(view)
        return len(view)


def format_size(nbytes: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def payload_nbytes(obj: Any) -> int:
    """Bytes of the tensor storages in a nested structure (what ``torch.save`` writes)."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return total


def _free_bytes(folder: Path) -> int | None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:  # pragma: no cover
        return None


def _write_error(
    path: Path, err: OSError, what: str, size_hint: int | None, free: int | None = None
) -> ArtefactWriteError:
    code = err.errno
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
    }
    reason = reasons.get(code or -1, err.strerror or str(err))
    parts = [f"could not write the {what} {path}: {reason}"]
    if size_hint is not None:
        room = (
            ""
            if free is None
            else f"; {format_size(free)} was free in {path.parent} when the write began"
        )
        parts.append(f"it needs about {format_size(size_hint)}{room}")
    parts.append(
        "the previous version of the file (if any) is unchanged and the temporary file was removed"
    )
    if code in (errno.ENOSPC, errno.EDQUOT):
        parts.append("free some space (or choose another folder) and run again")
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        parts.append(f"make {path.parent} writable (or choose another folder) and run again")
    out = ArtefactWriteError(code or errno.EIO, "; ".join(parts))
    out.filename = str(path)
    return out


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], object],
    *,
    what: str = "file",
    size_hint: int | None = None,
    before_replace: Callable[[Written], object] | None = None,
) -> Written:
    """Write a file atomically and return its sha256.

    Args:
        path: The target; its folder is created.
        write: Called with a binary stream; writes the file's contents (``torch.save``,
            ``f.write(bytes)``, ...).
        what: What the file is (``"checkpoint"``, ``"backbone file"``), for messages.
        size_hint: Expected size in bytes, reported when the disk is full (with the space
            that was free in the folder when the write began).
        before_replace: Called with the complete file's record after it is on disk and
            before it replaces the target, e.g. to record its sha256 as pending in a
            manifest: a process killed in between leaves a target whose digest is either
            the old record or the pending one.

    Returns:
        The :class:`Written` record (path, sha256 of the bytes written, size).

    Raises:
        ArtefactWriteError: The file could not be created or written (an ``OSError``
            whose message names the file, the cause and the size needed).
    """
    target = Path(path)
    tmp: str | None = None
    stream: _HashingWriter | None = None
    free: int | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if size_hint is not None:  # a failed write's own bytes would leave "0 B free"
            free = _free_bytes(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}.", dir=target.parent)
        _share(fd)
        with os.fdopen(fd, "wb") as f:
            stream = _HashingWriter(f)
            write(stream)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(Written(target, stream.hash.hexdigest(), stream.nbytes))
        os.replace(tmp, target)
        tmp = None
    except ArtefactWriteError:
        raise
    except OSError as err:
        raise _write_error(target, err, what, size_hint, free) from err
    except Exception as exc:  # e.g. torch reporting a failed write as "unexpected pos"
        if stream is not None and stream.error is not None:
            raise _write_error(target, stream.error, what, size_hint, free) from exc
        raise
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    _fsync_dir(target.parent)
    assert stream is not None
    return Written(target, stream.hash.hexdigest(), stream.nbytes)


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    what: str = "file",
    before_replace: Callable[[Written], object] | None = None,
) -> Written:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(
        path, lambda f: f.write(data), what=what, size_hint=len(data), before_replace=before_replace
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(
    path: str | os.PathLike[str], expected: str, *, recorded_in: str, remedy: str
) -> None:
    """Raise :class:`ArtefactIntegrityError` if the file's sha256 is not ``expected``.

    Args:
        path: The file.
        expected: The recorded sha256.
        recorded_in: Where it was recorded (for the message), e.g. the sidecar's path.
        remedy: What the user should do, e.g. ``"delete it and rerun"``.
    """
    actual = sha256_file(path)
    if actual != expected:
        raise ArtefactIntegrityError(
            f"{os.fspath(path)} has sha256 {actual}, but {recorded_in} records {expected}: "
            f"the file was changed, corrupted or only partly copied after it was written; "
            f"{remedy}"
        )


def _feed(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        flat = obj.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"T{flat.dtype}{tuple(obj.shape)}:".encode())
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(obj, Mapping):
        digest.update(f"D{len(obj)}:".encode())
        for key in sorted(obj, key=repr):
            digest.update(f"{type(key).__name__}{key!r}=".encode())
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__}{len(obj)}:".encode())
        for item in obj:
            _feed(digest, item)
    else:
        digest.update(f"{type(obj).__name__}{obj!r};".encode())


def content_sha256(obj: Any) -> str:
    """A sha256 of a nested structure of tensors and plain values (not of its file).

    Tensors contribute their dtype, shape and bytes; mappings their keys in sorted
    order; lists and tuples their items in order; other values their type and ``repr``.
    The digest is the same before ``torch.save`` and after ``torch.load``, whatever the
    tensors' device or memory layout.
    """
    digest = hashlib.sha256()
    _feed(digest, obj)
    return digest.hexdigest()


def verify_content(
    state: dict[str, Any], path: str | os.PathLike[str], remedy: str
) -> dict[str, Any]:
    """Check the :data:`CONTENT_KEY` digest a loaded checkpoint carries; return it without.

    A checkpoint without the key (written before it existed) is returned unchecked.

    Raises:
        ArtefactIntegrityError: The contents differ from the digest written with them.
    """
    if CONTENT_KEY not in state:
        return state
    rest = {k: v for k, v in state.items() if k != CONTENT_KEY}
    if content_sha256(rest) != state[CONTENT_KEY]:
        raise ArtefactIntegrityError(
            f"{os.fspath(path)} is corrupted: its contents do not match the sha256 stored in it "
            f"when it was written (changed bytes on disk or a damaged copy); {remedy}"
        )
    return rest


def remove_stale_temp_files(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left by a process killed while writing; return how many."""
    root = Path(folder)
    if not root.is_dir():
        return 0
    count = 0
    for tmp in root.rglob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            count += 1
    return count
