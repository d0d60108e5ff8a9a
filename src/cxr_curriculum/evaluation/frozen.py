"""Frozen-backbone features computed once and shared by the kNN and linear-probe protocols.

Both protocols only read features of a frozen backbone, so evaluating one backbone at
several label fractions (1 %, 10 %, 100 %) and with both protocols needs one pass over
the training and test sets, not one per call. A label-fraction subset is a set of rows
of the full training set's features (:func:`~cxr_curriculum.evaluation.train_subset`
returns a ``Subset`` of the training set, in its order). For small experiments on a large
training set, ``FrozenFeatures.compute(..., fraction=f, seed=s)`` extracts only the rows
of that label-fraction subset; they serve every fraction up to ``f`` with seed ``s``.
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
        train_x: ``(n, D)`` float32 features of the training items in
            ``train_indices`` (every item, in dataset order, by default).
        train_y: ``(n,)`` int64 training labels, or ``(n, C)`` float32 multi-label
            targets (NaN unknown).
        test_x: ``(M, D)`` float32 test features.
        test_y: ``(M,)`` int64 test labels, or ``(M, C)`` targets.
        image_size: Input side the features were computed at.
        train_indices: ``(n,)`` int64 rows of the training set that ``train_x`` holds,
            or None for all of them.
        train_size: Length of the training set they were computed for.

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
    train_indices: Tensor | None = None
    train_size: int | None = None

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
        fraction: float = 1.0,
        seed: int = 0,
    ) -> FrozenFeatures:
        """Extract the features of both sets with :func:`extract_features`.

        Args:
            backbone: Maps ``(B, 1, S, S)`` to ``(B, D)``.
            train_ds: Labelled training dataset.
            test_ds: Test dataset (every item is extracted).
            image_size: Input side in pixels.
            batch_size: Images per forward pass.
            device: Device of the extraction.
            num_workers: ``DataLoader`` workers.
            fraction: Extract only the training images of the label-fraction subset
                ``train_subset(train_ds, fraction, seed)`` (whole patients, seeded), for
                small experiments. Since subsets are nested for one seed, these
                features serve every fraction up to ``fraction`` with that ``seed``.
            seed: Seed of that subset.
        """
        subset = train_subset(train_ds, fraction, seed)
        indices = None if subset is train_ds else _subset_rows(subset, train_ds)
        train_x, train_y = extract_features(
            backbone, subset, image_size, batch_size, device, num_workers
        )
        test_x, test_y = extract_features(
            backbone, test_ds, image_size, batch_size, device, num_workers
        )
        n_train = len(train_ds)  # type: ignore[arg-type]
        return cls(train_x, train_y, test_x, test_y, int(image_size), indices, n_train)

    def check(self, train_ds: Dataset[Any], test_ds: Dataset[Any], image_size: int) -> None:
        """Raise a ValueError unless these features were computed for these datasets."""
        n_train = self.train_x.shape[0] if self.train_size is None else self.train_size
        for name, ds, rows in (
            ("train_ds", train_ds, n_train),
            ("test_ds", test_ds, self.test_x.shape[0]),
        ):
            n = len(ds)  # type: ignore[arg-type]
            if n != rows:
                raise ValueError(
                    f"features were computed for a dataset of {rows} items as {name}, which "
                    f"has {n} items: they were computed on another dataset"
                )
        if image_size != self.image_size:
            raise ValueError(
                f"features were computed at image_size={self.image_size}, "
                f"the call asks for image_size={image_size}"
            )

    def rows_for(self, indices: Tensor) -> Tensor:
        """Positions in ``train_x`` of training-set rows ``indices``.

        Raises:
            ValueError: If some of them were not extracted (features computed with a
                smaller ``fraction`` or another ``seed``).
        """
        if self.train_indices is None:
            return indices
        lookup = torch.full((int(self.train_size or 0),), -1, dtype=torch.long)
        lookup[self.train_indices] = torch.arange(self.train_indices.numel())
        pos = lookup[indices]
        if bool((pos < 0).any()):
            raise ValueError(
                f"the features hold {self.train_indices.numel()} of {self.train_size} training "
                f"images (computed with a label fraction); this call needs "
                f"{int((pos < 0).sum())} others: use the same seed and a fraction no larger "
                "than the one given to FrozenFeatures.compute"
            )
        return pos


def _subset_rows(subset: Dataset[Any], train_ds: Dataset[Any]) -> Tensor:
    if not isinstance(subset, Subset) or subset.dataset is not train_ds:
        raise ValueError("the label-fraction subset is not a Subset of train_ds")
    return torch.as_tensor(list(subset.indices), dtype=torch.long)


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
        ``(train_x, train_y, test_x, test_y)``: ``(n, D)``, ``(n,)`` (or ``(n, C)``
        multi-label targets), ``(M, D)``, ``(M,)`` (or ``(M, C)``).
    """
    if features is None:
        own = FrozenFeatures.compute(
            backbone, train_ds, test_ds, image_size=image_size, batch_size=batch_size,
            device=device, num_workers=num_workers, fraction=fraction, seed=seed,
        )  # fmt: skip
        return own.train_x, own.train_y, own.test_x, own.test_y
    features.check(train_ds, test_ds, image_size)
    subset = train_subset(train_ds, fraction, seed)
    if subset is train_ds and features.train_indices is None:
        return features.train_x, features.train_y, features.test_x, features.test_y
    n_train = len(train_ds)  # type: ignore[arg-type]
    wanted = torch.arange(n_train) if subset is train_ds else _subset_rows(subset, train_ds)
    rows = features.rows_for(wanted)
    return features.train_x[rows], features.train_y[rows], features.test_x, features.test_y
