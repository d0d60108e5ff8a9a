"""Classification metrics in torch: AUROC (binary and one-vs-rest), accuracy, F1, ...

Every function takes tensors (or anything ``torch.as_tensor`` accepts), agrees with
the scikit-learn function of the same name (checked in the tests), and raises a
``ValueError`` where the metric is undefined instead of returning NaN.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cxr_curriculum.evaluation.thresholds import apply_threshold
from cxr_curriculum.stats.delong import midranks

__all__ = [
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "binary_auroc",
    "classification_metrics",
    "f1_score",
    "metric_functions",
    "midranks",
    "sensitivity",
    "specificity",
]


def _labels(labels: Any) -> Tensor:
    y = torch.as_tensor(labels).detach().cpu()
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,); got shape {tuple(y.shape)}")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise ValueError("labels must be integer class indices")
        y = y.long()
    return y.long()


def _pair(pred: Any, labels: Any) -> tuple[Tensor, Tensor]:
    y = _labels(labels)
    p = _labels(pred)
    if p.shape != y.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and labels {tuple(y.shape)} differ")
    if y.numel() == 0:
        raise ValueError("metrics need at least one item")
    return p, y


def binary_auroc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve for one positive class (Mann-Whitney U with midranks).

    Args:
        scores: ``(N,)`` scores, higher meaning more likely positive.
        labels: ``(N,)`` labels in ``{0, 1}``.

    Returns:
        The AUROC in ``[0, 1]``; ties between a positive and a negative count one half.

    Raises:
        ValueError: If only one class is present or the labels are not binary.
    """
    s = torch.as_tensor(scores).detach().cpu().double()
    y = _labels(labels)
    if s.shape != y.shape:
        raise ValueError(f"scores {tuple(s.shape)} and labels {tuple(y.shape)} must match")
    if not torch.isin(y, torch.tensor([0, 1])).all():
        raise ValueError("binary AUROC needs labels in {0, 1}")
    n_pos = int(y.sum())
    n_neg = y.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC is undefined when only one class is present")
    rank_sum = float(midranks(s)[y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def auroc(scores: Any, labels: Any, average: str = "macro") -> float:
    """AUROC for binary or multi-class problems (one-vs-rest).

    Args:
        scores: ``(N,)`` positive-class scores, or ``(N, C)`` per-class scores
            (probabilities or logits; only their order within a column matters).
            With ``C == 2`` the second column is the positive score.
        labels: ``(N,)`` class indices in ``[0, C)``.
        average: For ``C > 2``: ``"macro"`` (unweighted mean of the per-class
            one-vs-rest AUROCs, scikit-learn's ``multi_class="ovr"`` default) or
            ``"weighted"`` (weighted by class prevalence).

    Returns:
        The AUROC.

    Raises:
        ValueError: On bad shapes, an unknown ``average`` or a class with no items.
    """
    s = torch.as_tensor(scores).detach().cpu()
    y = _labels(labels)
    if s.ndim == 1:
        return binary_auroc(s, y)
    if s.ndim != 2 or s.shape[0] != y.shape[0]:
        raise ValueError(f"scores must be (N,) or (N, C) with N={y.shape[0]}; got {tuple(s.shape)}")
    n_classes = s.shape[1]
    if n_classes < 2:
        raise ValueError("scores need at least two columns (classes)")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}) for {n_classes} score columns")
    if n_classes == 2:
        return binary_auroc(s[:, 1], y)
    if average not in ("macro", "weighted"):
        raise ValueError(f"average must be 'macro' or 'weighted'; got {average!r}")
    per_class = torch.tensor(
        [binary_auroc(s[:, c], y == c) for c in range(n_classes)], dtype=torch.float64
    )
    if average == "macro":
        return float(per_class.mean())
    weights = torch.bincount(y, minlength=n_classes).double()
    return float((per_class * weights).sum() / weights.sum())


def accuracy(pred: Any, labels: Any) -> float:
    """Fraction of predictions equal to the label."""
    p, y = _pair(pred, labels)
    return float((p == y).double().mean())


def _recall(p: Tensor, y: Tensor, cls: int) -> float:
    mask = y == cls
    if not mask.any():
        raise ValueError(f"recall of class {cls} is undefined: no item has that label")
    return float((p[mask] == cls).double().mean())


def sensitivity(pred: Any, labels: Any, positive: int = 1) -> float:
    """True-positive rate: recall of the ``positive`` class."""
    p, y = _pair(pred, labels)
    return _recall(p, y, positive)


