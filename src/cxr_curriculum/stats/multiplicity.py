"""Adjusted p-values for a family of tests: Holm and Benjamini-Hochberg.

A study makes many comparisons (every pair of arms at every label fraction and
protocol), so some raw p-values fall below 0.05 by chance. Both adjustments turn the
``m`` raw p-values of one *family* into adjusted ones that are compared with the same
level ``alpha``:

- :func:`holm` (Holm, Scand. J. Statist. 1979) controls the family-wise error rate (the
  chance of *any* false rejection) under any dependence between the tests. With the
  raw p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of ``p_(i)`` is
  ``max_{j <= i} min(1, (m - j + 1) p_(j))``; the first threshold is ``alpha / m``.
- :func:`benjamini_hochberg` (Benjamini & Hochberg, JRSS-B 1995) controls the false
  discovery rate (the expected share of false rejections among the rejections) for
  independent or positively dependent tests: ``min_{j >= i} min(1, m p_(j) / j)``.

An adjusted p-value is the smallest ``alpha`` at which the procedure rejects that
hypothesis (Wright, Biometrics 1992). NaN p-values (e.g. a comparison with one seed) are
not tests: they stay NaN and do not count in ``m``. ``BH <= Holm`` always, and both are
``>= p`` and ``<= 1``. The tests compare them with direct implementations of the
step-down and step-up rules and with ``scipy.stats.false_discovery_control``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["benjamini_hochberg", "holm"]


def _family(p_values: Sequence[float]) -> tuple[list[float], list[int]]:
    """The checked p-values and the positions of the family's tests, smallest p first
    (NaN entries are not tests and are left out)."""
    values = [float(p) for p in p_values]
    bad = [p for p in values if not (math.isnan(p) or 0.0 <= p <= 1.0)]
    if bad:
        raise ValueError(f"p-values must lie in [0, 1] (or be NaN); got {bad[:3]}")
    order = sorted((i for i, p in enumerate(values) if not math.isnan(p)), key=values.__getitem__)
    return values, order


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate).

    Args:
        p_values: The raw p-values of one family, in any order; NaN entries are left
            out of the family.

    Returns:
        The adjusted p-values in the input order (NaN where the input is NaN).

    Raises:
        ValueError: If a p-value lies outside ``[0, 1]``.
    """
    values, order = _family(p_values)
    m = len(order)
    out = [math.nan] * len(values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[i]))
        out[i] = running
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (false discovery rate).

    Args:
        p_values: The raw p-values of one family, in any order; NaN entries are left
            out of the family.

    Returns:
        The adjusted p-values in the input order (NaN where the input is NaN); equal to
        ``scipy.stats.false_discovery_control(p)`` on a family without NaN.

    Raises:
        ValueError: If a p-value lies outside ``[0, 1]``.
    """
    values, order = _family(p_values)
    m = len(order)
    out = [math.nan] * len(values)
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        # factor first: m / (rank + 1) >= 1 and <= m - rank, so rounding keeps p <= BH <= Holm
        running = min(running, (m / (rank + 1)) * values[i])
        out[i] = running
    return out
