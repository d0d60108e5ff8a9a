"""Multiplicity control of a study's comparisons: one family per task.

A study compares every pair of arms at every label fraction and protocol, so with four
arms, three fractions and three protocols one task holds 54 tests, and some raw
p-values fall below 0.05 by chance. The family of the adjustment is **every comparison
of one task** (all label fractions x protocols x pairs of arms): the question "does
anything differ on this task?" is asked of all of them together, while different tasks
(other data, other labels) are separate questions. Each comparison's ``difference`` in
``results.json`` carries its raw ``p_value`` and, beside it, ``p_holm`` (Holm 1979:
family-wise error rate) and ``p_bh`` (Benjamini & Hochberg 1995: false discovery
rate), from :func:`cxr_curriculum.stats.holm` and
:func:`cxr_curriculum.stats.benjamini_hochberg`. The seed-level p-values have no floor
(:func:`cxr_curriculum.stats.seed_p_value`), so Holm's first threshold (``0.05 / 54``)
can be reached.
"""

from __future__ import annotations

from typing import Any

from cxr_curriculum.stats import benjamini_hochberg, holm

__all__ = ["FAMILY", "adjust_p_values", "multiplicity_families"]

#: What one family of the multiplicity adjustment is, as results.json and report.md say.
FAMILY = "all comparisons of one task: every label fraction x protocol x pair of arms"


def adjust_p_values(comparisons: list[dict[str, Any]]) -> None:
    """Add ``p_holm`` and ``p_bh`` beside ``p_value`` in each row's ``difference``, in place.

    The family is every row of one task (:data:`FAMILY`); rows whose ``p_value`` is NaN
    (one seed) are not in it and get NaN (:func:`cxr_curriculum.stats.holm`,
    :func:`cxr_curriculum.stats.benjamini_hochberg`).
    """
    for task in dict.fromkeys(row["task"] for row in comparisons):
        rows = [row for row in comparisons if row["task"] == task]
        raw = [row["difference"]["p_value"] for row in rows]
        for row, h, bh in zip(rows, holm(raw), benjamini_hochberg(raw), strict=True):
            row["difference"]["p_holm"] = h
            row["difference"]["p_bh"] = bh


def multiplicity_families(comparisons: list[dict[str, Any]]) -> dict[str, Any]:
    """The multiplicity record of ``results.json``: the family and its size per task."""
    sizes: dict[str, int] = {}
    for row in comparisons:
        if row["difference"]["p_value"] == row["difference"]["p_value"]:  # not NaN
            sizes[row["task"]] = sizes.get(row["task"], 0) + 1
    return {"family": FAMILY, "methods": ["holm", "benjamini_hochberg"], "tests": sizes}
