"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning",
arXiv 2011.10566)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from cxr_curriculum.losses import NegativeCosineSimilarity
from cxr_curriculum.methods._views import two_views
from cxr_curriculum.methods.base import OptimizerHint
from cxr_curriculum.methods.heads import SimSiamPredictionHead, SimSiamProjectionHead
from cxr_curriculum.methods.two_view import TwoViewMethod

__all__ = ["SimSiam"]


class SimSiam(TwoViewMethod):
    """Siamese network with a predictor and a stop-gradient; no negatives, no momentum.

    Loss (paper Eq. 4): ``L = 1/2 D(p0, sg(z1)) + 1/2 D(p1, sg(z0))`` with
    ``D = -cos``; the paper halves the symmetric sum (unlike BYOL, which sums).

    Batch: ``[view0, view1]``. Nothing is gathered under DDP (use SyncBatchNorm, as the
    paper did, for global batch statistics).

    Args:
        projection_dim: Width of the 3-layer projector (2048).
        prediction_hidden_dim: Bottleneck of the predictor (512).
    """

    name: ClassVar[str] = "simsiam"
    #: SGD, lr 0.05 x batch/256, momentum 0.9, weight decay 1e-4 (paper, Sec. 4).
    default_optimizer: ClassVar[OptimizerHint] = OptimizerHint("sgd", lr=0.05, weight_decay=1e-4)

    def __init__(self, projection_dim: int = 2048, prediction_hidden_dim: int = 512) -> None:
        super().__init__(projection_dim=projection_dim, prediction_hidden_dim=prediction_hidden_dim)
        for name in ("projection_dim", "prediction_hidden_dim"):
            if self.hparams[name] < 1:
                raise ValueError(f"{name} must be >= 1, got {self.hparams[name]}")
        self.criterion = NegativeCosineSimilarity()

    def build_heads(self, num_features: int) -> None:
        d = self.hparams["projection_dim"]
        self.projection_head = SimSiamProjectionHead(num_features, d, d)
        self.prediction_head = SimSiamPredictionHead(d, self.hparams["prediction_hidden_dim"], d)

    def training_step(self, batch: Any) -> Tensor:
        self._require_setup()
        x0, x1 = two_views(batch)
        z0, z1 = self._project(x0), self._project(x1)
        p0, p1 = self.prediction_head(z0), self.prediction_head(z1)
        return 0.5 * self.criterion.symmetric(p0, p1, z0, z1)
