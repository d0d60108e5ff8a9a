"""The :class:`SSLMethod` base class: one self-supervised recipe, driven by a Curriculum.

A method composes the shared backbone, stage-specific heads and a loss, and exposes a
single :meth:`SSLMethod.training_step`. The life cycle (see ``docs/architecture.md``)::

    method = SimCLR()                          # paper defaults, validated eagerly
    method.setup(backbone)                     # builds heads (and momentum copies)
    tf = method.make_transform(image_size=64)  # per-sample: image (1, H, W) -> method input
    batch = default_collate([tf(img) for img in images])
    loss = method.training_step(batch)         # scalar; also ``method(batch)`` (DDP-friendly)
    method.on_step_end(step, total_steps)      # momentum updates, explicit
    method.embedding_for_monitor(batch)        # (B, D) for the collapse monitor
    method.head_parameters()                   # trainable parameters dropped after the stage
    method.teardown()                          # drop heads; ``method.backbone`` stays

Optimise ``[p for p in method.parameters() if p.requires_grad]`` (backbone + heads;
momentum copies are frozen). ``method.state_dict()`` holds the backbone, heads, momentum
copies and queues, so call :meth:`setup` before ``load_state_dict`` when resuming.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from cxr_curriculum.backbones import Backbone

__all__ = ["OptimizerHint", "SSLMethod"]


@dataclass(frozen=True)
class OptimizerHint:
    """The optimiser a method's paper used; a Curriculum may take it as the stage default.

    Attributes:
        name: ``"sgd"``, ``"adamw"`` or ``"lars"``.
        lr: Base learning rate for a batch of ``reference_batch`` images.
        weight_decay: Weight decay.
        momentum: SGD/LARS momentum (ignored by AdamW).
        reference_batch: Batch size that ``lr`` refers to (``lr * batch / reference_batch``).
    """

    name: Literal["sgd", "adamw", "lars"] = "sgd"
    lr: float = 0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    reference_batch: int = 256

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adamw", "lars"):
            raise ValueError(f"optimizer name must be 'sgd', 'adamw' or 'lars', got {self.name!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.reference_batch < 1:
            raise ValueError(f"invalid optimizer hint {self}")

    def scaled_lr(self, batch_size: int) -> float:
        """Learning rate scaled linearly to ``batch_size`` (Goyal et al. 2017)."""
        return self.lr * batch_size / self.reference_batch


def _first_images(batch: Any) -> Tensor:
    """The first image tensor ``(B, C, H, W)`` in a batch (a tensor, or a list/tuple of them)."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Sequence) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise ValueError(f"cannot find an image batch in {type(batch).__name__}")


