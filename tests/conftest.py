"""Shared fixtures: the real-data root, small deterministic settings, a tiny study file."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from _studies import tiny_study_toml
from cxr_curriculum.data._root import data_root as _data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared real-data folder; tests that need it skip with a reason if it is absent."""
    root = _data_root()
    if not (root / "README.md").exists():
        pytest.skip(f"real CXR data not found at {root} (set CXR_DATA_ROOT)")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may download in a test, online or not: every test runs as if offline.

    torch.hub's downloader fails like a dead network, and so does
    ``socket.create_connection`` (what ``backbones._weights.can_reach`` probes before timm
    or torchvision fetch anything; tests that need "reachable" patch ``can_reach``).
    Without this, an ImageNet arm (``test_study``, the ``bench_curriculum`` smoke run)
    would download ResNet-18 weights on a machine with internet access.
    """

    def no_download(url: str, *args: object, **kwargs: object) -> None:
        raise URLError(f"test is offline: {url}")

    def no_connection(address: object, *args: object, **kwargs: object) -> socket.socket:
        raise OSError(f"test is offline: no connection to {address}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(socket, "create_connection", no_connection)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op torch thread for a module's tests (``pytestmark = usefixtures(...)``).

    Tiny CPU convolutions are faster on one thread; on a shared, oversubscribed 2-core
    machine the default pool spends its time spinning (about 10x slower measured here).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sample_study_toml() -> Callable[..., str]:
    """Builds the TOML of a tiny study: scratch vs SimCLR, Kermany k-NN, bundled sample.

    ``build(output, steps=1, evaluation="", top="")``: see ``tests/_studies.py``.
    """
    return tiny_study_toml
