"""Paired comparison of two classifiers' AUROC on the same test set.

A paired (optionally patient-clustered) bootstrap of the AUROC difference, with
DeLong's test on the same items (DeLong, DeLong & Clarke-Pearson, Biometrics 1988;
:mod:`cxr_curriculum.stats.delong`). The result is the package's one
:class:`~cxr_curriculum.stats.PairedComparison`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cxr_curriculum.evaluation.metrics import binary_auroc
from cxr_curriculum.stats import Groups, PairedComparison, delong_test, paired_bootstrap
from cxr_curriculum.stats.delong import binary_inputs

__all__ = ["paired_auroc_test"]


def paired_auroc_test(
    scores_a: Any,
    scores_b: Any,
    labels: Any,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Groups = None,
) -> PairedComparison:
    """Compare two models' AUROC on the same items: paired bootstrap and DeLong.

    Each resample draws items (or, with ``groups``, whole patients) once and scores
    both models on it, so the interval reflects the correlation between the models.
    Resamples holding one class are skipped (counted in ``n_valid``).

    Args:
        scores_a: ``(N,)`` or ``(N, 2)`` scores of model a.
        scores_b: Scores of model b for the same items in the same order.
        labels: ``(N,)`` labels in ``{0, 1}``.
        n_resamples: Bootstrap resamples (>= 1).
        confidence: Interval coverage in ``(0, 1)``.
        seed: Seed of the resampling generator.
        groups: Optional patient id per item for a cluster bootstrap.

    Returns:
        A :class:`~cxr_curriculum.stats.PairedComparison` with ``metric="auroc"``,
        the bootstrap interval and p-value of ``auroc_a - auroc_b``, and ``delong``.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    a, y = binary_inputs(scores_a, labels)
    b, _ = binary_inputs(scores_b, labels)
    delong = delong_test(a, b, y)
    cmp = paired_bootstrap(
        binary_auroc,
        a,
        b,
        y,
        groups=groups,
        metric="auroc",
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        min_valid=0.5,
    )
    return replace(cmp, delong=delong)
