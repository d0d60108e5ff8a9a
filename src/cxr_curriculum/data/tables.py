"""Reading the label tables of the public chest X-ray datasets as published.

The large datasets ship their labels as CSV tables, often compressed: NIH's
``Data_Entry_2017_v2020.csv`` (also as ``.csv.gz``), CheXpert's ``train.csv``,
MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-chexpert.csv.gz``, RSNA's
``stage_2_train_labels.csv.zip``, SIIM-ACR's ``train-rle.csv`` (whose header is
``ImageId, EncodedPixels``, with a space). :func:`read_table` reads any of them into
a list of rows with stripped column names; :func:`find_table` finds a table by name
whichever of the three forms is on disk; :func:`keep_present` keeps the rows whose
image is on disk, counting and logging the rest once.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import os
import zipfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import IO, TypeVar

__all__ = ["TABLE_SUFFIXES", "find_table", "read_table"]

#: Forms of a table, tried in this order by :func:`find_table`: plain, gzip, zip.
TABLE_SUFFIXES: tuple[str, ...] = ("", ".gz", ".zip")

logger = logging.getLogger(__name__)

_Row = TypeVar("_Row")
#: (dataset, table, folder, missing, total) already reported in this process.
_REPORTED: set[tuple[str, str, str, int, int]] = set()


def _zip_member(archive: zipfile.ZipFile, path: Path) -> str:
    """The one CSV inside ``archive`` (or the member named like the archive)."""
    names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
    if len(names) == 1:
        return names[0]
    wanted = path.name[: -len(".zip")]
    named = [n for n in names if Path(n).name == wanted]
    if len(named) == 1:
        return named[0]
    raise ValueError(
        f"{path}: expected one .csv inside the zip archive (or one named {wanted!r}), "
        f"found {names or 'none'}"
    )


def _rows(fh: IO[str], path: Path, columns: Collection[str]) -> list[dict[str, str]]:
    reader = csv.DictReader(fh)
    if reader.fieldnames is None:
        raise ValueError(f"{path}: empty table (no header line)")
    names = [str(n).strip().lstrip("\ufeff") for n in reader.fieldnames]
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{path} lacks columns {missing} (has {names})")
    reader.fieldnames = names
    rows = []
    for row in reader:
        if None in row:  # more fields than header names
            raise ValueError(f"{path}, line {reader.line_num}: more fields than columns")
        rows.append({k: ("" if v is None else v) for k, v in row.items()})
    return rows


def read_table(
    path: str | os.PathLike[str],
    columns: Collection[str] = (),
) -> list[dict[str, str]]:
    """Read a ``.csv``, ``.csv.gz`` or ``.csv.zip`` label table.

    The format is chosen from the file's first bytes (gzip and zip magic numbers), not
    its name. Column names are stripped of spaces and of a byte-order mark; values
    are kept as the text in the file (missing trailing fields become ``""``).

    Args:
        path: The table file.
        columns: Columns that must be present (after stripping).

    Returns:
        One dict per data row, keyed by column name, in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not a CSV table, a zip holds no single CSV, a row has
            more fields than the header, or a required column is missing (the error
            names the file and the columns it has).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label table {path} not found")
    with path.open("rb") as raw:
        magic = raw.read(4)
    try:
        if magic[:2] == b"\x1f\x8b":
            with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
                return _rows(fh, path, columns)
        if magic == b"PK\x03\x04":
            with zipfile.ZipFile(path) as archive, archive.open(_zip_member(archive, path)) as fb:
                return _rows(io.TextIOWrapper(fb, encoding="utf-8", newline=""), path, columns)
        with path.open(encoding="utf-8", newline="") as fh:
            return _rows(fh, path, columns)
    except (UnicodeDecodeError, OSError, EOFError, zipfile.BadZipFile, csv.Error) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{path}: not a readable CSV table ({reason})") from None


def find_table(folder: str | os.PathLike[str], names: Sequence[str] | str) -> Path | None:
    """The first of ``names`` found in ``folder`` as ``name``, ``name.gz`` or ``name.zip``.

    Args:
        folder: Folder to look in.
        names: Table file name(s), e.g. ``"train.csv"``, in order of preference.

    Returns:
        The path found, or None.
    """
    folder = Path(folder)
    for name in [names] if isinstance(names, str) else names:
        for suffix in TABLE_SUFFIXES:
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def table_or_error(
    folder: Path, names: Sequence[str] | str, dataset: str, csv_file: str | os.PathLike[str] | None
) -> Path:
    """``csv_file`` if given, else the table found in ``folder``; a clear error if none."""
    if csv_file is not None:
        return Path(csv_file)
    found = find_table(folder, names)
    if found is None:
        tried = [names] if isinstance(names, str) else list(names)
        raise FileNotFoundError(
            f"{dataset}: no label table in {folder} (looked for {_forms(tried)}); pass csv_file=..."
        )
    return found


def _forms(names: Iterable[str]) -> str:
    return ", ".join(f"{n}[.gz|.zip]" for n in names)


def existing(path: Path) -> Path | None:
    """``path`` if it is a file, else None (the form :func:`keep_present` takes)."""
    return path if path.is_file() else None


def keep_present(
    located: Iterable[tuple[_Row, Path | None]],
    *,
    dataset: str,
    what: str,
    table: Path,
    folder: Path,
    hint: str = "",
    level: int = logging.WARNING,
) -> tuple[list[tuple[_Row, Path]], int]:
    """Keep the table rows whose image was found; warn once about the rest.

    Args:
        located: ``(row, path)`` per table entry, ``path`` None where the image is absent
            (see :func:`existing`).
        dataset: Loader name used in the warning and error (e.g. ``"CheXpert"``).
        what: What the entries are, plural (``"rows"``, ``"films"``).
        table: The label table the entries come from.
        folder: Where the images were looked for.
        hint: Appended to the error, e.g. the file name pattern looked for.
        level: Logging level of the count of absent images (said once per process for
            the same table, folder and count; repeats go to DEBUG). NIH passes INFO: its
            official table lists 112,120 images and most copies hold a part of them.

    Returns:
        The ``(row, path)`` pairs with a path, in order, and how many were absent.

    Raises:
        FileNotFoundError: No entry has its image (names the table and the folder).
    """
    entries = list(located)
    kept = [(row, path) for row, path in entries if path is not None]
    missing = len(entries) - len(kept)
    if missing:
        key = (dataset, str(table), str(folder), missing, len(entries))
        first = key not in _REPORTED
        _REPORTED.add(key)
        logger.log(
            level if first else logging.DEBUG,
            "%s: %d of %d %s of %s have no image under %s; they are left out (.missing)",
            dataset, missing, len(entries), what, table.name, folder,
        )  # fmt: skip
    if not kept:
        raise FileNotFoundError(
            f"{dataset}: none of the {len(entries)} {what} of {table} is under {folder}{hint}"
        )
    return kept, missing
