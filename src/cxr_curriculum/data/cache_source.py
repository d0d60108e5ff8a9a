"""What :class:`~cxr_curriculum.data.DecodedCache` takes from the dataset it wraps.

A cache stands in for its dataset wherever the dataset would go: splits
(:func:`~cxr_curriculum.data.patient_split`, :func:`~cxr_curriculum.data.label_fraction_subset`),
the evaluation protocols (``fine_tune``, ``linear_probe``, ``knn_evaluate``, which
detect multi-label data from a 2-D ``.targets``), label pooling
(:func:`~cxr_curriculum.data.harmonised_targets`,
:class:`~cxr_curriculum.data.FindingsPool`) and the curriculum's data fingerprint. These
read fields, never images, so the cache copies them from the dataset under any nested
``Subset``s:

* per item: ``files``, ``labels``, ``patient_ids``, ``targets``
  (``(N, C)`` multi-label targets, indexed like the items), ``mask_files`` and
  ``lung_mask_files`` (a task's own lung masks, None per image without one);
* per dataset: ``classes``, ``finding_map`` and ``window``.

A field the dataset does not have (or has as None) is None on the cache.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_cacheable", "dataset_field", "item_field"]


def check_cacheable(base: Any) -> None:
    """Refuse datasets whose items the cache cannot rebuild from a decoded image.

    Raises:
        TypeError: Not a dataset of this package, or one that overrides
            ``__getitem__`` without ``item_from``.
    """
    from cxr_curriculum.data.base import CXRDataset
    from cxr_curriculum.data.unlabeled import ImageFiles

    name = type(base).__name__
    if not isinstance(base, CXRDataset | ImageFiles):
        raise TypeError(
            f"DecodedCache caches the datasets of cxr_curriculum.data (CXRDataset, "
            f"UnlabeledImages, ImagePool, or Subsets of them); got {name}"
        )
    for root in (CXRDataset, ImageFiles):
        if isinstance(base, root):
            own_getitem = type(base).__getitem__ is not root.__getitem__
            own_item_from = type(base).item_from is not root.item_from
            if own_getitem and not own_item_from:
                raise TypeError(
                    f"{name} overrides __getitem__ but not item_from, so DecodedCache "
                    "cannot serve the same items from decoded images; override item_from"
                )


def item_field(base: Any, indices: list[int], name: str) -> Any:
    """``base.<name>`` at ``indices``: a tensor stays a tensor (rows), else a list.

    None when ``base`` has no such field or it is None.
    """
    value = getattr(base, name, None)
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value[torch.as_tensor(indices, dtype=torch.long)].clone()
    return [value[i] for i in indices]


def dataset_field(base: Any, name: str) -> Any:
    """``base.<name>`` (a list copy for ``classes``); None when it has none."""
    value = getattr(base, name, None)
    if value is not None and name == "classes":
        return list(value)
    return value
