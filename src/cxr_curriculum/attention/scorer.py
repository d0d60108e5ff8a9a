"""``LungAttentionScorer``: where does a chest X-ray classifier look?

Saliency maps (:mod:`.cam`, :mod:`.gradients`, or supplied) are scored against lung
masks (supplied, or predicted by :class:`~cxr_curriculum.segmentation.LungSegmenter`)
with the metrics of :mod:`.metrics`, per image and per lung, and aggregated with
bootstrap confidence intervals by patient (:mod:`cxr_curriculum.stats`). A model that relies on
confounders outside the lungs (text, markers, devices, the hospital of origin) puts its
saliency outside them (DeGrave, Janizek & Lee, Nature Machine Intelligence 2021).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cxr_curriculum.stats import PairedComparison, compare_means

from .assemble import build_report
from .base import SaliencyMethod, check_unit_images
from .cam import CAM
from .dataset import load_sample, pick_indices
from .masks import as_lung_masks, predict_lung_masks
from .registry import SALIENCY_METHODS, make_saliency
from .report import AttentionReport, SanityReport
from .resolution import CoarseSaliencyWarning, coarse_map_message
from .targets import NamedTargetsLike, TargetsLike, describe_targets, slice_targets, targets_by_name

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
    def _settings(self) -> dict[str, Any]:
        return {
            "n_boot": self.n_boot,
            "level": self.level,
            "seed": self.seed,
            "exclude_flagged": self.exclude_flagged,
        }

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
        return self._saliency(model, images, targets)[0]

    def _saliency(
        self, model: nn.Module, images: Tensor, targets: TargetsLike
    ) -> tuple[Tensor, dict[str, Any]]:
        """Maps and what the report should know about them (layer, map size, warnings)."""
        explain = self.explainer(model)
        chunks = []
        for start in range(0, images.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            chunks.append(explain(images[sl], slice_targets(targets, sl)))
        info: dict[str, Any] = {"warnings": []}
        if isinstance(explain, CAM) and explain.map_size is not None:
            info.update(target_layer=explain.layer_name, map_size=list(explain.map_size))
            message = coarse_map_message(model, explain.layer_name, explain.map_size, images)
            if message is not None:
                warnings.warn(message, CoarseSaliencyWarning, stacklevel=3)
                info["warnings"].append(message)
        return torch.cat(chunks), info

    def predict_masks(self, images: Tensor) -> tuple[Tensor, list[bool | None], list[str]]:
        """Predicted ``(B, 2, H, W)`` masks with per-image quality flags and reasons
        (see :func:`~.masks.predict_lung_masks`)."""
        return predict_lung_masks(self.segmenter, images, self.batch_size)

    def score(
        self,
        model: nn.Module | None,
        images: Tensor,
        targets: NamedTargetsLike = None,
        masks: Tensor | None = None,
        patient_ids: Sequence[str] | None = None,
        saliency: Tensor | None = None,
        image_ids: Sequence[str] | None = None,
        keep_maps: bool = True,
        class_names: Sequence[str] | None = None,
    ) -> AttentionReport:
        """Score a batch of X-rays.

        Args:
            model: The classifier (may be ``None`` when ``saliency`` is given).
            images: ``(B, 1, H, W)`` float in ``[0, 1]`` (checked: other ranges, NaN and
                inf raise a ``ValueError``).
            targets: What to explain (see :mod:`.targets`): ``None`` = predicted class;
                a class index or one per image; a class (finding) name or one per image,
                looked up in ``class_names``. For a multi-label (sigmoid) model an index
                or name explains that finding's logit.
            masks: Lung masks (see :func:`~.masks.as_lung_masks`); ``None`` = predict them.
            patient_ids: Per-image patient ids: the bootstrap resamples patients.
            saliency: ``(B, h, w)`` maps from elsewhere (pytorch-grad-cam, captum).
            image_ids: Per-image names for the rows (default: the index).
            keep_maps: Keep maps and masks on the report for plotting.
            class_names: The model's output names in order (e.g.
                :data:`~cxr_curriculum.data.NIH_FINDINGS`), for named targets.

        Warns:
            CoarseSaliencyWarning: The CAM map is too coarse for lung masks (see
                :mod:`.resolution`); the report's ``meta["warnings"]`` keeps the text.
        """
        check_unit_images(images)
        n = images.shape[0]
        for name, seq in (("patient_ids", patient_ids), ("image_ids", image_ids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{len(seq)} {name} for {n} images")
        resolved = targets_by_name(targets, class_names)
        info: dict[str, Any] = {"warnings": []}
        if saliency is None:
            if model is None:
                raise ValueError("give a model or precomputed saliency maps")
            saliency, info = self._saliency(model, images, resolved)
            info.update(method=self.method, target=describe_targets(resolved, class_names))
        elif saliency.ndim != 3 or saliency.shape[0] != n:
            raise ValueError(f"saliency must be ({n}, H, W), got {tuple(saliency.shape)}")
        else:
            info["method"] = "supplied"
        if masks is None:
            lungs, quality, reasons = self.predict_masks(images)
            info.update(mask_source="predicted", lung_split="channels")
        else:
            lungs, info["lung_split"] = as_lung_masks(masks)
            quality, reasons, info["mask_source"] = [None] * n, [""] * n, "supplied"
        if lungs.shape[0] != n:
            raise ValueError(f"{lungs.shape[0]} masks for {n} images")
        columns: dict[str, list[Any]] = {
            "image_id": list(image_ids) if image_ids is not None else [str(i) for i in range(n)],
            "patient_id": list(patient_ids) if patient_ids is not None else [None] * n,
        }
        settings = self._settings
        return build_report(
            images, saliency, lungs, quality, reasons, columns, info, settings, keep_maps
        )

    def score_dataset(
        self,
        model: nn.Module,
        dataset: Any,
        n: int | None = 32,
        image_size: int | tuple[int, int] = 224,
        seed: int = 0,
        targets: NamedTargetsLike = None,
        class_names: Sequence[str] | None = None,
        segmenter: Any = None,
        stratify: bool = True,
        keep_maps: bool = True,
    ) -> AttentionReport:
        """Pick images from a dataset, segment them natively, resize, and score them.

        Images are drawn with :func:`~.dataset.pick_indices` (seeded; classes balanced),
        their lungs segmented at the images' own resolution, then images and masks
        resized to ``image_size`` (:func:`~.dataset.load_sample`). Rows keep the file
        name (``image_id``), ``file``, ``patient_id``, ``label`` and dataset ``index``.

        Args:
            model: The classifier, taking ``(B, 1, image_size, image_size)`` in ``[0, 1]``.
            dataset: A dataset of :mod:`cxr_curriculum.data` (or a ``Subset``) without
                a resizing transform.
            n: Number of images (``None``: all).
            image_size: The classifier's input size.
            seed: Seed of the selection.
            targets: As for :meth:`score`; names are looked up in ``class_names``.
            class_names: Output names; default the dataset's ``classes``.
            segmenter: Overrides the scorer's segmenter for this call.
            stratify: Balance the classes in the selection.
            keep_maps: Keep maps and masks on the report for plotting.
        """
        indices = pick_indices(dataset, n, seed, stratify)
        seg = segmenter if segmenter is not None else self.segmenter
        sample = load_sample(dataset, indices, image_size, seg, self.batch_size)
        if class_names is None:
            class_names = getattr(dataset, "classes", None)
        resolved = targets_by_name(targets, class_names)
        saliency, info = self._saliency(model, sample.images, resolved)
        info.update(method=self.method, target=describe_targets(resolved, class_names))
        info.update(sample.describe(dataset, stratify, seed))
        masks, ok, why = sample.masks, sample.quality_ok, sample.quality_reasons
        columns, settings = sample.columns(), self._settings
        return build_report(
            sample.images, saliency, masks, ok, why, columns, info, settings, keep_maps
        )

    def compare(
        self, report_a: AttentionReport, report_b: AttentionReport, metric: str = "energy_in_mask"
    ) -> PairedComparison:
        """Paired test of ``metric`` for two reports on the same images (``a - b``).

        Images left out of either report's aggregates (failed mask QC, excluded) are
        left out of the comparison.
        """
        if len(report_a) != len(report_b):
            raise ValueError(f"reports differ in length: {len(report_a)} vs {len(report_b)}")
        ids_a = [r["image_id"] for r in report_a.rows]
        if ids_a != [r["image_id"] for r in report_b.rows]:
            raise ValueError("reports must score the same images in the same order")
        counted = report_a.counted & report_b.counted
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        return compare_means(
            torch.where(counted, report_a.column(metric), nan),
            torch.where(counted, report_b.column(metric), nan),
            report_a.patient_ids,
            metric=metric,
            n_resamples=self.n_boot,
            confidence=self.level,
            seed=self.seed,
        )

    def sanity_check(
        self,
        model: nn.Module,
        images: Tensor,
        targets: NamedTargetsLike = None,
        masks: Tensor | None = None,
        max_steps: int = 6,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
    ) -> SanityReport:
        """Cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

        See :func:`~.sanity.cascading_randomization`; ``targets`` and ``class_names``
        as for :meth:`score`. The result has a :meth:`~.report.SanityReport.summary`.
        """
        from .sanity import cascading_randomization

        check_unit_images(images)
        resolved = targets_by_name(targets, class_names)
        return cascading_randomization(self, model, images, resolved, masks, max_steps, seed)
