"""MoCo v2 (Chen, Fan, Girshick & He 2020, "Improved Baselines with Momentum Contrastive
Learning", arXiv 2003.04297; MoCo: He et al. 2020, arXiv 1911.05722)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from cxr_curriculum.losses import MemoryQueue, info_nce_with_negatives
from cxr_curriculum.methods._views import two_views
from cxr_curriculum.methods.base import OptimizerHint, preserved_buffers
from cxr_curriculum.methods.heads import MoCoV2ProjectionHead
from cxr_curriculum.methods.teacher import TeacherStudentMethod

__all__ = ["MoCoV2"]


class MoCoV2(TeacherStudentMethod):
    """Query encoder vs. momentum key encoder, InfoNCE against a queue of past keys.

    Batch: ``[view0, view1]`` (queries from view 0, keys from view 1; with ``symmetric``
    also the reverse). The queue (a persistent buffer) and the key encoder are created
    in :meth:`setup` and saved in ``state_dict()``.

    DDP: with ``gather_distributed`` the keys of all processes are enqueued each step
    (gathered without gradients, as in the official code), so every process holds the
    same queue; otherwise each process enqueues only its own keys. Shuffling BN is not
    implemented: use SyncBatchNorm off and per-process batches of reasonable size.

    Args:
        temperature: InfoNCE temperature (0.2).
        queue_size: Number of queued negative keys (65536).
        hidden_dim: Projection MLP hidden width (2048).
        output_dim: Key/query dimension (128).
        momentum: Key-encoder momentum (0.999).
        momentum_end: Momentum at the end of the stage; 0.999 keeps the paper's constant,
            1.0 gives a cosine ramp as in BYOL.
        symmetric: Also contrast view-1 queries with view-0 keys (the paper is asymmetric).
        gather_distributed: Enqueue the keys of all processes.
    """

    name: ClassVar[str] = "moco_v2"
    #: SGD, lr 0.03 for batch 256, momentum 0.9, weight decay 1e-4 (paper).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("sgd", lr=0.03, weight_decay=1e-4)

    def __init__(
        self,
        temperature: float = 0.2,
        queue_size: int = 65536,
        hidden_dim: int = 2048,
        output_dim: int = 128,
        momentum: float = 0.999,
        momentum_end: float = 0.999,
        symmetric: bool = False,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__(
            momentum,
            momentum_end,
            temperature=temperature,
            queue_size=queue_size,
            hidden_dim=hidden_dim,
            output_dim=output_dim,
            symmetric=symmetric,
            gather_distributed=gather_distributed,
        )
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        for name, value in (
            ("queue_size", queue_size),
            ("hidden_dim", hidden_dim),
            ("output_dim", output_dim),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    def build_heads(self, num_features: int) -> None:
        hp = self.hparams
        self.projection_head = MoCoV2ProjectionHead(
            num_features, hp["hidden_dim"], hp["output_dim"]
        )
        self.queue = MemoryQueue(hp["queue_size"], hp["output_dim"], hp["gather_distributed"])
        self._build_teacher(self.projection_head)

    def _query(self, x: Tensor) -> Tensor:
        out: Tensor = self.projection_head(self._features(x))
        return out

    @torch.no_grad()
    def _key(self, x: Tensor) -> Tensor:
        return F.normalize(self.teacher_head(self._teacher_features(x)), dim=1)

    def chance_loss(self, batch_size: int) -> float:
        """``log(K + 1)`` per direction: InfoNCE when the key is no closer than the queue."""
        directions = 2 if self.hparams["symmetric"] else 1
        return directions * math.log(self.hparams["queue_size"] + 1)

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        x0, x1 = two_views(batch)
        temperature = self.hparams["temperature"]
        negatives = self.queue.negatives()
        k1 = self._key(x1)
        loss = info_nce_with_negatives(self._query(x0), k1, negatives, temperature)
        keys = [k1]
        if self.hparams["symmetric"]:
            k0 = self._key(x0)
            loss = loss + info_nce_with_negatives(self._query(x1), k0, negatives, temperature)
            keys.append(k0)
        if self.training:
            for k in keys:  # after the loss, so that a key is never its own negative
                self.queue.enqueue(k)
        return loss

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """L2-normalised queries ``(B, output_dim)`` of the first view."""
        with preserved_buffers(self):
            return F.normalize(self._query(two_views(batch)[0]), dim=1)
