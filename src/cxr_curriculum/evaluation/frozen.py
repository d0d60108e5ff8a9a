"""Frozen-backbone features computed once and shared by the kNN and linear-probe protocols.

Both protocols only read features of a frozen backbone, so evaluating one backbone at
several label fractions (1 %, 10 %, 100 %) and with both protocols needs one pass over
the training and test sets, not one per call. A label-fraction subset is a set of rows
of the full training set's features (:func:`~cxr_curriculum.evaluation.train_subset`
returns a ``Subset`` of the training set, in its order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from cxr_curriculum.evaluation.features import extract_features
from cxr_curriculum.evaluation.fractions import train_subset

__all__ = ["FrozenFeatures", "frozen_inputs"]


@dataclass(frozen=True)
class FrozenFeatures:
    """Pooled features of one frozen backbone on a training and a test set.

    Attributes:
        train_x: ``(N, D)`` float32 features of every training item, in dataset order.
        train_y: ``(N,)`` int64 training labels.
        test_x: ``(M, D)`` float32 test features.
        test_y: ``(M,)`` int64 test labels.
        image_size: Input side the features were computed at.

    Example:
        >>> feats = FrozenFeatures.compute(backbone, train_ds, test_ds)  # doctest: +SKIP
        >>> for fraction in (0.01, 0.1, 1.0):  # doctest: +SKIP
        ...     knn_evaluate(backbone, train_ds, test_ds, fraction=fraction, features=feats)
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    image_size: int

    @classmethod
    def compute(
        cls,
        backbone: nn.Module,
        train_ds: Dataset[Any],
        test_ds: Dataset[Any],
        *,
        image_size: int = 64,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        num_workers: int = 0,
    ) -> FrozenFeatures:
        """Extract the features of both sets with :func:`extract_features`."""
        train_x, train_y = extract_features(
            backbone, train_ds, image_size, batch_size, device, num_workers
        )
        test_x, test_y = extract_features(
            backbone, test_ds, image_size, batch_size, device, num_workers
        )
        return cls(train_x, train_y, test_x, test_y, int(image_size))

    def check(self, train_ds: Dataset[Any], test_ds: Dataset[Any], image_size: int) -> None:
        """Raise a ValueError unless these features were computed for these datasets."""
        for name, ds, x in (
            ("train_ds", train_ds, self.train_x),
            ("test_ds", test_ds, self.test_x),
        ):
            n = len(ds)  # type: ignore[arg-type]
            if n != x.shape[0]:
                raise ValueError(
                    f"features hold {x.shape[0]} rows for {name}, which has {n} items: "
                    "they were computed on another dataset"
                )
        if image_size != self.image_size:
            raise ValueError(
                f"features were computed at image_size={self.image_size}, "
                f"the call asks for image_size={image_size}"
            )


def frozen_inputs(
    backbone: nn.Module,
    train_ds: Dataset[Any],
    test_ds: Dataset[Any],
    fraction: float,
    seed: int,
    features: FrozenFeatures | None,
    image_size: int,
    batch_size: int,
    device: str | torch.device | None,
    num_workers: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Features and labels of the labelled subset at ``fraction`` and of the test set.

    With ``features``, rows are selected from them (checked against the datasets);
    otherwise the subset and the test set are passed through ``backbone``.

    Returns:
        ``(train_x, train_y, test_x, test_y)``: ``(n, D)``, ``(n,)``, ``(M, D)``, ``(M,)``.
    """
    subset = train_subset(train_ds, fraction, seed)
    if features is None:
        own = FrozenFeatures.compute(
            backbone, subset, test_ds, image_size=image_size, batch_size=batch_size,
            device=device, num_workers=num_workers,
        )  # fmt: skip
        return own.train_x, own.train_y, own.test_x, own.test_y
    features.check(train_ds, test_ds, image_size)
    if subset is train_ds:
        return features.train_x, features.train_y, features.test_x, features.test_y
    if not isinstance(subset, Subset) or subset.dataset is not train_ds:
        raise ValueError("the label-fraction subset is not a Subset of train_ds")
    rows = torch.as_tensor(list(subset.indices), dtype=torch.long)
    return features.train_x[rows], features.train_y[rows], features.test_x, features.test_y