def specificity(pred: Any, labels: Any, positive: int = 1) -> float:
    """True-negative rate: the fraction of non-``positive`` items not predicted positive."""
    p, y = _pair(pred, labels)
    neg = y != positive
    if not neg.any():
        raise ValueError("specificity is undefined: every item is positive")
    return float((p[neg] != positive).double().mean())


def balanced_accuracy(pred: Any, labels: Any) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    p, y = _pair(pred, labels)
    return float(torch.tensor([_recall(p, y, int(c)) for c in torch.unique(y)]).mean())


def _f1(p: Tensor, y: Tensor, cls: int) -> float:
    tp = int(((p == cls) & (y == cls)).sum())
    denom = int((p == cls).sum()) + int((y == cls).sum())
    return 0.0 if denom == 0 else 2.0 * tp / denom


def f1_score(pred: Any, labels: Any, positive: int | None = 1) -> float:
    """F1 score of the ``positive`` class, or the macro mean over classes if ``None``.

    With no positive predictions and no positive labels the F1 is 0 (scikit-learn's
    ``zero_division=0``). The macro mean runs over the classes present in either
    ``pred`` or ``labels``, as in scikit-learn.
    """
    p, y = _pair(pred, labels)
    if positive is not None:
        return _f1(p, y, positive)
    classes = torch.unique(torch.cat([p, y]))
    return float(torch.tensor([_f1(p, y, int(c)) for c in classes]).mean())


def _metric_table(n_classes: int, threshold: float | None = None) -> dict[str, Any]:
    """Score-based metric functions ``(scores (N, C), labels (N,)) -> float`` by name."""
    binary = n_classes == 2
    if threshold is not None and not binary:
        raise ValueError(f"threshold= is for two classes; these scores have {n_classes}")

    def predict(s: Tensor) -> Tensor:
        return s.argmax(1) if threshold is None else apply_threshold(s, threshold)

    table: dict[str, Any] = {
        "auroc": lambda s, y: auroc(s, y),
        "accuracy": lambda s, y: accuracy(predict(s), y),
        "balanced_accuracy": lambda s, y: balanced_accuracy(predict(s), y),
        "f1": lambda s, y: f1_score(predict(s), y, 1 if binary else None),
    }
    if binary:
        table["sensitivity"] = lambda s, y: sensitivity(predict(s), y)
        table["specificity"] = lambda s, y: specificity(predict(s), y)
    return table


def metric_functions(n_classes: int, threshold: float | None = None) -> dict[str, Any]:
    """The metrics of :func:`classification_metrics` as functions of ``(scores, labels)``.

    Useful with :func:`~cxr_curriculum.stats.bootstrap_ci`, which resamples
    ``scores (N, C)`` and ``labels (N,)`` together.

    Args:
        n_classes: Number of score columns ``C`` (>= 2).
        threshold: For two classes, call class 1 when its score is ``>= threshold``
            (see :func:`~cxr_curriculum.evaluation.choose_threshold`); default arg-max.

    Returns:
        ``{name: fn}``.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2; got {n_classes}")
    return _metric_table(n_classes, threshold)


def classification_metrics(
    scores: Any, labels: Any, threshold: float | None = None
) -> dict[str, float]:
    """All metrics of this module from per-class scores.

    Args:
        scores: ``(N, C)`` per-class scores (probabilities).
        labels: ``(N,)`` class indices.
        threshold: For two classes, the prediction is class 1 where its score is
            ``>= threshold`` (choose it on a validation split with
            :func:`~cxr_curriculum.evaluation.choose_threshold`). ``None``: the
            arg-max (a 0.5 threshold for two probabilities).

    Returns:
        ``auroc``, ``accuracy``, ``balanced_accuracy`` and, for two classes,
        ``f1``, ``sensitivity`` and ``specificity`` of class 1; for more classes
        ``f1`` is the macro F1. A metric undefined on these labels (e.g. AUROC
        with one class present) is left out. AUROC does not depend on the threshold.

    Raises:
        ValueError: If the shapes do not match, or ``threshold`` is given for more
            than two classes.
    """
    s = torch.as_tensor(scores).detach().cpu()
    if s.ndim != 2 or s.shape[1] < 2:
        raise ValueError(f"scores must be (N, C) with C >= 2; got {tuple(s.shape)}")
    y = _labels(labels)
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"scores {tuple(s.shape)} and labels {tuple(y.shape)} differ in N")
    out: dict[str, float] = {}
    for name, fn in _metric_table(s.shape[1], threshold).items():
        try:
            out[name] = float(fn(s, y))
        except ValueError:
            continue
    return out
