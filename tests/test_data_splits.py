"""Patient-level stratified splits and nested label-fraction subsets."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Subset

from cxr_curriculum.data import (
    CovidChestXray,
    KermanyPneumonia,
    ShenzhenMontgomery,
    dataset_labels,
    dataset_patient_ids,
    label_fraction_subset,
    patient_split,
)


@dataclass
class _Records:
    """A dataset stand-in with metadata only (no images)."""

    labels: list[int]
    patient_ids: list[str]
    files: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> int:  # pragma: no cover - never read here
        return self.labels[i]


@st.composite
def _records(draw: st.DrawFn) -> _Records:
    n_patients = draw(st.integers(4, 40))
    labels, pids = [], []
    for p in range(n_patients):
        label = draw(st.integers(0, 2))
        for _ in range(draw(st.integers(1, 4))):
            labels.append(label)
            pids.append(f"p{p}")
    return _Records(labels, pids)


def _patients(subset: Subset) -> set[str]:
    return set(dataset_patient_ids(subset))


@settings(max_examples=40, deadline=None)
@given(ds=_records(), seed=st.integers(0, 2**31 - 1), f0=st.sampled_from([0.5, 0.6, 0.8]))
def test_patient_split_properties(ds: _Records, seed: int, f0: float) -> None:
    try:
        a, b = patient_split(ds, (f0, 1 - f0), seed=seed)
    except ValueError as exc:  # too few patients for a non-empty split is a clear error
        assert "would be empty" in str(exc)
        return
    assert not _patients(a) & _patients(b)
    assert sorted(a.indices + b.indices) == list(range(len(ds)))
    # Stratified: per label, split a holds round(f0 * n_patients_of_label) patients.
    by_label: dict[int, set[str]] = {}
    for label, pid in zip(ds.labels, ds.patient_ids, strict=True):
        by_label.setdefault(label, set()).add(pid)
    for label, pids in by_label.items():
        in_a = len(pids & _patients(a))
        assert in_a == round(f0 * len(pids)), (label, in_a, len(pids))
    again = patient_split(ds, (f0, 1 - f0), seed=seed)
    assert again[0].indices == a.indices


@settings(max_examples=40, deadline=None)
@given(ds=_records(), seed=st.integers(0, 1000))
def test_label_fraction_subsets_are_nested(ds: _Records, seed: int) -> None:
    subsets = [label_fraction_subset(ds, f, seed=seed) for f in (0.01, 0.1, 0.5, 1.0)]
    for small, big in itertools.pairwise(subsets):
        assert set(small.indices) <= set(big.indices)
    assert subsets[-1].indices == list(range(len(ds)))
    # Whole patients only, at least one patient per label, stable for a seed.
    for s in subsets:
        chosen = _patients(s)
        assert len(s) == sum(p in chosen for p in ds.patient_ids)
        assert set(dataset_labels(s) or []) == set(ds.labels)
    assert label_fraction_subset(ds, 0.1, seed=seed).indices == subsets[1].indices


def test_argument_errors() -> None:
    ds = _Records([0, 1, 0, 1], ["a", "b", "c", "d"])
    for bad in [(0.5, 0.4), (1.0,), (0.0, 1.0), (-0.2, 1.2)]:
        with pytest.raises(ValueError, match="fractions must be"):
            patient_split(ds, bad)
    with pytest.raises(ValueError, match="fraction must be in"):
        label_fraction_subset(ds, 0.0)
    with pytest.raises(ValueError, match="would be empty"):
        patient_split(_Records([0, 0], ["a", "a"]))
    with pytest.raises(ValueError, match=r"no \.patient_ids"):
        patient_split([1, 2, 3], stratify=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"no \.labels; pass stratify=False"):
        patient_split([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.realdata
def test_kermany_patient_split_real(data_root: Path) -> None:
    ds = KermanyPneumonia(data_root / "kermany-pneumonia", "train")
    train, val, test = patient_split(ds, (0.7, 0.15, 0.15), seed=3)
    parts = [_patients(s) for s in (train, val, test)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert len(train) + len(val) + len(test) == len(ds)
    whole = sum(ds.labels) / len(ds)
    for s in (train, val, test):
        share = sum(dataset_labels(s) or []) / len(s)
        assert abs(share - whole) < 0.03, (share, whole)
    # Nested Subsets work (a split of a split).
    inner_a, inner_b = patient_split(train, (0.5, 0.5), seed=0)
    assert not _patients(inner_a) & _patients(inner_b)
    assert _patients(inner_a) | _patients(inner_b) == parts[0]


@pytest.mark.realdata
def test_fraction_subsets_real(data_root: Path) -> None:
    ds = KermanyPneumonia(data_root / "kermany-pneumonia", "train")
    one, ten = (label_fraction_subset(ds, f, seed=0) for f in (0.01, 0.1))
    assert set(one.indices) <= set(ten.indices)
    for s, f in ((one, 0.01), (ten, 0.1)):
        counts = Counter(dataset_labels(s) or [])
        for label, total in Counter(ds.labels).items():
            assert f * total <= counts[label] <= f * total + 8  # whole patients: small overshoot
    assert label_fraction_subset(ds, 0.1, seed=1).indices != ten.indices


@pytest.mark.realdata
def test_masked_sets_split_by_patient(data_root: Path) -> None:
    covid = CovidChestXray(with_masks=True)
    a, b = patient_split(covid, (0.8, 0.2), seed=0)
    assert not _patients(a) & _patients(b)
    sz = ShenzhenMontgomery()
    train, val = patient_split(sz, (0.75, 0.25), seed=0)
    sources = Counter(dataset_labels(val) or [])
    assert sources == {0: round(0.25 * 59), 1: round(0.25 * 13)}
    assert len(train) + len(val) == 72
