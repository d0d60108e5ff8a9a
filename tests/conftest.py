"""Shared fixtures: the real-data root and small deterministic settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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
