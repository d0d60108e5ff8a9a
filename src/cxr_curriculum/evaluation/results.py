"""The result of a downstream protocol: per-image scores, with metrics and intervals on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from cxr_curriculum.evaluation.metrics import classification_metrics, metric_functions
from cxr_curriculum.evaluation.multilabel import MultiLabelAUROC, multilabel_auroc
from cxr_curriculum.evaluation.multilabel_stats import multilabel_auroc_ci
from cxr_curriculum.stats import ConfidenceInterval, bootstrap_ci

__all__ = ["EvalResult"]


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Per-image test scores of one protocol run, the raw material for metrics and CIs.

    Attributes:
        protocol: ``"knn"``, ``"linear_probe"`` or ``"fine_tune"``.
        scores: ``(N, C)`` float32 scores for the ``N`` test images: class
            probabilities (single-label), or per-finding probabilities (multi-label).
        labels: ``(N,)`` int64 test labels, in test-dataset order; for a multi-label
            task ``(N, C)`` float32 targets (1 present, 0 absent, NaN unknown).
        patient_ids: Patient id per test image (for clustered intervals), or None.
        fraction: Share of training labels used (e.g. 0.01).
        seed: Seed of the label subset and of the training run.
        n_train: Number of labelled training images used.
        train_loss: Training loss per epoch (linear probe: final loss; kNN: empty).
        model: The trained classifier (``fine_tune`` and ``linear_probe``), else None.
        classes: Class or finding names (the dataset's ``.classes``), if known.
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
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = self.scores.shape[0] if self.scores.ndim == 2 else -1
        if n < 0 or self.labels.shape not in ((n,), tuple(self.scores.shape)):
            raise ValueError(
                f"scores must be (N, C) and labels (N,) or, multi-label, (N, C); got "
                f"{tuple(self.scores.shape)} and {tuple(self.labels.shape)}"
            )
        if self.patient_ids is not None and len(self.patient_ids) != self.scores.shape[0]:
            raise ValueError("patient_ids must have one entry per test image")
        if self.classes is not None and len(self.classes) != self.scores.shape[1]:
            raise ValueError(
                f"{len(self.classes)} class names for {self.scores.shape[1]} score columns"
            )

    @property
    def multilabel(self) -> bool:
        """True when ``labels`` are ``(N, C)`` multi-label targets."""
        return self.labels.ndim == 2

    @property
    def predictions(self) -> Tensor:
        """``(N,)`` arg-max class per image; multi-label: ``(N, C)`` 0/1 at 0.5."""
        if self.multilabel:
            return (self.scores >= 0.5).long()
        return self.scores.argmax(dim=1)

    @property
    def positive_scores(self) -> Tensor:
        """``(N,)`` probability of class 1 (binary problems), as AUROC tests want."""
        if self.multilabel or self.scores.shape[1] != 2:
            raise ValueError(
                f"positive_scores needs a single-label task with 2 classes; got "
                f"{self.scores.shape[1]} {'findings' if self.multilabel else 'classes'}"
            )
        return self.scores[:, 1]

    def multilabel_auroc(self, min_positives: int = 1, min_negatives: int = 1) -> MultiLabelAUROC:
        """Per-finding AUROC and macro mean of a multi-label result (see
        :func:`~cxr_curriculum.evaluation.multilabel_auroc`)."""
        if not self.multilabel:
            raise ValueError("multilabel_auroc needs a multi-label result (labels (N, C))")
        return multilabel_auroc(
            self.scores,
            self.labels,
            self.classes,
            min_positives=min_positives,
            min_negatives=min_negatives,
        )

    def metrics(self, threshold: float | None = None) -> dict[str, float]:
        """Single-label: AUROC, accuracy, balanced accuracy, F1 (and sensitivity and
        specificity if binary; ``threshold`` as in
        :func:`~cxr_curriculum.evaluation.classification_metrics`). Multi-label:
        ``"auroc"`` (macro mean) and ``"auroc/<finding>"`` for each finding that has
        a known positive and negative."""
        if not self.multilabel:
            return classification_metrics(self.scores, self.labels, threshold)
        if threshold is not None:
            raise ValueError("threshold= applies to single-label binary results")
        res = self.multilabel_auroc()
        return {"auroc": res.macro, **{f"auroc/{k}": v for k, v in res.per_finding.items()}}

    def confidence_interval(
        self,
        metric: str = "auroc",
        n_resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
        by_patient: bool = True,
        threshold: float | None = None,
    ) -> ConfidenceInterval:
        """Bootstrap percentile interval of one metric of :meth:`metrics`.

        Args:
            metric: A key of :meth:`metrics`, e.g. ``"auroc"`` or ``"sensitivity"``
                (multi-label: ``"auroc"`` for the macro mean or ``"auroc/<finding>"``).
            n_resamples: Bootstrap resamples.
            confidence: Coverage, e.g. 0.95.
            seed: Seed of the resampling.
            by_patient: Resample whole patients when ``patient_ids`` is known.
            threshold: Decision threshold for the threshold metrics (binary).

        Raises:
            ValueError: For an unknown metric name or too few valid resamples.
        """
        every = self.confidence_intervals(
            n_resamples, confidence, seed, by_patient, threshold, only=metric
        )
        return every[metric]

    def confidence_intervals(
        self,
        n_resamples: int = 1000,
        confidence: float = 0.95,
        seed: int = 0,
        by_patient: bool = True,
        threshold: float | None = None,
        only: str | None = None,
    ) -> dict[str, ConfidenceInterval]:
        """Bootstrap percentile intervals of every metric of :meth:`metrics`.

        Args:
            n_resamples: Bootstrap resamples.
            confidence: Coverage, e.g. 0.95.
            seed: Seed of the resampling (every metric sees the same resamples).
            by_patient: Resample whole patients when ``patient_ids`` is known.
            threshold: Decision threshold for the threshold metrics (binary).
            only: Compute the interval of this metric alone.

        Returns:
            ``{metric name: ConfidenceInterval}`` for the metrics defined on this set.
            Multi-label: the macro AUROC and every finding with a known positive and
            negative; a finding too rare for the bootstrap raises a ``ValueError``
            naming it (use :func:`~cxr_curriculum.evaluation.multilabel_auroc_ci` with
            ``min_positives=`` to leave rare findings out).
        """
        groups = self.patient_ids if by_patient else None
        if self.multilabel:
            if threshold is not None:
                raise ValueError("threshold= applies to single-label binary results")
            names = list(self.classes or [str(c) for c in range(self.scores.shape[1])])
            allowed = ["auroc", *(f"auroc/{n}" for n in names)]
            if only is not None and only not in allowed:
                raise ValueError(f"unknown metric {only!r}; allowed: {allowed}")
            cols = (
                [names.index(only[6:])] if only not in (None, "auroc") else list(range(len(names)))
            )
            ml = multilabel_auroc_ci(
                self.scores[:, cols], self.labels[:, cols], [names[c] for c in cols],
                groups=groups, n_resamples=n_resamples, confidence=confidence, seed=seed,
            )  # fmt: skip
            out = {"auroc": ml.macro, **{f"auroc/{k}": v for k, v in ml.per_finding.items()}}
            return out if only is None else {only: out[only]}
        table = metric_functions(self.scores.shape[1], threshold)
        if only is not None and only not in table:
            raise ValueError(f"unknown metric {only!r}; allowed: {sorted(table)}")
        defined = self.metrics(threshold)
        names = [only] if only is not None else [k for k in table if k in defined]
        return {
            name: bootstrap_ci(
                table[name],
                self.scores,
                self.labels,
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
                groups=groups,
                min_valid=0.5,
            )
            for name in names
        }

    def to_dict(self, include_scores: bool = False) -> dict[str, Any]:
        """A JSON-ready summary (metrics; optionally the per-image scores and labels)."""
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "fraction": self.fraction,
            "seed": self.seed,
            "n_train": self.n_train,
            "n_test": int(self.labels.shape[0]),
            "metrics": self.metrics(),
            "train_loss": list(self.train_loss),
        }
        if self.classes is not None:
            out["classes"] = list(self.classes)
        if include_scores:
            out["scores"] = self.scores.tolist()
            out["labels"] = self.labels.tolist()
            out["patient_ids"] = list(self.patient_ids) if self.patient_ids else None
        return out
