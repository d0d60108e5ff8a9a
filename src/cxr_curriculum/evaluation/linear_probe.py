"""Linear probe: multinomial logistic regression on frozen, standardised features.

The standard protocol for representation quality (e.g. Chen et al., SimCLR, ICML
2020, Sec. 4): the backbone is frozen, features are extracted once, and only a
linear classifier is trained. Here the classifier is fitted in torch with L-BFGS to
the exact optimum of an L2-regularised cross-entropy (the objective scikit-learn's
``LogisticRegression`` minimises), so a run is deterministic and needs no
learning-rate schedule. For a multi-label dataset (2-D ``.targets``) the probe is one
binary logistic regression per finding, each on the images whose label is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cxr_curriculum.evaluation.fractions import class_names_of, num_classes_of, patient_ids_of
from cxr_curriculum.evaluation.frozen import FrozenFeatures, frozen_inputs
from cxr_curriculum.evaluation.results import EvalResult

__all__ = [
    "LinearProbe",
    "fit_logistic_regression",
    "fit_multilabel_logistic_regression",
    "linear_probe",
]


class LinearProbe(nn.Module):
    """Frozen backbone, feature standardisation and a linear layer: images to logits.

    Args:
        backbone: Maps ``(B, 1, H, W)`` to ``(B, D)``.
        mean: ``(D,)`` feature mean of the training set.
        std: ``(D,)`` feature standard deviation of the training set.
        head: ``nn.Linear(D, C)``.
    """

    def __init__(self, backbone: nn.Module, mean: Tensor, std: Tensor, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 1, H, W)`` images in ``[0, 1]`` to ``(B, C)`` logits."""
        return self.head((self.backbone(x) - self.mean) / self.std)


