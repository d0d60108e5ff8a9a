"""Weighted k-nearest-neighbour classification of frozen features.

The monitor used across self-supervised learning papers (Wu et al., "Unsupervised
Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018, Sec. 3.4):
cosine similarity to every training feature, the ``k`` most similar vote for their
class with weight ``exp(s / T)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cxr_curriculum.evaluation.fractions import class_names_of, num_classes_of, patient_ids_of
from cxr_curriculum.evaluation.frozen import FrozenFeatures, frozen_inputs
from cxr_curriculum.evaluation.results import EvalResult

__all__ = ["knn_accuracy", "knn_evaluate", "knn_predict", "knn_predict_multilabel"]


def _check(
    train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, k: int, temperature: float
) -> None:
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError(
            "features must be 2-D (N, D); got train "
            f"{tuple(train_feats.shape)} and test {tuple(test_feats.shape)}"
        )
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"train and test feature dims differ: {train_feats.shape[1]} vs {test_feats.shape[1]}"
        )
    if train_labels.shape != (train_feats.shape[0],):
        raise ValueError(
            f"train_labels must have shape ({train_feats.shape[0]},); "
            f"got {tuple(train_labels.shape)}"
        )
    if train_feats.shape[0] == 0:
        raise ValueError("the training set of a kNN classifier must not be empty")
    if train_labels.numel() and int(train_labels.min()) < 0:
        raise ValueError("train_labels must be class indices >= 0 (unlabelled items are -1)")
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")


@torch.no_grad()
def knn_predict(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> Tensor:
    """Class probabilities of a temperature-weighted cosine kNN (Wu et al. 2018).

    For each test feature the ``k`` training features with the largest cosine
    similarity ``s`` vote for their class with weight ``exp(s / temperature)``; the
    votes are normalised to sum to one. ``k`` larger than the training set is
    clipped to its size.

    Args:
        train_feats: ``(N, D)`` training features (need not be normalised).
        train_labels: ``(N,)`` integer class indices in ``[0, num_classes)``.
        test_feats: ``(M, D)`` features to classify.
        k: Number of neighbours (>= 1).
        temperature: Softness of the vote (> 0); 0.07 as in Wu et al.
        num_classes: Number of classes; defaults to ``max(train_labels) + 1``.
        chunk_size: Test rows per similarity block, to bound memory at
            ``chunk_size x N``.

    Returns:
        ``(M, num_classes)`` float32 vote shares; row ``i`` sums to 1.

    Raises:
        ValueError: On mismatched shapes, negative labels, ``k < 1`` or a
            non-positive temperature.
    """
    _check(train_feats, train_labels, test_feats, k, temperature)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    n_classes = int(train_labels.max()) + 1 if num_classes is None else num_classes
    if n_classes <= int(train_labels.max()):
        raise ValueError(
            f"num_classes={num_classes} but train_labels holds class {int(train_labels.max())}"
        )
    labels = train_labels.long().to(train_feats.device)
    out = []
    for top_idx, weights in _neighbours(train_feats, test_feats, k, temperature, chunk_size):
        votes = torch.zeros(top_idx.shape[0], n_classes, device=weights.device)
        votes.scatter_add_(1, labels[top_idx], weights)
        out.append(votes / votes.sum(dim=1, keepdim=True))
    if not out:
        return torch.zeros(0, n_classes)
    return torch.cat(out).cpu()


def _neighbours(
    train_feats: Tensor, test_feats: Tensor, k: int, temperature: float, chunk_size: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Per chunk of test rows: ``(m, k)`` indices of the most cosine-similar training
    rows and their vote weights ``exp((s - s_max) / T)``."""
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float().to(train.device), dim=1)
    for start in range(0, test.shape[0], chunk_size):
        sim = test[start : start + chunk_size] @ train.T  # (m, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (m, k)
        # Subtracting the row max leaves the normalised vote unchanged and avoids overflow.
        yield top_idx, ((top_sim - top_sim[:, :1]) / temperature).exp()


