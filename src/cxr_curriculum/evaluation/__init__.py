"""Downstream evaluation of a pretrained backbone.

Protocols (:func:`fine_tune`, :func:`linear_probe`, :func:`knn_evaluate`) at label
fractions, classification metrics that agree with scikit-learn, bootstrap intervals
and paired comparisons of two models. See ``docs/evaluation.md``.
"""

from cxr_curriculum.evaluation.bootstrap import ConfidenceInterval, bootstrap_ci, bootstrap_indices
from cxr_curriculum.evaluation.compare import (
    DeLongResult,
    PairedComparison,
    delong_components,
    delong_test,
    paired_auroc_test,
)
from cxr_curriculum.evaluation.features import UNLABELLED, extract_features, resize_collate
from cxr_curriculum.evaluation.finetune import Classifier, fine_tune, predict_proba
from cxr_curriculum.evaluation.fractions import LABEL_FRACTIONS, train_subset
from cxr_curriculum.evaluation.frozen import FrozenFeatures
from cxr_curriculum.evaluation.knn import knn_accuracy, knn_evaluate, knn_predict
from cxr_curriculum.evaluation.linear_probe import (
    LinearProbe,
    fit_logistic_regression,
    linear_probe,
)
from cxr_curriculum.evaluation.metrics import (
    accuracy,
    auroc,
    balanced_accuracy,
    binary_auroc,
    classification_metrics,
    f1_score,
    metric_functions,
    sensitivity,
    specificity,
)
from cxr_curriculum.evaluation.results import EvalResult

__all__ = [
    "LABEL_FRACTIONS",
    "UNLABELLED",
    "Classifier",
    "ConfidenceInterval",
    "DeLongResult",
    "EvalResult",
    "FrozenFeatures",
    "LinearProbe",
    "PairedComparison",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "binary_auroc",
    "bootstrap_ci",
    "bootstrap_indices",
    "classification_metrics",
    "delong_components",
    "delong_test",
    "extract_features",
    "f1_score",
    "fine_tune",
    "fit_logistic_regression",
    "knn_accuracy",
    "knn_evaluate",
    "knn_predict",
    "linear_probe",
    "metric_functions",
    "paired_auroc_test",
    "predict_proba",
    "resize_collate",
    "sensitivity",
    "specificity",
    "train_subset",
]
