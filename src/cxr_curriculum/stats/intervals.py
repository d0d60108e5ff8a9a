"""A point estimate with a bootstrap percentile confidence interval.

The percentile interval (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993,
Ch. 13) takes the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of
the bootstrap replicates of a statistic, with linear interpolation between order
statistics (numpy's default ``"linear"`` method, Hyndman & Fan type 7).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["ConfidenceInterval", "check_confidence", "percentile_interval"]


def check_confidence(confidence: float) -> None:
    """Raise a ValueError unless ``0 < confidence < 1``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), e.g. 0.95; got {confidence}")


def percentile_interval(replicates: Tensor, confidence: float = 0.95) -> tuple[float, float]:
    """Equal-tailed percentile interval of bootstrap replicates.

    Args:
        replicates: ``(B,)`` values of the statistic on the resamples; NaN entries
            (resamples on which it was undefined) are ignored.
        confidence: Coverage in ``(0, 1)``.

    Returns:
        ``(low, high)``; ``(nan, nan)`` if no replicate is finite.
    """
    check_confidence(confidence)
    v = replicates.detach().double().flatten()
    v = v[~torch.isnan(v)]
    if v.numel() == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)
    low, high = torch.quantile(v, q).tolist()
    return float(low), float(high)


def count_valid(replicates: Tensor, min_valid: float, what: str) -> int:
    """Defined (non-NaN) entries of ``(B,)`` replicates; a ValueError if too few.

    Args:
        replicates: ``(B,)`` bootstrap replicates, NaN where the statistic was undefined.
        min_valid: Smallest fraction of the ``B`` replicates that must be defined.
        what: What was undefined, for the error (e.g. ``"value of the AUROC"``).

    Raises:
        ValueError: If fewer than ``max(1, min_valid * B)`` replicates are defined.
    """
    n_valid = int((~torch.isnan(replicates)).sum())
    if n_valid < max(1, min_valid * replicates.numel()):
        raise ValueError(
            f"only {n_valid} of {replicates.numel()} bootstrap resamples gave a defined "
            f"{what} (min_valid={min_valid}); use more items, fewer rare classes, or a "
            "lower min_valid"
        )
    return n_valid


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with a bootstrap percentile interval.

    Attributes:
        estimate: The statistic on the full sample (for a mean: the mean of the valid
            values).
        low: Lower bound of the interval.
        high: Upper bound of the interval.
        confidence: Nominal coverage, e.g. 0.95.
        n: Items the estimate used.
        n_clusters: Clusters (patients) among them; equals ``n`` without cluster ids.
        n_resamples: Bootstrap resamples drawn.
        n_valid: Resamples on which the statistic was defined (e.g. both classes
            present); the interval uses these.
        n_nan: Items left out because their value was NaN (e.g. an empty saliency map).
        n_seeds: What the interval covers. ``None``: the test items only (one trained
            model; a patient bootstrap percentile interval). ``S``: the estimate is a
            mean over ``S`` training seeds and the interval is the seed-level
            interval of :func:`cxr_curriculum.stats.seed_interval` (used by
            :func:`cxr_curriculum.study.two_level_interval`), which also covers the
            training randomness; ``n``/``n_clusters`` then count test images/patients and
            ``n_resamples``/``n_valid`` the patient resamples of its test-set component.
        seed_variance: The seed component of the estimate's variance, ``s**2 / S``
            (seed-level intervals only).
        test_variance: The shared test-set component (seed-level intervals only).
    """

    estimate: float
    low: float
    high: float
    confidence: float = 0.95
    n: int = 0
    n_clusters: int = 0
    n_resamples: int = 0
    n_valid: int = 0
    n_nan: int = 0
    n_seeds: int | None = None
    seed_variance: float | None = None
    test_variance: float | None = None

    @classmethod
    def from_replicates(
        cls,
        estimate: float,
        replicates: Tensor,
        *,
        confidence: float = 0.95,
        n: int = 0,
        n_clusters: int = 0,
        n_nan: int = 0,
        min_valid: float = 0.0,
        what: str = "the statistic",
        n_seeds: int | None = None,
    ) -> ConfidenceInterval:
        """Build the interval from ``(B,)`` bootstrap replicates (NaN = undefined).

        Args:
            estimate: The statistic on the full sample.
            replicates: ``(B,)`` values on the resamples; NaN where undefined.
            confidence: Coverage in ``(0, 1)``.
            n: Items the estimate used.
            n_clusters: Clusters among them.
            n_nan: Items left out as NaN.
            min_valid: Smallest fraction of the ``B`` resamples that must be valid.
            what: Name of the statistic for the error message.
            n_seeds: Training seeds the replicates cover (see the class); ``None``: none.

        Raises:
            ValueError: If fewer than ``max(1, min_valid * B)`` replicates are valid.
        """
        v = replicates.detach().double().flatten()
        n_resamples = v.numel()
        n_valid = count_valid(v, min_valid, f"value of {what}")
        low, high = percentile_interval(v, confidence)
        return cls(
            float(estimate),
            low,
            high,
            confidence,
            n,
            n_clusters,
            n_resamples,
            n_valid,
            n_nan,
            n_seeds,
        )

    def __str__(self) -> str:
        pct = round(100 * self.confidence)
        return f"{self.estimate:.3f} ({pct}% CI {self.low:.3f}-{self.high:.3f})"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)
