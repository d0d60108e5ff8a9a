"""``LungSegmenter``: the bundled lung model behind one call, offline, batched.

Masks follow the radiological convention of frontal (PA/AP) views: channel 0 is the
patient's right lung, on the image's left; channel 1 the left lung. See
``docs/lung_model_card.md`` for the data, metrics and known failure modes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cxr_curriculum.segmentation.inputs import ImageInput, as_batch
from cxr_curriculum.segmentation.model import LungNet
from cxr_curriculum.segmentation.postprocess import MaskQuality, assess_quality, clean_masks
from cxr_curriculum.segmentation.weights import LungSegmenterWeights, load_state_dict

__all__ = ["ImageInput", "LungPrediction", "LungSegmenter"]


@dataclass(frozen=True)
class LungPrediction:
    """Masks with one quality verdict per image.

    Attributes:
        masks: ``bool`` tensor ``(B, 2, H, W)``: right lung (image left), left lung.
        quality: One :class:`~cxr_curriculum.segmentation.postprocess.MaskQuality` per image.
    """

    masks: Tensor
    quality: list[MaskQuality]

    @property
    def ok(self) -> Tensor:
        """``bool`` tensor ``(B,)``: True where the mask passed every quality check."""
        return torch.tensor([q.ok for q in self.quality], dtype=torch.bool)


class LungSegmenter:
    """Segment the right and left lung of frontal chest radiographs.

    The bundled U-Net (:class:`~cxr_curriculum.segmentation.weights.LungSegmenterWeights`)
    is loaded from the package with its sha256 verified; nothing is downloaded.

    Args:
        device: Where to run (``None``: CPU).
        weights: Which bundled weights to load.
        batch_size: Images per forward pass inside :meth:`predict`.
        postprocess: Keep each lung's largest component and fill holes.

    Example:
        >>> seg = LungSegmenter()
        >>> masks = seg.predict(torch.rand(2, 1, 300, 250))
        >>> masks.shape, masks.dtype
        (torch.Size([2, 2, 300, 250]), torch.bool)
    """

    def __init__(
        self,
        device: str | torch.device | None = None,
        weights: LungSegmenterWeights = LungSegmenterWeights.DEFAULT,
        *,
        batch_size: int = 16,
        postprocess: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.weights = weights
        state = load_state_dict(weights)
        self.model = LungNet(weights.value.spec)
        self.model.load_state_dict(state)
        self.model.to(self.device).eval()
        self.input_size = weights.value.input_size
        self.batch_size = int(batch_size)
        self.postprocess = bool(postprocess)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(weights={self.weights.name}, input_size={self.input_size}, "
            f"device={self.device})"
        )

    def _logits(self, images: ImageInput, *, margins: bool = False) -> Tensor:
        """Logits at the input's resolution, on the input's device.

        With ``margins``, returns the two lung logits minus the background logit
        ``(B, 2, H, W)`` instead of ``(B, 3, H, W)``: bilinear resizing is linear, so
        the class with the largest resized logit is read from these two maps alone,
        and only two channels are resized to full resolution.
        """
        batch = as_batch(images)
        height, width = batch.shape[-2:]
        size = (self.input_size, self.input_size)
        chunks = []
        for start in range(0, batch.shape[0], self.batch_size):
            x = batch[start : start + self.batch_size].to(self.device, torch.float32)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            logits = self.model(x.clamp(0.0, 1.0))
            if margins:
                logits = logits[:, 1:] - logits[:, :1]
            chunks.append(
                F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
            )
        return torch.cat(chunks).to(batch.device)

    @torch.no_grad()
    def predict_proba(self, images: ImageInput) -> Tensor:
        """Class probabilities at the input's resolution (no post-processing).

        The image is resized (antialiased bilinear) to the model's square input, and
        the logits are resized back (bilinear) before the softmax.

        Args:
            images: As for :meth:`predict` (validated the same way).

        Returns:
            ``float32`` ``(B, 3, H, W)`` on ``images``' device: background, right lung,
            left lung.
        """
        return self._logits(images).softmax(1)

    @torch.no_grad()
    def predict(self, images: ImageInput) -> Tensor:
        """Lung masks at the input's resolution.

        Args:
            images: ``(B, 1, H, W)`` float in ``[0, 1]`` of any size (at least 8x8), or
                one image as a path (``str`` or ``os.PathLike``, read with
                :func:`~cxr_curriculum.data.read_image`), PIL image, numpy array or
                ``(1, H, W)`` tensor. ``uint8``/``uint16`` tensors and arrays are scaled
                by 255/65535 (see :mod:`~cxr_curriculum.segmentation.inputs`).

        Returns:
            ``bool`` tensor ``(B, 2, H, W)``: channel 0 the patient's right lung (image
            left), channel 1 the left lung; ``B = 1`` for a single image.

        Raises:
            ValueError: NaN or infinite pixels, float values outside ``[0, 1]`` (e.g.
                8-bit data as floats), a side below 8 pixels, an empty batch, a wrong
                shape or dtype; the message says which and what was found.
        """
        margin = self._logits(images, margins=True)
        right, left = margin[:, 0], margin[:, 1]
        # The argmax of (background, right, left) = (0, right, left) after the shift.
        masks = torch.stack([(right > 0) & (right >= left), (left > 0) & (left > right)], dim=1)
        return clean_masks(masks) if self.postprocess else masks

    def predict_with_quality(self, images: ImageInput) -> LungPrediction:
        """Like :meth:`predict`, plus a per-image plausibility verdict.

        Returns:
            :class:`LungPrediction`; ``.ok`` is False where a lung is missing, the
            lung area is implausible, or the lungs are on the wrong sides.
        """
        masks = self.predict(images)
        return LungPrediction(masks, assess_quality(masks))
