"""``LungAttentionScorer``: where does a chest X-ray classifier look?

Saliency maps (:mod:`.cam`, :mod:`.gradients`, any pytorch-grad-cam or captum method
through :mod:`.adapters`, or supplied) are scored against lung masks (supplied, or
predicted by :class:`~cxr_curriculum.segmentation.LungSegmenter`) with the metrics of
:mod:`.metrics`, per image and per lung, optionally with the faithfulness metrics of
:mod:`.faithfulness` and the lung-restricted effect of :mod:`.lung_effect`, and
aggregated with bootstrap confidence intervals by patient (:mod:`cxr_curriculum.stats`).
A model that relies on confounders outside the lungs (text, markers, devices, the
hospital of origin) puts its saliency outside them (DeGrave, Janizek & Lee, Nature
Machine Intelligence 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cxr_curriculum.stats import PairedComparison, compare_means

from .assemble import FaithfulnessRun, build_report
from .base import SaliencyMethod, as_model_dtype, check_saliency, check_unit_images
from .dataset import load_sample, pick_indices
from .faithfulness import check_faithfulness
from .masks import predict_lung_masks
from .perturbation import PerturbationSettings
from .registry import check_method, make_saliency
from .report import AttentionReport, SanityReport
from .score_inputs import identity_columns, image_size, lung_masks, saliency_in_batches
from .targets import NamedTargetsLike, TargetsLike, describe_targets, targets_by_name

__all__ = ["LungAttentionScorer"]


class LungAttentionScorer:
    """Score how much of a model's saliency falls inside the lungs.

    Args:
        segmenter: An object with ``predict(images (B, 1, H, W)) -> (B, 2, H, W) bool``;
            ``None`` creates :class:`~cxr_curriculum.segmentation.LungSegmenter` on first
            use (never needed when masks are supplied).
        method: Saliency method: a key of :data:`~.registry.SALIENCY_METHODS`, or any
            method class of pytorch-grad-cam or captum as ``"pytorch-grad-cam:ScoreCAM"``
            / ``"captum:Occlusion"`` (optional extra ``saliency``; see :mod:`.adapters`).
        target_layer: Layer for CAM and layer methods: a module, a dotted name (full, or
            relative to the backbone: ``"layer3"`` works on a bare backbone, on
            ``nn.Sequential(backbone, head)`` and on a fine-tuned classifier; see
            :func:`~.cam.find_layer`), or ``None`` to use the model's ``target_layer``.
        method_kwargs: Settings for the method (e.g. ``{"n_samples": 8}``); for adapted
            methods ``{"init": {...}, "call": {...}}``: the class's constructor and the
            call that computes the maps.
        batch_size: Images per saliency/segmentation/perturbation batch.
        n_boot: Bootstrap resamples for the confidence intervals.
        level: Confidence level.
        seed: Seed of the bootstrap generator.
        exclude_flagged: Leave images whose predicted mask failed the segmenter's quality
            check out of the aggregate (their rows stay in the report).
        faithfulness: Perturbation metrics to add as report columns, any of
            ``"deletion"``, ``"insertion"``, ``"road"`` (:mod:`.faithfulness`) and
            ``"lungs"`` (the lung-restricted effect, :mod:`.lung_effect`); off by
            default (each costs forward passes, see docs/attention.md).
        perturbation: Settings of those metrics (steps, baseline, output, ROAD).

    Raises:
        ValueError: An unknown method or faithfulness metric, or invalid settings.
        ImportError: An adapted method whose library is missing (names the extra).
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
        faithfulness: Sequence[str] = (),
        perturbation: PerturbationSettings | None = None,
    ) -> None:
        check_method(method)
        if perturbation is not None and not isinstance(perturbation, PerturbationSettings):
            raise ValueError(
                f"perturbation must be a PerturbationSettings, got {type(perturbation).__name__}"
            )
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
        self.faithfulness = faithfulness  # validated by the setter
        self.perturbation = perturbation or PerturbationSettings()

    @property
    def faithfulness(self) -> tuple[str, ...]:
        """The perturbation metrics added to every report (validated when set)."""
        return self._faithfulness

    @faithfulness.setter
    def faithfulness(self, names: Sequence[str] | None) -> None:
        self._faithfulness = check_faithfulness(names)

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
        explain = self.explainer(model)
        return saliency_in_batches(explain, model, images, targets, self.batch_size, self.method)[0]

    def predict_masks(self, images: Tensor) -> tuple[Tensor, list[bool | None], list[str]]:
        """Predicted ``(B, 2, H, W)`` masks with per-image quality flags and reasons
        (see :func:`~.masks.predict_lung_masks`)."""
        return predict_lung_masks(self.segmenter, images, self.batch_size)

    def score(
        self,
        model: nn.Module | None,
        images: Tensor,
        targets: NamedTargetsLike = None,
        masks: Any = None,
        patient_ids: Sequence[str] | None = None,
        saliency: Tensor | None = None,
        image_ids: Sequence[str] | None = None,
        keep_maps: bool = True,
        class_names: Sequence[str] | None = None,
        labels: Sequence[int] | None = None,
    ) -> AttentionReport:
        """Score a batch of X-rays.

        Args:
            model: The classifier (may be ``None`` when ``saliency`` is given and no
                faithfulness metric is asked for).
            images: ``(B, 1, H, W)`` float in ``[0, 1]`` (checked: other ranges, NaN,
                inf and empty images raise a ``ValueError``); float64, float16 and
                bfloat16 are converted to the model's parameter dtype.
            targets: What to explain (see :mod:`.targets`): ``None`` = predicted class;
                a class index or one per image; a class (finding) name or one per image,
                looked up in ``class_names``. For a multi-label (sigmoid) model an index
                or name explains that finding's logit.
            masks: Lung masks (see :func:`~.masks.as_lung_masks`), or the result of
                ``LungSegmenter.predict_with_quality`` (its quality verdicts then reach
                the report); ``None`` = predict them. Masks of another size but the
                images' aspect ratio are resized (``nearest-exact``) with a warning;
                another aspect ratio is refused.
            patient_ids: Per-image patient ids: the bootstrap resamples patients.
            saliency: ``(B, h, w)`` maps from elsewhere (same aspect ratio as the
                images; NaN or inf values are refused).
            image_ids: Per-image names for the rows (default: the index).
            keep_maps: Keep maps and masks on the report for plotting.
            class_names: The model's output names in order (e.g.
                :data:`~cxr_curriculum.data.NIH_FINDINGS`), for named targets.
            labels: Per-image class labels for the rows (``label``): pictures are then
                titled with them and :meth:`~.report.AttentionReport.save_grid` draws
                the classes in turn.

        Warns:
            CoarseSaliencyWarning: The CAM map is too coarse for lung masks (see
                :mod:`.resolution`); the report's ``meta["warnings"]`` keeps the text.
            UserWarning: Masks were resized to the images (``meta["warnings"]`` too).
        """
        check_unit_images(images)
        if self.faithfulness and model is None:
            raise ValueError("faithfulness metrics need the model: pass it to score()")
        images = as_model_dtype(images, model)
        n = images.shape[0]
        columns = identity_columns(n, image_ids, patient_ids, labels)
        resolved = targets_by_name(targets, class_names)
        info: dict[str, Any] = {"warnings": []}
        if saliency is None:
            if model is None:
                raise ValueError("give a model or precomputed saliency maps")
            explain = self.explainer(model)
            saliency, info = saliency_in_batches(
                explain, model, images, resolved, self.batch_size, self.method
            )
            info.update(method=self.method, target=describe_targets(resolved, class_names))
        else:
            saliency = check_saliency(saliency, n, image_size(images), "supplied")
            info["method"] = "supplied"
        lungs, quality, reasons = lung_masks(masks, images, self.predict_masks, info)
        return self._report(
            model, images, saliency, lungs, quality, reasons, columns, info, resolved, keep_maps
        )

    def _report(
        self,
        model: nn.Module | None,
        images: Tensor,
        saliency: Tensor,
        lungs: Tensor,
        quality: list[bool | None],
        reasons: list[str],
        columns: dict[str, list[Any]],
        info: dict[str, Any],
        targets: TargetsLike,
        keep_maps: bool,
    ) -> AttentionReport:
        """The report, with the faithfulness columns if asked for."""
        faithful = None
        if self.faithfulness and model is not None:
            faithful = FaithfulnessRun(
                model, targets, self.faithfulness, self.perturbation, self.batch_size
            )
        return build_report(
            images, saliency, lungs, quality, reasons, columns, info, self._settings, keep_maps,
            faithful,
        )  # fmt: skip

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
        images = as_model_dtype(sample.images, model)
        explain = self.explainer(model)
        saliency, info = saliency_in_batches(
            explain, model, images, resolved, self.batch_size, self.method
        )
        info.update(method=self.method, target=describe_targets(resolved, class_names))
        info.update(sample.describe(dataset, stratify, seed))
        masks, ok, why = sample.masks, sample.quality_ok, sample.quality_reasons
        return self._report(
            model, images, saliency, masks, ok, why, sample.columns(), info, resolved, keep_maps
        )

    def compare(
        self, report_a: AttentionReport, report_b: AttentionReport, metric: str = "energy_in_mask"
    ) -> PairedComparison:
        """Paired test of ``metric`` for two reports on the same images (``a - b``).

        ``metric`` is any numeric column: a lung metric, or a faithfulness column
        (``"deletion"``, ``"road"``, ``"lung_effect"``, ...) when both reports have it.
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
        images = as_model_dtype(images, model)
        resolved = targets_by_name(targets, class_names)
        return cascading_randomization(self, model, images, resolved, masks, max_steps, seed)
