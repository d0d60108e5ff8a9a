"""The items that datasets return.

Every item's first field is ``image``, so that any dataset can feed SSL pretraining
with its labels ignored (``item[0]``). :class:`~cxr_curriculum.data.UnlabeledImages`
and :class:`~cxr_curriculum.data.ImagePool` return the image tensor itself.
"""

from __future__ import annotations

from typing import NamedTuple, Union

from torch import Tensor

__all__ = ["Label", "LabeledImage", "MaskedImage"]

#: An int class index, or a float multi-hot tensor ``(C,)`` for multi-label sets.
Label = Union[int, Tensor]  # noqa: UP007  (a runtime alias; ``X | Y`` needs 3.10 objects)


class LabeledImage(NamedTuple):
    """An image with its label and patient id.

    Attributes:
        image: ``float32`` tensor ``(1, H, W)`` in ``[0, 1]`` (or whatever the
            dataset's ``transform`` returns).
        label: Class index into the dataset's ``classes``; a multi-hot ``float32``
            tensor ``(C,)`` for multi-label data (NIH CSV form).
        patient_id: Patient identifier; images of one patient share it.
    """

    image: Tensor
    label: Label
    patient_id: str


class MaskedImage(NamedTuple):
    """An image with its lung mask and patient id.

    Attributes:
        image: ``float32`` tensor ``(1, H, W)`` in ``[0, 1]``.
        mask: ``uint8`` tensor ``(1, H, W)``: 0 background, 1 lung, 255 ignore.
        patient_id: Patient identifier.
    """

    image: Tensor
    mask: Tensor
    patient_id: str
