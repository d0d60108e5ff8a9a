"""A base for joint-embedding methods trained on two augmented views of each image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cxr_curriculum.methods._tokens import check_token_size, token_patch_size
from cxr_curriculum.methods._views import two_view_transform, two_views
from cxr_curriculum.methods.base import SSLMethod, preserved_buffers

__all__ = ["ASYMMETRIC_BLUR", "TwoViewMethod"]

#: BYOL's asymmetric views (Grill et al. 2020, Table 6): view 0 always blurred, view 1
#: with probability 0.1; also used by Barlow Twins and VICReg.
ASYMMETRIC_BLUR: tuple[dict[str, Any], dict[str, Any]] = ({"blur_p": 1.0}, {"blur_p": 0.1})


class TwoViewMethod(SSLMethod):
    """An :class:`SSLMethod` whose batch is ``[view0, view1]`` of ``(B, 1, S, S)`` views.

    Provides :meth:`make_transform` (two :class:`~cxr_curriculum.transforms.XRayAugment`
    views, or on-device views with ``batched=True``; asymmetric blur when the
    hyper-parameter ``asymmetric_blur`` is true), :meth:`_project` (backbone then
    ``self.projection_head``) and a collapse-monitor embedding: the L2-normalised
    projection of the first view, whose per-dimension standard deviation is about
    ``1/sqrt(D)`` without collapse and 0 at collapse. On a ViT backbone the views must be
    a multiple of its patch size (checked here once the method is set up).
    """

    projection_head: nn.Module

    def make_transform(
        self, image_size: int, strength: float = 1.0, batched: bool = False
    ) -> Callable[..., Any]:
        """Two views per image; see :func:`~cxr_curriculum.methods._views.two_view_transform`."""
        self._check_transform_args(image_size, strength)
        check_token_size(
            type(self).__name__, "image_size", image_size, token_patch_size(self.backbone)
        )
        kwargs = ASYMMETRIC_BLUR if self.hparams.get("asymmetric_blur", False) else ({}, {})
        transform, batch_tf = two_view_transform(image_size, strength, batched, kwargs)
        self._set_batch_transform(batch_tf)
        return transform

    def _project(self, x: Tensor) -> Tensor:
        """``projection_head(backbone(x))``: ``(B, 1, S, S) -> (B, D)``."""
        out: Tensor = self.projection_head(self._features(x))
        return out

    @torch.no_grad()
    def embedding_for_monitor(self, batch: Any) -> Tensor:
        """L2-normalised projections ``(B, D)`` of the first view (no side effects)."""
        with preserved_buffers(self):
            z = self._project(two_views(batch)[0])
        return F.normalize(z, dim=1)
