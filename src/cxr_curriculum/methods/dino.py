"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
arXiv 2104.14294): self-distillation with no labels and multi-crop, on a CNN or a ViT."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cxr_curriculum.losses import DINOLoss
from cxr_curriculum.methods._tokens import check_token_size, token_patch_size
from cxr_curriculum.methods._views import BatchedViews
from cxr_curriculum.methods.base import OptimizerHint, preserved_buffers
from cxr_curriculum.methods.heads import DINOProjectionHead
from cxr_curriculum.methods.teacher import TeacherStudentMethod
from cxr_curriculum.transforms import BatchedXRayAugment, MultiView, Resize, XRayAugment

__all__ = ["DINO"]


class DINO(TeacherStudentMethod):
    """A student matches the centred, sharpened output of a momentum teacher across crops.

    Batch: a list of views ``[global0, global1, local0, ...]``: two global crops
    ``(B, 1, S, S)`` seen by teacher and student, and ``n_local_crops`` small crops
    ``(B, 1, s, s)`` (``s = local_size_ratio * S``) seen by the student only. The loss
    compares every teacher view with every other student view; the centre is updated
    (EMA) inside the loss after each call and all-reduced under DDP. The student runs
    once per resolution (global crops together, local crops together), as the official
    multi-crop wrapper does. On a ViT both sizes must be multiples of the patch size:
    ``image_size`` is checked and the local size is rounded to the nearest multiple (at
    least one patch), e.g. 32 px local crops for 64 px global ones with patch 16; the ViT
    takes both sizes through its resampled positional embeddings.

    Args:
        output_dim: ``K``, the head's output dimension (65536).
        hidden_dim: Head MLP width (2048).
        bottleneck_dim: Head bottleneck (256).
        n_local_crops: Number of local crops (8, the official default; 0 disables multi-crop).
        local_size_ratio: Local/global crop side ratio (96/224).
        global_scale: Area range of the global crops ((0.4, 1.0)).
        local_scale: Area range of the local crops ((0.05, 0.4)).
        teacher_temp: Teacher temperature (0.04).
        student_temp: Student temperature (0.1).
        center_momentum: Centre EMA momentum (0.9).
        momentum: Teacher momentum at the start (0.996), cosine to ``momentum_end`` (1.0).
        momentum_end: Teacher momentum at the end of the stage.
    """

    name: ClassVar[str] = "dino"
    #: AdamW, lr 5e-4 x batch/256, weight decay 0.04 (paper, Sec. 4; the paper raises the
    #: weight decay to 0.4 with a cosine schedule and clips gradients at 3.0).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("adamw", lr=5e-4, weight_decay=0.04)

    def __init__(
        self,
        output_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_local_crops: int = 8,
        local_size_ratio: float = 96 / 224,
        global_scale: tuple[float, float] = (0.4, 1.0),
        local_scale: tuple[float, float] = (0.05, 0.4),
        teacher_temp: float = 0.04,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        momentum_end: float = 1.0,
    ) -> None:
        super().__init__(
            momentum,
            momentum_end,
            output_dim=output_dim,
            hidden_dim=hidden_dim,
            bottleneck_dim=bottleneck_dim,
            n_local_crops=n_local_crops,
            local_size_ratio=local_size_ratio,
            global_scale=global_scale,
            local_scale=local_scale,
            teacher_temp=teacher_temp,
            student_temp=student_temp,
            center_momentum=center_momentum,
        )
        if n_local_crops < 0:
            raise ValueError(f"n_local_crops must be >= 0, got {n_local_crops}")
        if not 0.0 < local_size_ratio <= 1.0:
            raise ValueError(f"local_size_ratio must be in (0, 1], got {local_size_ratio}")
        for name, (lo, hi) in (("global_scale", global_scale), ("local_scale", local_scale)):
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(lo, hi)}")
        DINOLoss(output_dim, teacher_temp, student_temp, center_momentum)  # validate now

    def build_heads(self, num_features: int) -> None:
        hp = self.hparams
        self.projection_head = DINOProjectionHead(
            num_features, hp["hidden_dim"], hp["bottleneck_dim"], hp["output_dim"]
        )
        self.criterion = DINOLoss(
            hp["output_dim"], hp["teacher_temp"], hp["student_temp"], hp["center_momentum"]
        )
        self._build_teacher(self.projection_head)

    def make_transform(
        self, image_size: int, strength: float = 1.0, batched: bool = False
    ) -> Callable[..., Any]:
        """Two global crops (blur p=1.0 and 0.1) and ``n_local_crops`` local crops (p=0.5)."""
        self._check_transform_args(image_size, strength)
        hp = self.hparams
        local_size = self.local_size(image_size)
        specs = [
            (image_size, hp["global_scale"], 1.0),
            (image_size, hp["global_scale"], 0.1),
        ] + [(local_size, hp["local_scale"], 0.5)] * hp["n_local_crops"]
        if batched:
            augs = [
                BatchedXRayAugment(image_size=s, scale=sc, blur_p=p, strength=strength)
                for s, sc, p in specs
            ]
            self._set_batch_transform(BatchedViews(augs))
            return Resize(image_size)
        self._set_batch_transform(None)
        return MultiView(
            [XRayAugment(image_size=s, scale=sc, blur_p=p, strength=strength) for s, sc, p in specs]
        )

    def local_size(self, image_size: int) -> int:
        """Side of the local crops for ``image_size`` global crops (a patch multiple on a ViT).

        Raises:
            ValueError: On a ViT whose patch size does not divide ``image_size``.
        """
        patch = token_patch_size(self.backbone)
        check_token_size("DINO", "image_size", image_size, patch)
        size = image_size * self.hparams["local_size_ratio"]
        if patch is None:
            return max(8, round(size))
        return max(patch, round(size / patch) * patch)

    def _views(self, batch: Any) -> list[Tensor]:
        n = 2 + self.hparams["n_local_crops"]
        if not isinstance(batch, list | tuple) or len(batch) != n:
            raise ValueError(f"expected a list of {n} views (2 global + local crops)")
        return list(batch)

    def _student(self, views: list[Tensor]) -> list[Tensor]:
        # one pass per resolution, as in the official multi-crop wrapper
        out = [self.projection_head(self._features(torch.cat(views[:2]))).chunk(2)]
        if len(views) > 2:
            local = self.projection_head(self._features(torch.cat(views[2:])))
            out.append(local.chunk(len(views) - 2))
        return [t for chunk in out for t in chunk]

    @torch.no_grad()
    def _teacher(self, views: list[Tensor]) -> list[Tensor]:
        logits: Tensor = self.teacher_head(self._teacher_features(torch.cat(views[:2])))
        return list(logits.chunk(2))

    def chance_loss(self, batch_size: int) -> float:
        """``log K``: the cross-entropy of a uniform student over the ``K`` outputs."""
        return math.log(self.hparams["output_dim"])

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        views = self._views(batch)
        loss: Tensor = self.criterion(self._teacher(views), self._student(views))
        return loss

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """L2-normalised student bottleneck ``(B, bottleneck_dim)`` of the first view."""
        head = self.projection_head
        assert isinstance(head, DINOProjectionHead)
        with preserved_buffers(self):
            z = head.mlp(self._features(self._views(batch)[0]))
        return F.normalize(z, dim=1)
