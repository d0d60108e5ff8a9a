"""The result of a downstream protocol: per-image scores, with metrics and intervals on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from cxr_curriculum.evaluation.bootstrap import ConfidenceInterval, bootstrap_ci
from cxr_curriculum.evaluation.metrics import classification_metrics, metric_functions

__all__ = ["EvalResult"]


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Per-image test scores of one protocol run, the raw material for metrics and CIs.

    Attributes:
        protocol: ``"knn"``, ``"linear_probe"`` or ``"fine_tune"``.
        scores: ``(N, C)`` float32 class probabilities for the ``N`` test images.
        labels: ``(N,)`` int64 test labels, in test-dataset order.
        patient_ids: Patient id per test image (for clustered intervals), or None.
        fraction: Share of training labels used (e.g. 0.01).
        seed: Seed of the label subset and of the training run.
        n_train: Number of labelled training images used.
        train_loss: Training loss per epoch (linear probe: final loss; kNN: empty).
        model: The trained classifier (``fine_tune`` and ``linear_probe``), else None.
    """

    protocol: str
    scores: Tensor
    labels: Tensor
    patient_ids: tuple[str, ...] | None
    fraction: float
    seed: int
    n_train: int
    train_loss: tuple[float, ...] = ()
    model: nn.Module | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.scores.ndim != 2 or self.labels.shape != (self.scores.shape[0],):
            raise ValueError(
                f"scores must be (N, C) and labels (N,); got {tuple(self.scores.shape)} "
                f"and {tuple(self.labels.shape)}"
            )
        if self.patient_ids is not None and len(self.patient_ids) != self.scores.shape[0]:
            raise ValueError("patient_ids must have one entry per test image")

    @property
    def predictions(self) -> Tensor:
        """``(N,)`` arg-max class per image."""
        return self.scores.argmax(dim=1)

    @property
    def positive_scores(self) -> Tensor:
        """``(N,)`` probability of class 1 (binary problems), as AUROC tests want."""
        if self.scores.shape[1] != 2:
            raise ValueError(f"positive_scores needs 2 classes; got {self.scores.shape[1]}")
        return self.scores[:, 1]

    def metrics(self) -> dict[str, float]:
        """AUROC, accuracy, balanced accuracy, F1 (and sensitivity/specificity if binary)."""
        return classification_metrics(self.scores, self.labels)

    def confidence_interval(
        self,
        metric: str = "auroc",
        n_resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
        by_patient: bool = True,
    ) -> ConfidenceInterval:
        """Bootstrap percentile interval of one metric of :meth:`metrics`.

        Args:
            metric: A key of :meth:`metrics`, e.g. ``"auroc"`` or ``"sensitivity"``.
            n_resamples: Bootstrap resamples.
            confidence: Coverage, e.g. 0.95.
            seed: Seed of the resampling.
            by_patient: Resample whole patients when ``patient_ids`` is known.

        Raises:
            ValueError: For an unknown metric name or too few valid resamples.
        """
        table = metric_functions(self.scores.shape[1])
        if metric not in table:
            raise ValueError(f"unknown metric {metric!r}; allowed: {sorted(table)}")
        return bootstrap_ci(
            table[metric],
            self.scores,
            self.labels,
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
            groups=self.patient_ids if by_patient else None,
            min_valid=0.5,
        )

    def confidence_intervals(
        self,
        n_resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
        by_patient: bool = True,
    ) -> dict[str, ConfidenceInterval]:
        """Bootstrap percentile intervals of every metric of :meth:`metrics`.

        Args:
            n_resamples: Bootstrap resamples.
            confidence: Coverage, e.g. 0.95.
            seed: Seed of the resampling (every metric sees the same resamples).
            by_patient: Resample whole patients when ``patient_ids`` is known.

        Returns:
            ``{metric name: ConfidenceInterval}`` for the metrics defined on this set.
        """
        groups = self.patient_ids if by_patient else None
        defined = self.metrics()
        out = {}
        for name, fn in metric_functions(self.scores.shape[1]).items():
            if name in defined:
                out[name] = bootstrap_ci(
                    fn,
                    self.scores,
                    self.labels,
                    n_resamples=n_resamples,
                    confidence=confidence,
                    seed=seed,
                    groups=groups,
                    min_valid=0.5,
                )
        return out

    def to_dict(self, include_scores: bool = False) -> dict[str, Any]:
        """A JSON-ready summary (metrics; optionally the per-image scores and labels)."""
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "fraction": self.fraction,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_test": int(self.labels.numel()),
            "metrics": self.metrics(),
            "train_loss": list(self.train_loss),
        }
        if include_scores:
            out["scores"] = self.scores.tolist()
            out["labels"] = self.labels.tolist()
            out["patient_ids"] = list(self.patient_ids) if self.patient_ids else None
        return out