@contextlib.contextmanager
def preserved_buffers(module: nn.Module) -> Iterator[None]:
    """Restore every buffer of ``module`` (e.g. BatchNorm statistics) on exit."""
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class SSLMethod(nn.Module, abc.ABC):
    """Base class of every self-supervised method (the SSLMethod contract).

    Subclasses implement :meth:`build_heads`, :meth:`make_transform` and
    :meth:`training_step`; they may override :meth:`on_step_end` (momentum updates)
    and :meth:`embedding_for_monitor`. Constructors take keyword arguments with the
    paper's defaults and validate them eagerly (``ValueError``).

    Attributes:
        name: Short identifier used in logs and checkpoints.
        default_optimizer: The paper's optimiser settings (:class:`OptimizerHint`).
        hparams: The constructor arguments, for manifests and ``repr``.
        backbone: The shared :class:`~cxr_curriculum.backbones.Backbone` (after setup).
    """

    name: ClassVar[str] = "ssl"
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint()

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = dict(hparams)
        self.backbone: nn.Module | None = None
        self._head_names: list[str] = []
        self._batch_transform: nn.Module | None = None

    # ----------------------------------------------------------------- life cycle
    def setup(self, backbone: Backbone | nn.Module) -> None:
        """Attach ``backbone`` and build the stage-specific heads and momentum copies.

        Args:
            backbone: A module with ``num_features`` whose ``forward`` maps
                ``(B, C, H, W)`` to pooled features ``(B, num_features)``.

        Raises:
            ValueError: If ``backbone`` has no positive int ``num_features``.
        """
        num_features = getattr(backbone, "num_features", None)
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"backbone must expose a positive int num_features, got {num_features!r}"
            )
        if self.is_setup:
            self.teardown()
        self.backbone = backbone
        before = set(self._modules)
        self.build_heads(num_features)
        self._head_names = [n for n in self._modules if n not in before and n != "backbone"]
        if not self._head_names:
            raise RuntimeError(f"{type(self).__name__}.build_heads registered no module")
        device = next(backbone.parameters()).device
        for name in self._head_names:
            module = self._modules[name]
            if module is not None:
                module.to(device)

    @abc.abstractmethod
    def build_heads(self, num_features: int) -> None:
        """Create heads (and momentum copies) as submodules; called by :meth:`setup`."""

    def teardown(self) -> None:
        """Drop everything :meth:`setup` built; the backbone object is left untouched."""
        for name in self._head_names:
            delattr(self, name)
        self._head_names = []

    @property
    def is_setup(self) -> bool:
        """Whether :meth:`setup` ran and :meth:`teardown` has not."""
        return bool(self._head_names)

    def _require_setup(self) -> nn.Module:
        if self.backbone is None or not self.is_setup:
            raise RuntimeError(f"call {type(self).__name__}.setup(backbone) first")
        return self.backbone

    def _features(self, x: Tensor) -> Tensor:
        """Pooled backbone features ``(B, num_features)`` of images ``(B, C, H, W)``."""
        out: Tensor = self._require_setup()(x)
        return out.flatten(1)

    # ----------------------------------------------------------------- data
    @abc.abstractmethod
    def make_transform(
        self, image_size: int, strength: float = 1.0, batched: bool = False
    ) -> Callable[[Tensor], Any]:
        """Per-sample transform: image ``(1, H, W)`` in ``[0, 1]`` -> this method's input.

        Args:
            image_size: Side of the square views.
            strength: Augmentation strength multiplier (0 = none, 1 = defaults).
            batched: If True the returned transform only resizes, and
                :attr:`batch_transform` makes the views on the device.
        """

    @property
    def batch_transform(self) -> nn.Module | None:
        """On-device view maker set by ``make_transform(..., batched=True)``, else None.

        Apply as ``batch = method.batch_transform(batch)`` (after moving the collated
        batch to the device) before :meth:`training_step`. It is not part of the
        state dict.
        """
        return self._batch_transform

    def _set_batch_transform(self, module: nn.Module | None) -> None:
        object.__setattr__(self, "_batch_transform", module)

    @staticmethod
    def _check_transform_args(image_size: int, strength: float) -> None:
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if not 0.0 <= strength <= 2.0:
            raise ValueError(f"strength must be in [0, 2], got {strength}")

    # ----------------------------------------------------------------- training
    @abc.abstractmethod
    def training_step(self, batch: Any) -> Tensor:
        """Return the scalar loss of one collated batch (uses ``self.backbone``)."""

    def forward(self, batch: Any) -> Tensor:
        """Same as :meth:`training_step`, so the method can be wrapped in DDP."""
        return self.training_step(batch)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step (momentum updates); a no-op by default.

        Args:
            step: Index of the step just taken (0-based) within the stage.
            total_steps: Number of steps of the stage.
        """
        if step < 0 or total_steps < 1:
            raise ValueError(f"need step >= 0 and total_steps >= 1, got {step}, {total_steps}")

    def chance_loss(self, batch_size: int) -> float | None:
        """The loss of a model that has learnt nothing, or ``None`` if the method has none.

        A Curriculum's :class:`~cxr_curriculum.curriculum.DivergenceRule` stops a stage whose
        loss rises far above it (e.g. ``log 4`` for rotation prediction, ``log(2N - 1)``
        for NT-Xent). Methods whose loss has no such level (BYOL, SimSiam, Barlow Twins,
        VICReg) return ``None`` and are checked against their early loss only.

        Args:
            batch_size: Images per process in one loss computation (one micro-batch).
        """
        return None

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """Backbone features ``(B, num_features)`` of the batch's first images.

        Runs without gradients and restores BatchNorm statistics, so monitoring does not
        change training.
        """
        backbone = self._require_setup()
        with preserved_buffers(self):
            out: Tensor = backbone(_first_images(batch))
        return out.flatten(1)

    def head_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the heads (not the backbone, not momentum copies)."""
        params: list[nn.Parameter] = []
        for name in self._head_names:
            module = self._modules[name]
            if module is not None:
                params += [p for p in module.parameters() if p.requires_grad]
        return params

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