@torch.no_grad()
def knn_predict_multilabel(
    train_feats: Tensor,
    train_targets: Tensor,
    test_feats: Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
) -> Tensor:
    """Per-finding scores of a temperature-weighted cosine kNN for multi-label targets.

    The ``k`` nearest training images vote as in :func:`knn_predict`; for finding
    ``c`` the score is the weighted share of positives among the neighbours whose
    label for ``c`` is known (unknown labels do not vote). Where no neighbour knows
    the label, the score is the finding's prevalence among the known training labels.

    Args:
        train_feats: ``(N, D)`` training features.
        train_targets: ``(N, C)`` targets: 1 present, 0 absent, NaN unknown.
        test_feats: ``(M, D)`` features to score.
        k: Number of neighbours (>= 1).
        temperature: Softness of the vote (> 0).
        chunk_size: Test rows per similarity block.

    Returns:
        ``(M, C)`` float32 scores in ``[0, 1]``.
    """
    if train_targets.ndim != 2 or train_targets.shape[0] != train_feats.shape[0]:
        raise ValueError(
            f"train_targets must be (N, C) with N={train_feats.shape[0]}; "
            f"got {tuple(train_targets.shape)}"
        )
    _check(
        train_feats, torch.zeros(train_feats.shape[0], dtype=torch.long), test_feats, k, temperature
    )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")
    t = train_targets.float().to(train_feats.device)
    known = (~torch.isnan(t)).float()
    positive = torch.nan_to_num(t, nan=0.0) * known
    prevalence = positive.sum(0) / known.sum(0).clamp_min(1.0)
    out = []
    for top_idx, weights in _neighbours(train_feats, test_feats, k, temperature, chunk_size):
        w = weights[:, :, None]  # (m, k, 1)
        num = (w * positive[top_idx]).sum(1)
        den = (w * known[top_idx]).sum(1)
        out.append(torch.where(den > 0, num / den.clamp_min(1e-30), prevalence))
    if not out:
        return torch.zeros(0, t.shape[1])
    return torch.cat(out).cpu()


def knn_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Top-1 accuracy of :func:`knn_predict` on labelled test features.

    Args:
        train_feats: ``(N, D)`` training features.
        train_labels: ``(N,)`` class indices.
        test_feats: ``(M, D)`` test features.
        test_labels: ``(M,)`` class indices.
        k: Number of neighbours.
        temperature: Vote temperature.

    Returns:
        The fraction of test items whose highest vote share is their label
        (ties go to the lower class index).

    Raises:
        ValueError: On mismatched shapes or an empty test set.
    """
    if test_labels.shape != (test_feats.shape[0],):
        raise ValueError(
            f"test_labels must have shape ({test_feats.shape[0]},); got {tuple(test_labels.shape)}"
        )
    if test_feats.shape[0] == 0:
        raise ValueError("the test set must not be empty")
    _check(train_feats, train_labels, test_feats, k, temperature)
    n_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    probs = knn_predict(train_feats, train_labels, test_feats, k, temperature, n_classes)
    return float((probs.argmax(dim=1) == test_labels.long().cpu()).float().mean())


def knn_evaluate(
    backbone: nn.Module,
    train_ds: Dataset[Any],
    test_ds: Dataset[Any],
    *,
    fraction: float = 1.0,
    seed: int = 0,
    k: int = 20,
    temperature: float = 0.07,
    image_size: int = 64,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    features: FrozenFeatures | None = None,
) -> EvalResult:
    """kNN protocol: frozen features of the labelled subset vote for each test image.

    Args:
        backbone: Maps ``(B, 1, S, S)`` to pooled features ``(B, D)``.
        train_ds: Labelled training dataset (``.labels``, ``.patient_ids``).
        test_ds: Labelled test dataset.
        fraction: Share of training labels in ``(0, 1]`` (patient-level subset).
        seed: Seed of the label subset.
        k: Neighbours.
        temperature: Vote temperature.
        image_size: Input side in pixels.
        batch_size: Images per forward pass.
        device: Device of the feature extraction.
        num_workers: ``DataLoader`` workers.
        features: Features of ``train_ds`` and ``test_ds`` computed once with
            :meth:`FrozenFeatures.compute` (same ``image_size``); the subset's rows are
            taken from them instead of running the backbone again.

    Returns:
        An :class:`EvalResult` whose scores are the vote shares; for a multi-label
        dataset (2-D ``.targets``), the per-finding scores of
        :func:`knn_predict_multilabel` and ``(M, C)`` targets as labels.
    """
    train_x, train_y, test_x, test_y = frozen_inputs(
        backbone, train_ds, test_ds, fraction, seed, features,
        image_size, batch_size, device, num_workers,
    )  # fmt: skip
    if train_y.ndim == 2:  # multi-label targets
        scores = knn_predict_multilabel(train_x, train_y, test_x, k, temperature)
    else:
        n_classes = num_classes_of(train_ds, test_ds, labels=torch.cat([train_y, test_y]))
        scores = knn_predict(train_x, train_y, test_x, k, temperature, n_classes)
    return EvalResult(
        "knn", scores, test_y, patient_ids_of(test_ds), float(fraction), seed, len(train_y),
        classes=class_names_of(test_ds, scores.shape[1]),
    )  # fmt: skip
