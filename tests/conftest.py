"""Shared fixtures: the real-data root, small deterministic settings, a tiny study file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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

    ``build(output, steps=1, evaluation="")``: ``output`` is the study folder, ``steps``
    SimCLR's steps, ``evaluation`` extra lines appended to the ``[evaluation]`` table.
    """

    def build(output: Path, *, steps: int = 1, evaluation: str = "") -> str:
        return f"""
output = "{output}"
seeds = [0, 1]
batch_size = 8
image_size = 32
[data]
source = "sample"
[[arms]]
name = "scratch"
[[arms]]
name = "simclr"
stages = [{{ method = "simclr", steps = {steps} }}]
[[tasks]]
kind = "kermany"
root = "sample"
[evaluation]
fractions = [1.0]
protocols = ["knn"]
{evaluation}"""

    return build