def fit_logistic_regression(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    l2: float = 1e-3,
    max_iter: int = 500,
) -> tuple[nn.Linear, float]:
    """Fit ``nn.Linear`` to minimise ``mean CE + l2 / 2 * ||W||^2`` (bias unpenalised).

    This is scikit-learn's multinomial ``LogisticRegression(C=1 / (l2 * N))``; the
    fit is full-batch L-BFGS with a strong-Wolfe line search in float64.

    Args:
        features: ``(N, D)`` training features.
        labels: ``(N,)`` class indices in ``[0, num_classes)``.
        num_classes: Output size ``C`` (>= 2).
        l2: Weight of the L2 penalty (>= 0).
        max_iter: L-BFGS iterations (>= 1).

    Returns:
        The fitted float32 layer and the final value of the objective.

    Raises:
        ValueError: On bad shapes or hyper-parameters.
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(
            f"features must be (N, D) and labels (N,); got {tuple(features.shape)}, "
            f"{tuple(labels.shape)}"
        )
    if features.shape[0] == 0:
        raise ValueError("cannot fit a linear probe on zero training images")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got {num_classes}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    if l2 < 0 or max_iter < 1:
        raise ValueError(f"need l2 >= 0 and max_iter >= 1; got l2={l2}, max_iter={max_iter}")
    x = features.detach().double()
    y = labels.long()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    final = _minimise(
        lambda: F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum(),
        [weight, bias],
        max_iter,
    )
    return _linear(weight, bias), final


def _minimise(objective: Callable[[], Tensor], params: list[Tensor], max_iter: int) -> float:
    """Full-batch L-BFGS with a strong-Wolfe line search; returns the final objective."""
    opt = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        return closure().item()


def _linear(weight: Tensor, bias: Tensor) -> nn.Linear:
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight.detach())
        head.bias.copy_(bias.detach())
    return head


def fit_multilabel_logistic_regression(
    features: Tensor,
    targets: Tensor,
    l2: float = 1e-3,
    max_iter: int = 500,
) -> tuple[nn.Linear, tuple[float, ...]]:
    """One binary logistic regression per finding, each on its known labels.

    Finding ``c`` minimises ``mean BCE + l2 / 2 * ||w_c||^2`` (bias unpenalised) over
    the rows whose target for ``c`` is known: scikit-learn's binary
    ``LogisticRegression(C=1 / (l2 * n_c))`` with ``n_c`` known rows. The findings share
    no parameter, so they are fitted together by one L-BFGS run on the sum of their
    objectives (the same optimum, one vectorised pass per iteration). A finding whose
    known training labels are all positive or all negative gets a constant score (its
    clipped prevalence) and NaN loss.

    Args:
        features: ``(N, D)`` training features.
        targets: ``(N, C)`` targets: 1 present, 0 absent, NaN unknown.
        l2: Weight of the L2 penalty (>= 0).
        max_iter: L-BFGS iterations (>= 1).

    Returns:
        ``nn.Linear(D, C)`` whose outputs are per-finding logits, and the final
        objective of each finding.

    Raises:
        ValueError: On bad shapes, values or hyper-parameters.
    """
    if features.ndim != 2 or targets.ndim != 2 or targets.shape[0] != features.shape[0]:
        raise ValueError(
            f"features must be (N, D) and targets (N, C); got {tuple(features.shape)}, "
            f"{tuple(targets.shape)}"
        )
    if l2 < 0 or max_iter < 1:
        raise ValueError(f"need l2 >= 0 and max_iter >= 1; got l2={l2}, max_iter={max_iter}")
    t = targets.detach().double()
    if not torch.isin(t[~torch.isnan(t)], torch.tensor([0.0, 1.0], dtype=torch.float64)).all():
        raise ValueError("targets must be 0, 1 or NaN (unknown)")
    x = features.detach().double()
    known = ~torch.isnan(t)
    y = torch.nan_to_num(t, nan=0.0)
    n_known, n_pos = known.sum(0), y.sum(0)
    fit = (n_pos > 0) & (n_pos < n_known)  # both classes among the known labels
    weight = torch.zeros(t.shape[1], x.shape[1], dtype=torch.float64)
    prior = (n_pos / n_known.clamp_min(1)).clamp(1e-4, 1.0 - 1e-4)
    bias = torch.log(prior / (1.0 - prior))  # one class: a constant score, no finite optimum
    losses = torch.full((t.shape[1],), math.nan, dtype=torch.float64)
    if bool(fit.any()):
        w = torch.zeros(int(fit.sum()), x.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(int(fit.sum()), dtype=torch.float64, requires_grad=True)
        mask, n, yf = known[:, fit].double(), n_known[fit].double(), y[:, fit]

        def per_finding() -> Tensor:
            bce = F.binary_cross_entropy_with_logits(x @ w.T + b, yf, reduction="none")
            return (bce * mask).sum(0) / n + 0.5 * l2 * w.pow(2).sum(1)

        # The objectives share no parameter, so minimising their sum fits each finding.
        _minimise(lambda: per_finding().sum(), [w, b], max_iter)
        with torch.no_grad():
            weight[fit], bias[fit], losses[fit] = w, b, per_finding()
    return _linear(weight, bias), tuple(losses.tolist())


def linear_probe(
    backbone: nn.Module,
    train_ds: Dataset[Any],
    test_ds: Dataset[Any],
    *,
    fraction: float = 1.0,
    seed: int = 0,
    image_size: int = 64,
    batch_size: int = 64,
    l2: float = 1e-3,
    max_iter: int = 500,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    features: FrozenFeatures | None = None,
) -> EvalResult:
    """Linear-probe evaluation of a frozen backbone.

    Features of the training subset at ``fraction`` (patient-level, see
    :func:`~cxr_curriculum.evaluation.train_subset`) are standardised with their own
    mean and std; a logistic regression is fitted (:func:`fit_logistic_regression`)
    and applied to the test features. The backbone is not modified.

    Args:
        backbone: Maps ``(B, 1, S, S)`` to pooled features ``(B, D)``.
        train_ds: Labelled training dataset (``.labels``, ``.patient_ids``).
        test_ds: Labelled test dataset; every image is scored.
        fraction: Share of training labels in ``(0, 1]``.
        seed: Seed of the label subset (the fit itself is deterministic).
        image_size: Input side in pixels.
        batch_size: Images per forward pass when extracting features.
        l2: L2 penalty on the standardised-feature weights.
        max_iter: L-BFGS iterations.
        device: Device of the feature extraction.
        num_workers: ``DataLoader`` workers.
        features: Features of ``train_ds`` and ``test_ds`` computed once with
            :meth:`FrozenFeatures.compute` (same ``image_size``); the subset's rows are
            taken from them instead of running the backbone again.

    Returns:
        An :class:`EvalResult` whose ``model`` is a :class:`LinearProbe`. For a
        multi-label dataset (2-D ``.targets``) the probe is one logistic regression
        per finding (:func:`fit_multilabel_logistic_regression`), the scores are
        per-finding sigmoid probabilities and ``train_loss`` holds each finding's
        final objective.
    """
    train_x, train_y, test_x, test_y = frozen_inputs(
        backbone, train_ds, test_ds, fraction, seed, features,
        image_size, batch_size, device, num_workers,
    )  # fmt: skip
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False).clamp_min(1e-6)
    if train_y.ndim == 2:  # multi-label targets: one logistic regression per finding
        head, losses = fit_multilabel_logistic_regression(
            (train_x - mean) / std, train_y, l2, max_iter
        )
        with torch.no_grad():
            scores = torch.sigmoid(head((test_x - mean) / std))
    else:
        if int(train_y.min()) < 0:
            raise ValueError("linear_probe needs a labelled training set")
        n_classes = num_classes_of(train_ds, test_ds, labels=torch.cat([train_y, test_y]))
        head, loss = fit_logistic_regression(
            (train_x - mean) / std, train_y, n_classes, l2, max_iter
        )
        losses = (loss,)
        with torch.no_grad():
            scores = torch.softmax(head((test_x - mean) / std), dim=1)
    model = LinearProbe(backbone, mean, std, head)
    return EvalResult(
        "linear_probe",
        scores.float(),
        test_y,
        patient_ids_of(test_ds),
        float(fraction),
        seed,
        len(train_y),
        losses,
        model,
        class_names_of(test_ds, scores.shape[1]),
    )
