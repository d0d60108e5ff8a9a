"""``LungAttentionScorer``: where does a chest X-ray classifier look?

Saliency maps (:mod:`.cam`, :mod:`.gradients`, or supplied) are scored against lung
masks (supplied, or predicted by :class:`~cxr_curriculum.segmentation.LungSegmenter`)
with the metrics of :mod:`.metrics`, per image and per lung, and aggregated with
bootstrap confidence intervals by patient (:mod:`.stats`). A model that relies on
confounders outside the lungs (text, markers, devices, the hospital of origin) puts its
saliency outside them (DeGrave, Janizek & Lee, Nature Machine Intelligence 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .base import SaliencyMethod
from .masks import as_lung_masks
from .metrics import empty_saliency, lung_metrics
from .registry import SALIENCY_METHODS, make_saliency
from .report import AttentionReport, SanityReport
from .stats import PairedComparison, bootstrap_ci, paired_bootstrap
from .targets import BinaryLogitTarget, ClassTarget, TargetsLike

__all__ = ["LungAttentionScorer"]


class LungAttentionScorer:
    """Score how much of a model's saliency falls inside the lungs.

    Args:
        segmenter: An object with ``predict(images (B, 1, H, W)) -> (B, 2, H, W) bool``;
            ``None`` creates :class:`~cxr_curriculum.segmentation.LungSegmenter` on first
            use (never needed when masks are supplied).
        method: Saliency method, a key of :data:`~.registry.SALIENCY_METHODS`.
        target_layer: Layer for CAM methods (module, dotted name, or ``None`` to use the
            model's ``target_layer``, as a :class:`~cxr_curriculum.backbones.Backbone` has).
        method_kwargs: Settings for the method (e.g. ``{"n_samples": 8}``).
        batch_size: Images per saliency/segmentation batch.
        n_boot: Bootstrap resamples for the confidence intervals.
        level: Confidence level.
        seed: Seed of the bootstrap generator.
        exclude_flagged: Leave images whose predicted mask failed the segmenter's quality
            check out of the aggregate (their rows stay in the report).
    """

    def __init__(
        self,
        segmenter: Any = None,
        method: str = "gradcam",
        target_layer: nn.Module | str | None = None,
        method_kwargs: dict[str, Any] | None = None,
        batch_size: int = 32,
        n_boot: int = 2000,
        level: float = 0.95,
        seed: int = 0,
        exclude_flagged: bool = False,
    ) -> None:
        if method not in SALIENCY_METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {sorted(SALIENCY_METHODS)}")
        if segmenter is not None and not callable(getattr(segmenter, "predict", None)):
            raise ValueError("segmenter must have a predict(images) -> (B, 2, H, W) bool method")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._segmenter = segmenter
        self.method = method
        self.target_layer = target_layer
        self.method_kwargs = dict(method_kwargs or {})
        self.batch_size = batch_size
        self.n_boot = n_boot
        self.level = level
        self.seed = seed
        self.exclude_flagged = exclude_flagged

    @property
    def segmenter(self) -> Any:
        """The lung segmenter, created on first use."""
        if self._segmenter is None:
            from cxr_curriculum.segmentation import LungSegmenter

            self._segmenter = LungSegmenter()
        return self._segmenter

    def explainer(self, model: nn.Module) -> SaliencyMethod:
        """The configured saliency method bound to ``model``."""
        return make_saliency(self.method, model, self.target_layer, **self.method_kwargs)

    def saliency(self, model: nn.Module, images: Tensor, targets: TargetsLike = None) -> Tensor:
        """``(B, H, W)`` saliency maps, computed ``batch_size`` images at a time."""
        explain = self.explainer(model)
        chunks = []
        for start in range(0, images.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            chunks.append(explain(images[sl], _slice_targets(targets, sl)))
        return torch.cat(chunks)

    def predict_masks(self, images: Tensor) -> tuple[Tensor, list[bool | None], list[str]]:
        """Predicted ``(B, 2, H, W)`` masks with per-image quality flags and reasons.

        Uses the segmenter's ``predict_with_quality`` when it has one (as
        :class:`~cxr_curriculum.segmentation.LungSegmenter` does), else ``predict``
        (flags ``None``).
        """
        masks: list[Tensor] = []
        flags: list[bool | None] = []
        reasons: list[str] = []
        seg = self.segmenter
        for batch in images.split(self.batch_size):
            with_quality = getattr(seg, "predict_with_quality", None)
            if callable(with_quality):
                pred = with_quality(batch)
                m = pred.masks
                flags += [bool(q.ok) for q in pred.quality]
                reasons += ["; ".join(q.reasons) for q in pred.quality]
            else:
                m = seg.predict(batch)
                flags += [None] * batch.shape[0]
                reasons += [""] * batch.shape[0]
            if m.dtype != torch.bool or m.shape[:2] != (batch.shape[0], 2):
                raise ValueError(
                    f"segmenter returned {m.dtype} {tuple(m.shape)}, need (B, 2, H, W) bool"
                )
            masks.append(m.cpu())
        return torch.cat(masks), flags, reasons

    def score(
        self,
        model: nn.Module | None,
        images: Tensor,
        targets: TargetsLike = None,
        masks: Tensor | None = None,
        patient_ids: Sequence[str] | None = None,
        saliency: Tensor | None = None,
        image_ids: Sequence[str] | None = None,
        keep_maps: bool = True,
    ) -> AttentionReport:
        """Score a batch of X-rays.

        Args:
            model: The classifier (may be ``None`` when ``saliency`` is given).
            images: ``(B, 1, H, W)`` float in ``[0, 1]``.
            targets: What to explain (see :mod:`.targets`); ``None`` = predicted class.
            masks: Lung masks (see :func:`~.masks.as_lung_masks`); ``None`` = predict them.
            patient_ids: Per-image patient ids: the bootstrap resamples patients.
            saliency: ``(B, h, w)`` maps from elsewhere (pytorch-grad-cam, captum).
            image_ids: Per-image names for the rows (default: the index).
            keep_maps: Keep maps and masks on the report for plotting.
        """
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise ValueError("images must be a (B, 1, H, W) float tensor")
        n = images.shape[0]
        for name, seq in (("patient_ids", patient_ids), ("image_ids", image_ids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{len(seq)} {name} for {n} images")
        supplied = saliency is not None
        if saliency is None:
            if model is None:
                raise ValueError("give a model or precomputed saliency maps")
            saliency = self.saliency(model, images, targets)
        elif saliency.ndim != 3 or saliency.shape[0] != n:
            raise ValueError(f"saliency must be ({n}, H, W), got {tuple(saliency.shape)}")
        if masks is None:
            lungs, quality, reasons = self.predict_masks(images)
            source, split = "predicted", "channels"
        else:
            lungs, split = as_lung_masks(masks)
            quality, reasons, source = [None] * n, [""] * n, "supplied"
        if lungs.shape[0] != n:
            raise ValueError(f"{lungs.shape[0]} masks for {n} images")
        saliency = saliency.detach().float().cpu()
        values = lung_metrics(saliency, lungs.cpu())
        empty = empty_saliency(saliency)
        rows = []
        for i in range(n):
            row: dict[str, Any] = {
                "image_id": image_ids[i] if image_ids is not None else str(i),
                "patient_id": patient_ids[i] if patient_ids is not None else None,
            }
            row.update({k: float(v[i]) for k, v in values.items()})
            row.update(
                saliency_empty=bool(empty[i]),
                seg_quality_ok=quality[i],
                seg_quality_reasons=reasons[i],
                mask_source=source,
            )
            rows.append(row)
        keep = torch.tensor([not (self.exclude_flagged and q is False) for q in quality])
        nan = torch.tensor(float("nan"))
        aggregate = {
            k: bootstrap_ci(
                torch.where(keep, v, nan), patient_ids, self.n_boot, self.level, self.seed
            )
            for k, v in values.items()
        }
        meta = {
            "method": "supplied" if supplied else self.method,
            "interpolation": "bilinear, align_corners=False (saliency resized to the mask)",
            "sign_rule": "positive part",
            "lung_split": split,
            "mask_source": source,
            "n_boot": self.n_boot,
            "level": self.level,
            "bootstrap_unit": "patient" if patient_ids is not None else "image",
            "n_flagged_masks": sum(q is False for q in quality),
            "exclude_flagged": self.exclude_flagged,
        }
        return AttentionReport(
            rows, aggregate, meta, saliency if keep_maps else None, lungs if keep_maps else None
        )

    def compare(
        self, report_a: AttentionReport, report_b: AttentionReport, metric: str = "energy_in_mask"
    ) -> PairedComparison:
        """Paired test of ``metric`` for two reports on the same images (``a - b``)."""
        if len(report_a) != len(report_b):
            raise ValueError(f"reports differ in length: {len(report_a)} vs {len(report_b)}")
        ids_a = [r["image_id"] for r in report_a.rows]
        if ids_a != [r["image_id"] for r in report_b.rows]:
            raise ValueError("reports must score the same images in the same order")
        return paired_bootstrap(
            report_a.column(metric),
            report_b.column(metric),
            report_a.patient_ids,
            metric,
            self.n_boot,
            self.level,
            self.seed,
        )

    def sanity_check(
        self,
        model: nn.Module,
        images: Tensor,
        targets: TargetsLike = None,
        masks: Tensor | None = None,
        max_steps: int = 6,
        seed: int = 0,
    ) -> SanityReport:
        """Cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

        See :func:`~.sanity.cascading_randomization`.
        """
        from .sanity import cascading_randomization

        return cascading_randomization(self, model, images, targets, masks, max_steps, seed)


def _slice_targets(targets: TargetsLike, sl: slice) -> TargetsLike:
    """Per-image targets follow the batch; scalars and callables are shared."""
    if isinstance(targets, Tensor) and targets.ndim == 1:
        return targets[sl]
    if isinstance(targets, ClassTarget) and targets.k.ndim == 1:
        return ClassTarget(targets.k[sl])
    if isinstance(targets, BinaryLogitTarget) and targets.sign.ndim == 1:
        return BinaryLogitTarget(targets.sign[sl])
    if isinstance(targets, Sequence) and not isinstance(targets, str):
        return list(targets)[sl]
    return targets
