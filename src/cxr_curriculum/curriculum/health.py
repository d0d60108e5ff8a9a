"""Is a stage still healthy? Finite losses, buffers and weights, and the last good state.

A NaN or infinite loss is only the most visible failure. BatchNorm running statistics
are updated in the forward pass, so a batch of huge activations can leave running
variances of 1e32 or inf while the loss, computed with the batch's own statistics, stays
finite; the model then gives non-finite outputs in eval mode, and the next forward pass
overflows. A value is therefore *healthy* when it is finite and its square is too
(``|x| <= sqrt(float32 max)``, about 1.8e19): anything larger cannot pass through a
variance or a norm without becoming inf. The stage loop checks every floating buffer
after every step (:func:`unhealthy_flag`), every tensor of the method before it writes a
checkpoint or ends (:func:`unhealthy_names`), and keeps the backbone's state at the last
good checkpoint (:class:`LastGood`) so that a stopped stage hands back the backbone as it
was then, not half-broken.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "LIMIT",
    "LastGood",
    "eval_output_flag",
    "floating_buffers",
    "listed",
    "unhealthy_flag",
    "unhealthy_names",
]

#: Largest healthy magnitude: the square root of the float32 maximum (about 1.8e19).
LIMIT = float(torch.finfo(torch.float32).max) ** 0.5
_LISTED = 3


def _healthy(t: Tensor) -> Tensor:
    """0-d bool: every value is finite and ``|x| <= LIMIT`` (NaN compares false)."""
    return (t.detach().abs() <= LIMIT).all()


def floating_buffers(module: nn.Module) -> list[tuple[str, Tensor]]:
    """The module's floating-point buffers (BatchNorm running means and variances, EMAs)."""
    return [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]


def unhealthy_flag(tensors: Iterable[Tensor], device: torch.device) -> Tensor:
    """``1.0`` if any of ``tensors`` holds a NaN, an inf or a value above :data:`LIMIT`.

    Returns a 0-d tensor on ``device`` (``0.0`` when all are healthy). One reduction per
    tensor and no host synchronisation, so it can join the loss in the step's all-reduce.
    """
    flags = [_healthy(t) for t in tensors]
    if not flags:
        return torch.zeros((), device=device)
    return (~torch.stack(flags).all()).float().to(device)


def eval_output_flag(method: nn.Module, batch: Any, device: torch.device) -> Tensor:
    """``1.0`` if the method's eval-mode embeddings of ``batch`` are not healthy, else ``0.0``.

    A model is usable after training only if it gives finite outputs in eval mode, with
    its running statistics; this runs ``method.embedding_for_monitor(batch)`` that way
    (no gradients, the global RNG untouched, train mode restored). Methods without
    ``embedding_for_monitor`` always pass.
    """
    fn = getattr(method, "embedding_for_monitor", None)
    if not callable(fn):
        return torch.zeros((), device=device)
    was_training = method.training
    method.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            z = fn(batch)
    finally:
        method.train(was_training)
    return (~_healthy(z)).float().to(device)


def unhealthy_names(tensors: Iterable[tuple[str, Tensor]]) -> list[str]:
    """Names of the floating tensors that are not healthy, with what they hold.

    Args:
        tensors: ``(name, tensor)`` pairs, e.g. ``module.state_dict().items()``.

    Returns:
        Entries such as ``"backbone.body.bn1.running_var (inf)"`` or ``"... (3.2e+32)"``;
        empty if all are healthy.
    """
    out = []
    for name, t in tensors:
        if not t.is_floating_point() or bool(_healthy(t)):
            continue
        values = t.detach().float()
        if bool(torch.isnan(values).any()):
            kind = "nan"
        elif not bool(torch.isfinite(values).all()):
            kind = "inf"
        else:
            kind = f"{float(values.abs().max()):.1e}"
        out.append(f"{name} ({kind})")
    return out


def listed(names: list[str]) -> str:
    """``a, b, c (+2 more)``."""
    more = f" (+{len(names) - _LISTED} more)" if len(names) > _LISTED else ""
    return ", ".join(names[:_LISTED]) + more


@dataclass
class LastGood:
    """The backbone's state (a CPU copy) at the last good checkpoint or the stage's start.

    Attributes:
        step: the optimiser step of that state.
        state: the backbone's state dict, copied to the CPU.
        checkpoint: the checkpoint file holding it, or ``None`` (the stage's start, or a
            run without a checkpoint folder).
    """

    step: int
    state: dict[str, Tensor]
    checkpoint: Path | None

    @classmethod
    def capture(cls, backbone: nn.Module, step: int, checkpoint: Path | None) -> LastGood:
        """Copy ``backbone``'s state as the last good one."""
        state = {k: v.detach().to("cpu", copy=True) for k, v in backbone.state_dict().items()}
        return cls(step, state, checkpoint)

    def restore(self, backbone: nn.Module) -> None:
        """Load the kept state back into ``backbone`` (in place, on its device)."""
        backbone.load_state_dict(self.state)

    def describe(self) -> str:
        """What the stop left behind, for the error message."""
        if self.checkpoint is not None:
            return (
                f"its last good checkpoint ({self.checkpoint}, step {self.step}) was kept and "
                "the backbone was restored to it"
            )
        if self.step == 0:
            return (
                "no checkpoint had been written yet; the backbone was restored to its state "
                "at the start of the stage"
            )
        return f"the backbone was restored to its state at step {self.step}"
