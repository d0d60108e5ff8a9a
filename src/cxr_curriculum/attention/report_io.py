"""Writing reports: strict JSON (NaN as ``null``) and CSV, atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Any

from cxr_curriculum._artefacts import atomic_write_bytes

__all__ = ["json_safe", "write_csv", "write_json"]


def write_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Write rows as CSV, atomically."""
    if not rows:
        raise ValueError("nothing to write: the report has no rows")
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode("utf-8"), what="report CSV")


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write strict JSON (NaN already replaced), atomically."""
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), what="report JSON")


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf by ``None`` (strict JSON) recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
