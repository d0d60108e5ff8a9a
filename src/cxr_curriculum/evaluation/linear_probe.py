"""Linear probe: multinomial logistic regression on frozen, standardised features.

The standard protocol for representation quality (e.g. Chen et al., SimCLR, ICML
2020, Sec. 4): the backbone is frozen, features are extracted once, and only a
linear classifier is trained. Here the classifier is fitted in torch with L-BFGS to
the exact optimum of an L2-regularised cross-entropy (the objective scikit-learn's
``LogisticRegression`` minimises), so a run is deterministic and needs no
learning-rate schedule.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cxr_curriculum.evaluation.fractions import num_classes_of, patient_ids_of
from cxr_curriculum.evaluation.frozen import FrozenFeatures, frozen_inputs
from cxr_curriculum.evaluation.results import EvalResult

__all__ = ["LinearProbe", "fit_logistic_regression", "linear_probe"]


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
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        final = closure().item()
    head = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(weight.detach())
        head.bias.copy_(bias.detach())
    return head, final


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
        An :class:`EvalResult` whose ``model`` is a :class:`LinearProbe`.
    """
    train_x, train_y, test_x, test_y = frozen_inputs(
        backbone, train_ds, test_ds, fraction, seed, features,
        image_size, batch_size, device, num_workers,
    )  # fmt: skip
    if int(train_y.min()) < 0:
        raise ValueError("linear_probe needs a labelled training set")
    n_classes = num_classes_of(train_ds, test_ds, labels=torch.cat([train_y, test_y]))
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0, unbiased=False).clamp_min(1e-6)
    head, loss = fit_logistic_regression((train_x - mean) / std, train_y, n_classes, l2, max_iter)
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
        (loss,),
        model,
    )
