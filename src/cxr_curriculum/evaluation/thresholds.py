"""Decision thresholds chosen on a validation split, for use on the test split.

The arg-max of two class probabilities is a 0.5 threshold, which suits neither an
imbalanced test set nor a screening task. :func:`choose_threshold` picks the threshold
on validation scores by one of three rules and :func:`apply_threshold` (or
``classification_metrics(..., threshold=t)``) applies it to test scores; choosing it
on the test split itself would report an optimistic result.

Rules (an item is called positive when its score is ``>= threshold``, as in
scikit-learn's ``roc_curve``; candidates are the distinct scores and ``+inf``):

- ``"youden"``: maximise Youden's J = sensitivity + specificity - 1 (Youden,
  "Index for rating diagnostic tests", Cancer 1950); ties go to the highest threshold.
- ``"sensitivity"``: the highest threshold whose sensitivity is at least ``target``
  (the best specificity at that sensitivity; screening).
- ``"specificity"``: the lowest threshold whose specificity is at least ``target``
  (the best sensitivity at that specificity).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from cxr_curriculum.stats.delong import binary_inputs

__all__ = ["THRESHOLD_RULES", "ThresholdRule", "apply_threshold", "choose_threshold", "roc_points"]

ThresholdRule = Literal["youden", "sensitivity", "specificity"]
#: The rules :func:`choose_threshold` accepts.
THRESHOLD_RULES: tuple[str, ...] = ("youden", "sensitivity", "specificity")


def roc_points(scores: Any, labels: Any) -> tuple[Tensor, Tensor, Tensor]:
    """Every point of the empirical ROC curve.

    Args:
        scores: ``(N,)`` positive-class scores, or ``(N, 2)`` class scores.
        labels: ``(N,)`` labels in ``{0, 1}`` (both present).

    Returns:
        ``(thresholds, tpr, fpr)``, each ``(T + 1,)`` float64 for the ``T`` distinct
        scores in decreasing order, preceded by ``+inf`` (nothing called positive);
        the same points as scikit-learn's ``roc_curve(..., drop_intermediate=False)``.
    """
    s, y = binary_inputs(scores, labels)
    values, inverse = torch.unique(s, sorted=True, return_inverse=True)
    pos = torch.zeros(values.numel(), dtype=torch.float64).index_add_(0, inverse, y.double())
    tot = torch.bincount(inverse, minlength=values.numel()).double()
    # Descending thresholds: cumulative counts of items with score >= each value.
    tp = pos.flip(0).cumsum(0)
    fp = (tot - pos).flip(0).cumsum(0)
    zero = torch.zeros(1, dtype=torch.float64)
    thresholds = torch.cat([torch.tensor([float("inf")], dtype=torch.float64), values.flip(0)])
    tpr = torch.cat([zero, tp / float(y.sum())])
    fpr = torch.cat([zero, fp / float((1 - y).sum())])
    return thresholds, tpr, fpr


def choose_threshold(
    scores: Any,
    labels: Any,
    rule: ThresholdRule = "youden",
    target: float | None = None,
) -> float:
    """Choose a decision threshold on validation scores.

    Args:
        scores: ``(N,)`` positive-class scores, or ``(N, 2)`` class probabilities
            (column 1 is the positive class), of the *validation* split.
        labels: ``(N,)`` validation labels in ``{0, 1}``, both present.
        rule: ``"youden"``, ``"sensitivity"`` or ``"specificity"`` (module docstring).
        target: The sensitivity or specificity to reach, in ``(0, 1]``; only for those
            rules.

    Returns:
        The threshold: call an item positive when its score is ``>= threshold``
        (``+inf`` calls nothing positive).

    Raises:
        ValueError: On an unknown rule, a missing or out-of-range ``target``, or
            labels that are not binary with both classes.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"rule must be one of {THRESHOLD_RULES}; got {rule!r}")
    if rule == "youden":
        if target is not None:
            raise ValueError("rule='youden' takes no target")
    elif target is None or not 0.0 < float(target) <= 1.0:
        raise ValueError(f"rule={rule!r} needs a target in (0, 1], e.g. 0.9; got {target}")
    goal = 0.0 if target is None else float(target) - 1e-12  # tolerate rounding of rates
    thresholds, tpr, fpr = roc_points(scores, labels)
    if rule == "youden":
        index = int(torch.argmax(tpr - fpr))  # first maximum: the highest threshold
    elif rule == "sensitivity":
        # tpr is non-decreasing: the first point reaching the target.
        index = int(torch.nonzero(tpr >= goal)[0])
    else:
        index = int(torch.nonzero((1.0 - fpr) >= goal)[-1])
    return float(thresholds[index])


def apply_threshold(scores: Any, threshold: float) -> Tensor:
    """``(N,)`` int64 predictions: 1 where the positive score is ``>= threshold``.

    Args:
        scores: ``(N,)`` positive-class scores, or ``(N, 2)`` class scores.
        threshold: From :func:`choose_threshold`.
    """
    s = torch.as_tensor(scores).detach().cpu()
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.ndim != 1:
        raise ValueError(
            f"a threshold applies to binary scores (N,) or (N, 2); got {tuple(s.shape)}"
        )
    return (s.double() >= float(threshold)).long()
