"""``keep_present``: the one "keep the table rows whose image exists" step of the loaders."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cxr_curriculum.data.tables import existing, keep_present


def test_keep_present_counts_warns_once_and_keeps_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = tmp_path / "train.csv"
    paths = [tmp_path / f"{k}.png" for k in range(5)]
    for p in paths[::2]:
        p.write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="cxr_curriculum.data"):
        kept, missing = keep_present(
            ((k, existing(p)) for k, p in enumerate(paths)),
            dataset="Demo", what="rows", table=table, folder=tmp_path,
        )  # fmt: skip
    assert kept == [(0, paths[0]), (2, paths[2]), (4, paths[4])] and missing == 2
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "Demo: 2 of 5 rows of train.csv" in message and str(tmp_path) in message


def test_keep_present_silent_when_all_present(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="cxr_curriculum.data"):
        kept, missing = keep_present(
            [("a", existing(path))], dataset="Demo", what="films", table=path, folder=tmp_path
        )
    assert kept == [("a", path)] and missing == 0 and not caplog.records


def test_keep_present_raises_naming_table_and_folder(tmp_path: Path) -> None:
    table = tmp_path / "labels.csv.gz"
    with pytest.raises(FileNotFoundError) as info:
        keep_present(
            [("a", existing(tmp_path / "a.dcm")), ("b", None)],
            dataset="Demo", what="films", table=table, folder=tmp_path / "imgs",
            hint=" (looked for '<id>.dcm')",
        )  # fmt: skip
    text = str(info.value)
    assert "Demo: none of the 2 films" in text and str(table) in text
    assert str(tmp_path / "imgs") in text and "'<id>.dcm'" in text
