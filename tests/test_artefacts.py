"""Files the package writes: atomic writes with sha256, content digests, full disks,
permissions, and no unpickling anywhere in the repository.

A full disk is the real kernel error: the temporary file's descriptor is opened on
``/dev/full``, whose writes fail with ``ENOSPC``. A permission error is simulated
(tests run as root, for whom ``chmod`` does not block writes).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cxr_curriculum import _artefacts
from cxr_curriculum._artefacts import (
    ArtefactIntegrityError,
    ArtefactWriteError,
    atomic_write,
    atomic_write_bytes,
    content_sha256,
    sha256_file,
)
from cxr_curriculum.curriculum.checkpoint import atomic_save, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")


def full_disk_for(
    monkeypatch: pytest.MonkeyPatch, match: Callable[[str], bool] = lambda name: True
) -> list[str]:
    """Make temporary files whose target name passes ``match`` land on ``/dev/full``.

    Returns the list of target names that were sent there.
    """
    real = tempfile.mkstemp
    hits: list[str] = []

    def mkstemp(prefix: str = "", dir: str | None = None, **kw: Any) -> tuple[int, str]:
        name = prefix.removeprefix(_artefacts.TMP_PREFIX)
        if not match(name):
            return real(prefix=prefix, dir=dir, **kw)
        hits.append(name)
        return os.open(DEV_FULL, os.O_WRONLY), str(Path(dir or ".") / f"{prefix}never-created")

    monkeypatch.setattr(_artefacts.tempfile, "mkstemp", mkstemp)
    return hits


def test_atomic_write_returns_the_files_sha256(tmp_path: Path) -> None:
    data = os.urandom(3000)
    written = atomic_write_bytes(tmp_path / "sub" / "a.bin", data)
    assert written.path.read_bytes() == data and written.nbytes == 3000
    assert written.sha256 == hashlib.sha256(data).hexdigest() == sha256_file(written.path)
    saved = atomic_save({"w": torch.arange(5.0)}, tmp_path / "c.pt")
    assert saved.sha256 == sha256_file(tmp_path / "c.pt")
    assert not list(tmp_path.rglob(".tmp-*"))


def test_artefacts_get_the_usual_file_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    # results in a folder shared by a study's workers must stay readable by the group
    umask = os.umask(0o022)
    os.umask(umask)
    written = atomic_write_bytes(tmp_path / "r.json", b"{}")
    plain = tmp_path / "plain.json"
    plain.write_bytes(b"{}")
    assert written.path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("proc", [True, False])
def test_artefacts_follow_a_umask_set_after_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: bool
) -> None:
    if not proc:  # where /proc does not show the umask, it is read by setting it back
        monkeypatch.setattr(_artefacts, "_PROC_STATUS", str(tmp_path / "no-proc"))
    for umask in (0o077, 0o002):
        before = os.umask(umask)
        try:
            written = atomic_write_bytes(tmp_path / f"{umask:o}.json", b"{}")
            assert os.umask(umask) == umask  # left as it was
        finally:
            os.umask(before)
        assert written.path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_content_digest_survives_save_and_load_and_sees_every_value(tmp_path: Path) -> None:
    state = {
        "w": torch.randn(3, 4).t(),  # non-contiguous
        "bf16": torch.randn(5).bfloat16(),
        "scalar": torch.tensor(2.5),
        "opt": {0: {"step": torch.tensor(3.0)}, "groups": [{"lr": 0.1, "nesterov": False}]},
        "rng": [3, [1, 2, 3], None],
        "name": "rot",
    }
    atomic_save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert loaded.pop(_artefacts.CONTENT_KEY) == content_sha256(state) == content_sha256(loaded)
    changed = {**state, "opt": {0: {"step": torch.tensor(4.0)}, "groups": state["opt"]["groups"]}}
    assert content_sha256(changed) != content_sha256(state)
    assert content_sha256({**state, "name": "rot24"}) != content_sha256(state)
    assert content_sha256({**state, "scalar": 2.5}) != content_sha256(state)  # type matters


def _flip_tensor_byte(path: Path, tensor: torch.Tensor) -> None:
    """Flip one bit inside ``tensor``'s bytes where they lie in ``path``."""
    blob = bytearray(path.read_bytes())
    raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    at = blob.find(raw)
    assert at >= 0, "tensor bytes not found in the file"
    blob[at + len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def test_a_flipped_byte_in_a_checkpoint_is_an_error_naming_the_file(tmp_path: Path) -> None:
    weights = torch.randn(64)
    path = tmp_path / "ckpt.pt"
    atomic_save({"step": 1, "w": weights}, path)
    assert torch.equal(load_checkpoint(path)["w"], weights)
    _flip_tensor_byte(path, weights)
    assert not torch.equal(torch.load(path, weights_only=True)["w"], weights)  # loads silently
    with pytest.raises(ArtefactIntegrityError, match=r"ckpt\.pt is corrupted.*delete it"):
        load_checkpoint(path)


@needs_dev_full
def test_full_disk_names_the_file_the_cause_and_the_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    atomic_save({"step": 1, "w": torch.ones(10)}, path)
    before = path.read_bytes()
    full_disk_for(monkeypatch)
    big = {"step": 2, "w": torch.ones(2**20)}  # 4 MiB: fails inside torch's writer
    with pytest.raises(ArtefactWriteError) as info:
        atomic_save(big, path)
    err = info.value
    assert err.errno == errno.ENOSPC and err.filename == str(path)
    text = str(err)
    assert str(path) in text and "no space left on the device" in text
    assert "needs about 4.1 MiB" in text and "free in" in text and "unchanged" in text
    assert "unexpected pos" not in text
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    with pytest.raises(ArtefactWriteError, match="no space left"):  # small: fails at flush
        atomic_write_bytes(tmp_path / "x.json", b"{}")


@needs_dev_full
def test_torch_reporting_the_full_disk_as_unexpected_pos_is_translated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def torch_like(f: io.RawIOBase) -> None:  # what torch's zip writer does with the error
        try:
            f.write(b"x" * (1 << 20))
        except OSError:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos 60578816 vs 60578704"
            ) from None

    full_disk_for(monkeypatch)
    with pytest.raises(ArtefactWriteError, match=r"final\.pt: no space left.*needs about 1\.0 MiB"):
        atomic_write(tmp_path / "final.pt", torch_like, what="checkpoint", size_hint=1 << 20)


