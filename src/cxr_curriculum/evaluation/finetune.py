"""Full fine-tuning of a pretrained backbone with a new linear head.

The downstream protocol of the curricular SSL paper (de Andrés Tamé et al.,
arXiv:2301.10687, Sec. 4): backbone and head are trained end to end with
cross-entropy on the labelled subset, then every test image is scored. A multi-label
dataset (2-D ``.targets``, NaN unknown) gets one logit per finding and a binary
cross-entropy over the known labels only (:func:`masked_bce`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from cxr_curriculum.evaluation.features import resize_collate
from cxr_curriculum.evaluation.fractions import (
    class_names_of,
    labels_of,
    num_classes_of,
    patient_ids_of,
    targets_of,
    train_subset,
)
from cxr_curriculum.evaluation.results import EvalResult

__all__ = ["Classifier", "fine_tune", "masked_bce", "predict_proba"]


class Classifier(nn.Module):
    """A backbone followed by a linear head: ``(B, 1, H, W) -> (B, C)`` logits.

    Args:
        backbone: Maps images to pooled features ``(B, D)``.
        num_features: ``D``.
        num_classes: ``C``.
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes)

    @property
    def target_layer(self) -> nn.Module:
        """The backbone's layer to explain with CAM methods."""
        layer = getattr(self.backbone, "target_layer", None)
        if not isinstance(layer, nn.Module):
            raise AttributeError(f"{type(self.backbone).__name__} has no target_layer")
        return layer

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, C)`` for images ``(B, 1, H, W)`` in ``[0, 1]``."""
        return self.head(self.backbone(x))


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    dataset: Dataset[Any],
    image_size: int = 64,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    multilabel: bool = False,
) -> tuple[Tensor, Tensor]:
    """Class probabilities ``(N, C)`` and labels for every item, in order.

    Softmax probabilities and ``(N,)`` labels; with ``multilabel=True`` per-finding
    sigmoid probabilities and ``(N, C)`` targets.
    """
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=resize_collate(image_size),
    )
    was_training = model.training
    model.eval()
    probs, labels = [], []
    try:
        for x, y in loader:
            logits = model(x.to(device)).float()
            probs.append((torch.sigmoid(logits) if multilabel else logits.softmax(1)).cpu())
            labels.append(y)
    finally:
        model.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def _num_features(backbone: nn.Module, image_size: int, device: torch.device) -> int:
    n = getattr(backbone, "num_features", None)
    if isinstance(n, int):
        return n
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        n = int(backbone(torch.zeros(1, 1, image_size, image_size, device=device)).shape[1])
    backbone.train(was_training)
    return n


def fine_tune(
    backbone: nn.Module,
    train_ds: Dataset[Any],
    test_ds: Dataset[Any],
    *,
    fraction: float = 1.0,
    seed: int = 0,
    image_size: int = 64,
    batch_size: int = 32,
    epochs: int = 10,
    steps: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    augment: Callable[[Tensor], Tensor] | None = None,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    copy_backbone: bool = True,
) -> EvalResult:
    """Fine-tune ``backbone`` plus a new linear head, then score the test set.

    AdamW with a cosine learning-rate decay to zero over all steps; batches are
    drawn in a seeded shuffled order, and the head initialisation and any other
    global-RNG use run inside a forked, seeded RNG, so one seed gives the same run
    on the CPU (GPU kernels may add non-determinism).

    Args:
        backbone: The pretrained backbone (``(B, 1, S, S) -> (B, D)``).
        train_ds: Labelled training dataset (``.labels``, ``.patient_ids``).
        test_ds: Labelled test dataset; every image is scored.
        fraction: Share of training labels in ``(0, 1]`` (patient-level subset).
        seed: Seed of the label subset, the head initialisation and the batch order.
        image_size: Input side in pixels.
        batch_size: Training batch size.
        epochs: Passes over the training subset (ignored if ``steps`` is given).
        steps: Total optimiser steps, to fix the budget across fractions.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        augment: Optional batch augmentation ``(B, 1, S, S) -> (B, 1, S, S)`` applied
            on the device to training batches (e.g. ``transforms.BatchedXRayAugment``).
        device: Training device; defaults to that of the backbone's parameters.
        num_workers: ``DataLoader`` workers.
        copy_backbone: Train a deep copy, leaving ``backbone`` untouched (so one
            pretrained backbone serves several fractions and seeds).

    Returns:
        An :class:`EvalResult` with the per-epoch mean training loss and the trained
        :class:`Classifier` as ``model``. For a multi-label dataset (2-D ``.targets``,
        e.g. NIH ChestX-ray14 in CSV form) the head has one logit per finding, the
        loss is :func:`masked_bce` (unknown labels do not count) and the scores are
        per-finding sigmoid probabilities.

    Raises:
        ValueError: On bad hyper-parameters or an unlabelled training set.
    """
    if epochs < 1 or (steps is not None and steps < 1) or batch_size < 1:
        raise ValueError(
            f"epochs, steps and batch_size must be >= 1; got {epochs}, {steps}, {batch_size}"
        )
    if not lr > 0 or weight_decay < 0:
        raise ValueError(f"need lr > 0 and weight_decay >= 0; got {lr}, {weight_decay}")
    subset = train_subset(train_ds, fraction, seed)
    targets = targets_of(subset)
    multilabel = targets is not None
    if targets is not None:
        if bool(torch.isnan(targets).all()):
            raise ValueError("fine_tune: every training target is unknown (NaN)")
        n_classes = targets.shape[1]
    else:
        train_labels = labels_of(subset)
        if train_labels is None or int(train_labels.min()) < 0:
            raise ValueError("fine_tune needs a labelled training set with .labels")
        test_labels = labels_of(test_ds)
        all_labels = train_labels if test_labels is None else torch.cat([train_labels, test_labels])
        n_classes = num_classes_of(train_ds, test_ds, labels=all_labels)
    n_train = len(subset)  # type: ignore[arg-type]
    if device is None:
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    net = copy.deepcopy(backbone) if copy_backbone else backbone
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        model = Classifier(net, _num_features(net, image_size, device), n_classes).to(device)
        loader = DataLoader(
            subset,
            batch_size=batch_size,
            shuffle=True,
            num_workers=num_workers,
            collate_fn=resize_collate(image_size),
            generator=torch.Generator().manual_seed(seed),
            # A last batch of one image would break batch norm in train mode.
            drop_last=n_train % batch_size == 1,
        )
        per_epoch = len(loader)
        total = steps if steps is not None else epochs * per_epoch
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
        )
        losses: list[float] = []
        step = 0
        model.train()
        while step < total:
            epoch_loss, n_batches = 0.0, 0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                if augment is not None:
                    x = augment(x)
                if y.ndim != (2 if multilabel else 1):
                    raise ValueError(
                        f"fine_tune: the training items carry labels of shape "
                        f"{tuple(y.shape[1:])} but the dataset "
                        f"{'has' if multilabel else 'has no'} 2-D .targets; a multi-label "
                        "dataset (or wrapper) must expose .targets (N, C)"
                    )
                logits = model(x)
                loss = masked_bce(logits, y) if multilabel else F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                epoch_loss += loss.item()
                n_batches += 1
                step += 1
                if step >= total:
                    break
            losses.append(epoch_loss / max(n_batches, 1))
    scores, labels = predict_proba(
        model, test_ds, image_size, batch_size, device, num_workers, multilabel
    )
    return EvalResult(
        "fine_tune",
        scores,
        labels,
        patient_ids_of(test_ds),
        float(fraction),
        seed,
        n_train,
        tuple(losses),
        model,
        class_names_of(test_ds, scores.shape[1]),
    )


def masked_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy over the known labels only.

    Args:
        logits: ``(B, C)`` per-finding logits.
        targets: ``(B, C)`` targets: 1 present, 0 absent, NaN unknown.

    Returns:
        The mean BCE over the known entries (0 with a zero gradient if none is
        known): unknown labels contribute neither loss nor gradient, unlike
        counting them as negatives.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must match"
        )
    known = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(targets, nan=0.0), reduction="none"
    )
    return (losses * known).sum() / known.sum().clamp_min(1)
