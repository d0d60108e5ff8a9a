"""Weerahandi's generalized interval and p-value for a mean with a two-part variance.

A mean ``v_bar`` of ``S`` per-seed values is normal with variance
``seed_variance + test_variance`` (see :mod:`cxr_curriculum.stats.seeds`), where
``seed_variance`` is estimated (``(S - 1) * estimate / truth`` is chi-squared with
``dof = S - 1`` degrees of freedom) and ``test_variance`` is treated as known. This is a
Behrens-Fisher-type problem; the interval is the generalized confidence interval of
Weerahandi (JASA 1993), from the generalized pivot
``R = v_bar - Z * sqrt(seed_variance * dof / W + test_variance)``, ``Z`` standard normal,
``W`` chi-squared with ``dof`` degrees of freedom: ``v_bar +- h`` with ``h`` solving
``E_W[erf(h / sqrt(2 V(W)))] = confidence``, ``V(W) = seed_variance dof / W +
test_variance``. It is Student's t interval with ``dof`` degrees of freedom when the test
component is 0 and the normal interval when the seed component is; in between it mixes
them through the pivot's distribution rather than a Welch-Satterthwaite
degrees-of-freedom guess (which was anti-conservative at three seeds, when both parts
matter, in the simulations made to choose between them). The p-value is the generalized
p-value (Tsui & Weerahandi, JASA 1989), ``p = E_W[erfc(|v_bar| / sqrt(2 V(W)))]``, so it
inverts the interval exactly (``p < 1 - confidence`` exactly when the interval excludes
0) and has no floor. The expectation over ``W`` is a trapezoid rule in ``log W`` on a
grid wide enough for p-values down to about ``1e-30``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

__all__ = ["generalized_half_width", "generalized_p_value"]


@functools.lru_cache(maxsize=64)
def _chi2_grid(dof: int) -> tuple[Tensor, Tensor]:
    """Nodes ``W`` and weights of a trapezoid rule in ``log W`` for ``W ~ chi2(dof)``.

    The density of ``s = log W`` is ``exp(dof s / 2 - e^s / 2) / (2^(dof/2) Gamma(dof/2))``:
    smooth, with an exponential left tail and a double-exponential right one, where the
    trapezoid rule converges fast. The grid reaches a relative density of ``e^-92``
    (1e-40) on both sides, in steps of at most a fifth of the density's width.
    """
    k = float(dof)
    mode = math.log(k)
    left = mode - 2.0 * 92.0 / k - 1.0
    right = math.log(k + 2.0 * 92.0 + 10.0 * math.sqrt(k))
    step = min(0.05, 0.2 * math.sqrt(2.0 / k))
    s = torch.arange(left, right + step, step, dtype=torch.float64)
    log_density = k / 2.0 * s - torch.exp(s) / 2.0
    weights = torch.exp(log_density - log_density.max())
    return torch.exp(s), weights / weights.sum()


def _pivot_sd(seed_variance: float, test_variance: float, dof: int) -> tuple[Tensor, Tensor]:
    """``sqrt(V(W))`` on the chi-squared grid, and the grid's weights."""
    w, weights = _chi2_grid(dof)
    return torch.sqrt(seed_variance * dof / w + test_variance), weights


def generalized_half_width(
    seed_variance: float, test_variance: float, dof: int, confidence: float
) -> float:
    """The ``h`` with ``E_W[erf(h / sqrt(2 V(W)))] = confidence`` (safeguarded Newton).

    Args:
        seed_variance: The estimated component (``>= 0``).
        test_variance: The known component (``>= 0``).
        dof: Degrees of freedom of the estimated component (``S - 1``, at least 1).
        confidence: Coverage in ``(0, 1)``.

    Returns:
        The half-width of the interval (0 when both components are 0).
    """
    if seed_variance == 0.0 and test_variance == 0.0:
        return 0.0
    sd, weights = _pivot_sd(seed_variance, test_variance, dof)
    root2 = math.sqrt(2.0)
    low, high = 0.0, math.inf
    h = 1.96 * math.sqrt(seed_variance + test_variance)
    for _ in range(200):
        excess = float((weights * torch.erf(h / (root2 * sd))).sum()) - confidence
        if excess < 0:
            low = h
        else:
            high = h
        if excess == 0 or (math.isfinite(high) and high - low <= 1e-14 * high):
            break
        slope = float((weights * torch.exp(-0.5 * (h / sd) ** 2) / sd).sum()) * math.sqrt(
            2.0 / math.pi
        )
        step = h - excess / slope if slope > 0 else math.nan
        if math.isfinite(step) and low < step < high:
            converged = abs(step - h) <= 1e-14 * h
            h = step
            if converged:
                break
        else:
            h = 2.0 * h if math.isinf(high) else 0.5 * (low + high)
    return h


def generalized_p_value(
    distance: float, seed_variance: float, test_variance: float, dof: int
) -> float:
    """Two-sided generalized p-value ``E_W[erfc(distance / sqrt(2 V(W)))]``, at most 1.

    Args:
        distance: ``|v_bar - null|``.
        seed_variance: The estimated component (``>= 0``).
        test_variance: The known component (``>= 0``).
        dof: Degrees of freedom of the estimated component (``S - 1``, at least 1).

    Returns:
        The p-value; with both components 0, 1 at ``distance == 0`` and 0 otherwise.
    """
    if seed_variance == 0.0 and test_variance == 0.0:
        return 1.0 if distance == 0.0 else 0.0
    sd, weights = _pivot_sd(seed_variance, test_variance, dof)
    return min(1.0, float((weights * torch.erfc(distance / (math.sqrt(2.0) * sd))).sum()))