def test_permission_error_says_which_folder_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", kwargs.get("dir"))

    monkeypatch.setattr(_artefacts.tempfile, "mkstemp", denied)
    with pytest.raises(ArtefactWriteError) as info:
        atomic_save({"w": torch.ones(3)}, tmp_path / "run" / "last.pt")
    text = str(info.value)
    assert info.value.errno == errno.EACCES
    assert "last.pt: permission denied" in text and f"make {tmp_path / 'run'} writable" in text


# ----------------------------------------------------------------------------- no pickles
def _python_and_markdown(*folders: str) -> list[Path]:
    return [
        p
        for folder in folders
        for p in sorted((REPO / folder).rglob("*"))
        if p.suffix in (".py", ".md") and p.is_file() and ".venv" not in p.parts
    ]


def test_nothing_in_the_repository_unpickles() -> None:
    # Patterns are split so that this file does not match itself. Loading a pickle from
    # a file can run code; ``pickle.loads(pickle.dumps(x))`` of an object a test just made
    # (what DataLoader workers do) is allowed.
    forbidden = [
        re.compile(r"weights_only\s*=\s*" + "False"),
        re.compile(r"pickle\." + r"loads?\((?!pickle\.dumps\()"),
        re.compile(r"pickle\." + r"Unpickler"),
        re.compile(r"allow_pickle\s*=\s*" + "True"),
    ]
    offenders = []
    for path in _python_and_markdown("src", "benchmarks", "tests", "docs"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in forbidden:
            offenders += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(text)]
    # torch.load in the package and benchmarks always says weights_only=True explicitly
    call = re.compile(r"torch\." + r"load\(([^()]|\([^()]*\))*\)")
    for path in _python_and_markdown("src", "benchmarks"):
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [
            f"{path.relative_to(REPO)}: {m.group(0)}"
            for m in call.finditer(text)
            if "weights_only=True" not in m.group(0)
        ]
    assert not offenders, "unpickling code found:\n" + "\n".join(offenders)


@needs_dev_full
def test_full_disk_reports_the_space_free_when_the_write_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 18: "0 B free" was read once the failed write had filled the disk.
    full_disk_for(monkeypatch)
    writing, inner, usage = [False], _artefacts.tempfile.mkstemp, _artefacts.shutil.disk_usage

    def mkstemp(*args: Any, **kw: Any) -> Any:
        writing[0] = True  # from here on the partial file fills the disk
        return inner(*args, **kw)

    def disk_usage(path: Any) -> Any:
        return usage(path)._replace(free=0 if writing[0] else 12 * 2**20)

    monkeypatch.setattr(_artefacts.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(_artefacts.shutil, "disk_usage", disk_usage)
    with pytest.raises(ArtefactWriteError) as info:
        atomic_save({"w": torch.ones(2**20)}, tmp_path / "last.pt")
    assert "needs about 4.1 MiB; 12.0 MiB was free in" in str(info.value)
    assert "when the write began" in str(info.value) and "0 B" not in str(info.value)
