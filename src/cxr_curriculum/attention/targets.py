"""Explanation targets: small callables that turn model outputs into one score per image.

A target maps the model output ``(B, K)`` (or ``(B,)`` / ``(B, 1)`` for a single-logit
model) to a ``(B,)`` tensor of scores; a saliency method explains that score. This
mirrors ``ClassifierOutputTarget`` of pytorch-grad-cam (Gildenblat et al.), but every
target works on the whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor

__all__ = [
    "BinaryLogitTarget",
    "ClassTarget",
    "Target",
    "TargetsLike",
    "describe_targets",
    "predicted_target",
    "resolve_target",
    "slice_targets",
    "targets_by_name",
]

#: A target: model outputs ``(B, K)`` or ``(B,)`` -> scores ``(B,)``.
Target = Callable[[Tensor], Tensor]
#: What saliency methods accept as ``targets``: ``None`` (predicted class), a class index,
#: one index per image (sequence or ``(B,)`` integer tensor) or a :data:`Target`. The
#: scorer also takes class (finding) names, see :func:`targets_by_name`.
TargetsLike = None | int | Sequence[int] | Tensor | Target
#: ``TargetsLike`` plus class (finding) names: one name, or one name per image.
NamedTargetsLike = TargetsLike | str | Sequence[str]


def _as_2d(outputs: Tensor) -> Tensor:
    if outputs.ndim == 1:
        return outputs[:, None]
    if outputs.ndim != 2:
        raise ValueError(
            f"model outputs must be (B,) or (B, K) logits, got shape {tuple(outputs.shape)}"
        )
    return outputs


class ClassTarget:
    """The logit of class ``k`` (one ``k`` for the batch, or one per image).

    For a multi-label (sigmoid) model, ``k`` is a finding and the target is that
    finding's logit: the evidence for it, independent of the other findings' outputs
    (a softmax is never applied).

    Args:
        k: Class index, or a ``(B,)`` integer tensor / sequence of indices.
        n_outputs: The number of outputs the model must have (e.g. the length of the
            class names the index was looked up in); ``None`` checks only the range.
    """

    def __init__(self, k: int | Sequence[int] | Tensor, n_outputs: int | None = None) -> None:
        idx = torch.as_tensor(k, dtype=torch.long)
        if idx.ndim > 1:
            raise ValueError(f"class index must be an int or a 1-D sequence, got shape {idx.shape}")
        if bool((idx < 0).any()):
            raise ValueError(f"class indices must be >= 0, got {idx.tolist()}")
        self.k = idx
        self.n_outputs = n_outputs

    def __call__(self, outputs: Tensor) -> Tensor:
        """Return ``outputs[b, k_b]``, shape ``(B,)``."""
        out = _as_2d(outputs)
        if self.n_outputs is not None and out.shape[1] != self.n_outputs:
            raise ValueError(
                f"the model has {out.shape[1]} outputs but the class names list "
                f"{self.n_outputs}; give the names of the model's outputs, in order"
            )
        k = (
            self.k.to(out.device).expand(out.shape[0])
            if self.k.ndim == 0
            else self.k.to(out.device)
        )
        if k.shape[0] != out.shape[0]:
            raise ValueError(f"{k.shape[0]} class indices for a batch of {out.shape[0]} images")
        if bool((k >= out.shape[1]).any()):
            raise ValueError(f"class index {int(k.max())} out of range for {out.shape[1]} outputs")
        return out.gather(1, k[:, None])[:, 0]

    def __repr__(self) -> str:
        return f"ClassTarget({self.k.tolist()})"


class BinaryLogitTarget:
    """``sign * logit`` of a single-output model (binary classifier).

    With ``sign=+1`` the map explains evidence for the positive class, with ``sign=-1``
    evidence for the negative class. Unlike a probability target, this works when the
    logit is negative: its gradient does not vanish and Grad-CAM weights keep their
    meaning.

    Args:
        sign: ``+1`` or ``-1``, or a ``(B,)`` tensor of signs (one per image).
    """

    def __init__(self, sign: int | Tensor = 1) -> None:
        s = torch.as_tensor(sign, dtype=torch.float32)
        if not bool(((s == 1) | (s == -1)).all()):
            raise ValueError(f"sign must be +1 or -1 (per image), got {s.tolist()}")
        self.sign = s

    def __call__(self, outputs: Tensor) -> Tensor:
        """Return ``sign * logit``, shape ``(B,)``."""
        out = _as_2d(outputs)
        if out.shape[1] != 1:
            raise ValueError(
                f"BinaryLogitTarget needs a single-output model, got {out.shape[1]} outputs; "
                "use ClassTarget for multi-class models"
            )
        return out[:, 0] * self.sign.to(out.device, out.dtype)

    def __repr__(self) -> str:
        return f"BinaryLogitTarget({self.sign.tolist()})"


def predicted_target(outputs: Tensor) -> Target:
    """The predicted class: argmax for ``K > 1``, the sign of the logit for ``K = 1``."""
    out = _as_2d(outputs.detach())
    if out.shape[1] == 1:
        return BinaryLogitTarget(torch.where(out[:, 0] >= 0, 1.0, -1.0).cpu())
    return ClassTarget(out.argmax(1).cpu())


def resolve_target(targets: TargetsLike, outputs: Tensor) -> Target:
    """Turn any accepted ``targets`` value into a :data:`Target` for these outputs."""
    if targets is None:
        return predicted_target(outputs)
    if isinstance(targets, (int, Tensor)) or (
        isinstance(targets, Sequence) and not isinstance(targets, str)
    ):
        if isinstance(targets, Tensor) and targets.is_floating_point():
            raise ValueError("targets tensor must hold integer class indices")
        return ClassTarget(targets)
    if callable(targets):
        return targets
    raise ValueError(
        f"targets must be None, an int, a sequence/tensor of ints or a callable, got {targets!r}"
    )


def targets_by_name(targets: NamedTargetsLike, class_names: Sequence[str] | None) -> TargetsLike:
    """Replace class (finding) names by a :class:`ClassTarget` on their indices.

    Args:
        targets: One name (``"Pneumonia"``) or one name per image; anything else is
            returned unchanged.
        class_names: The model's output names, in output order (e.g.
            :data:`~cxr_curriculum.data.NIH_FINDINGS` for a 14-finding model).

    Raises:
        ValueError: Names without ``class_names``, or a name not among them.
    """
    names: list[str] | None = None
    if isinstance(targets, str):
        names = [targets]
    elif isinstance(targets, Sequence) and targets and all(isinstance(t, str) for t in targets):
        names = [str(t) for t in targets]
    if names is None:
        return cast(TargetsLike, targets)  # not a name: unchanged
    if class_names is None:
        raise ValueError(
            f"targets {targets!r} are names: pass class_names= (the model's output names)"
        )
    known = list(class_names)
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown}; class_names are {known}")
    index = [known.index(n) for n in names]
    return ClassTarget(index[0] if isinstance(targets, str) else index, n_outputs=len(known))


def describe_targets(targets: TargetsLike, class_names: Sequence[str] | None = None) -> str:
    """A short description of what is explained, for reports (``"output 6 (Pneumonia)"``)."""
    if targets is None:
        return "the predicted class"
    k = targets.k if isinstance(targets, ClassTarget) else None
    if k is None and isinstance(targets, int):
        k = torch.tensor(targets)
    if k is not None and k.ndim == 0:
        name = f" ({class_names[int(k)]})" if class_names and int(k) < len(class_names) else ""
        return f"output {int(k)}{name}"
    if k is not None or isinstance(targets, Tensor | Sequence):
        return "one class index per image"
    return repr(targets)


def slice_targets(targets: TargetsLike, sl: slice) -> TargetsLike:
    """Per-image targets follow a slice of the batch; scalars and callables are shared."""
    if isinstance(targets, Tensor) and targets.ndim == 1:
        return targets[sl]
    if isinstance(targets, ClassTarget) and targets.k.ndim == 1:
        return ClassTarget(targets.k[sl], targets.n_outputs)
    if isinstance(targets, BinaryLogitTarget) and targets.sign.ndim == 1:
        return BinaryLogitTarget(targets.sign[sl])
    if isinstance(targets, Sequence) and not isinstance(targets, str):
        return list(targets)[sl]
    return targets
