"""Where the data is found (``data_root``) and how loaders report absent table rows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cxr_curriculum.data import DATA_ROOT_ENV, NIHChestXray14, _root, data_root, tables

PROJECT = Path(__file__).resolve().parents[1]


def test_default_root_is_relative_to_the_project_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 18: "../shared/data" was taken from the current directory, so a script run
    # from anywhere but the project folder found no data.
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_root() == (PROJECT / ".." / "shared" / "data").resolve()
    assert _root.project_root() == PROJECT
    assert data_root("data") == PROJECT / "data" and data_root(tmp_path) == tmp_path
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "elsewhere"))
    assert data_root() == tmp_path / "elsewhere"  # the variable wins
    monkeypatch.setenv(DATA_ROOT_ENV, "relative")
    assert data_root() == tmp_path / "relative"  # taken from the current directory
    monkeypatch.delenv(DATA_ROOT_ENV)
    monkeypatch.setattr(_root, "project_root", lambda: None)  # an installed wheel
    assert data_root() == (tmp_path / ".." / "shared" / "data").resolve()


@pytest.mark.realdata
def test_nih_says_its_absent_rows_once_quietly_with_the_count(
    data_root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 18: every command warned that 111,120 rows of the official table have no image.
    monkeypatch.setattr(tables, "_REPORTED", set(), raising=False)  # a fresh process
    table = data_root / "label-tables" / "Data_Entry_2017_v2020.csv.gz"
    root = data_root / "nih-chestxray14-subset"
    with caplog.at_level(logging.DEBUG, logger="cxr_curriculum.data"):
        first = NIHChestXray14(root, csv_file=table)
        second = NIHChestXray14(root, csv_file=table)
    assert first.missing == second.missing == 111_120 and len(first) == 1000
    said = [r for r in caplog.records if "have no image" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.DEBUG]
    assert "111120 of 112120 rows of Data_Entry_2017_v2020.csv.gz" in said[0].getMessage()
