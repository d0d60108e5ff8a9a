"""Downstream evaluation of a pretrained backbone.

Protocols (:func:`fine_tune`, :func:`linear_probe`, :func:`knn_evaluate`) at label
fractions, for single-label and multi-label (2-D ``.targets``) datasets;
classification metrics that agree with scikit-learn; decision thresholds chosen on a
validation split; per-finding AUROC; bootstrap intervals and paired comparisons of
two models. The statistics come from :mod:`cxr_curriculum.stats` (the package's one
bootstrap core); its interval and comparison classes are re-exported here. See
``docs/evaluation.md``.
"""

from cxr_curriculum.evaluation.compare import paired_auroc_test
from cxr_curriculum.evaluation.features import UNLABELLED, extract_features, resize_collate
from cxr_curriculum.evaluation.finetune import Classifier, fine_tune, masked_bce, predict_proba
from cxr_curriculum.evaluation.fractions import LABEL_FRACTIONS, targets_of, train_subset
from cxr_curriculum.evaluation.frozen import FrozenFeatures
from cxr_curriculum.evaluation.knn import (
    knn_accuracy,
    knn_evaluate,
    knn_predict,
    knn_predict_multilabel,
)
from cxr_curriculum.evaluation.linear_probe import (
    LinearProbe,
    fit_logistic_regression,
    fit_multilabel_logistic_regression,
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
from cxr_curriculum.evaluation.multilabel import MultiLabelAUROC, multilabel_auroc
from cxr_curriculum.evaluation.multilabel_stats import (
    MultiLabelComparison,
    MultiLabelIntervals,
    multilabel_auroc_ci,
    paired_multilabel_auroc_test,
)
from cxr_curriculum.evaluation.results import EvalResult
from cxr_curriculum.evaluation.thresholds import (
    THRESHOLD_RULES,
    apply_threshold,
    choose_threshold,
    roc_points,
)
from cxr_curriculum.stats import (
    ConfidenceInterval,
    DeLongResult,
    PairedComparison,
    bootstrap_ci,
    bootstrap_indices,
    delong_components,
    delong_test,
)

__all__ = [
    "LABEL_FRACTIONS",
    "THRESHOLD_RULES",
    "UNLABELLED",
    "Classifier",
    "ConfidenceInterval",
    "DeLongResult",
    "EvalResult",
    "FrozenFeatures",
    "LinearProbe",
    "MultiLabelAUROC",
    "MultiLabelComparison",
    "MultiLabelIntervals",
    "PairedComparison",
    "accuracy",
    "apply_threshold",
    "auroc",
    "balanced_accuracy",
    "binary_auroc",
    "bootstrap_ci",
    "bootstrap_indices",
    "choose_threshold",
    "classification_metrics",
    "delong_components",
    "delong_test",
    "extract_features",
    "f1_score",
    "fine_tune",
    "fit_logistic_regression",
    "fit_multilabel_logistic_regression",
    "knn_accuracy",
    "knn_evaluate",
    "knn_predict",
    "knn_predict_multilabel",
    "linear_probe",
    "masked_bce",
    "metric_functions",
    "multilabel_auroc",
    "multilabel_auroc_ci",
    "paired_auroc_test",
    "paired_multilabel_auroc_test",
    "predict_proba",
    "resize_collate",
    "roc_points",
    "sensitivity",
    "specificity",
    "targets_of",
    "train_subset",
]
