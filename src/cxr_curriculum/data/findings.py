"""One finding vocabulary across datasets, with unknown labels kept unknown.

Researchers pool NIH ChestX-ray14, CheXpert, MIMIC-CXR, VinDr-CXR and PadChest by
mapping each dataset's names onto one list (Cohen, Hashir, Brooks, Bertrand,
"On the limits of cross-domain generalization in automated X-ray prediction", MIDL
2020; TorchXRayVision, arXiv:2111.00595): NIH's ``Effusion`` is CheXpert's
``Pleural Effusion``, NIH's ``Pleural_Thickening`` is VinDr's ``Pleural thickening``,
PadChest's ``infiltrates`` is NIH's ``Infiltration``. A finding that a dataset does not
label is **unknown** (NaN) in the pooled targets, never negative: NIH never says
whether a film shows a fracture, so NIH images must not teach a model that they do
not.

A mapping sends each source name to one or more canonical names, each with a relation:

* ``"same"``: the same finding; 1 -> 1, 0 -> 0.
* ``"narrower"``: the source is a kind of the canonical finding (PadChest's
  ``laminar atelectasis`` is an ``Atelectasis``); 1 -> 1, 0 -> unknown.
* ``"broader"``: the source covers several canonical findings (VinDr's
  ``Nodule/Mass``); 0 -> 0 for each, 1 -> unknown (which one is not said).

Where several source columns reach one canonical finding, it is positive if any says
positive, else negative if any says negative, else unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Subset

__all__ = [
    "CANONICAL_FINDINGS",
    "CHEXPERT_FINDING_MAP",
    "NIH_FINDING_MAP",
    "PADCHEST_FINDING_MAP",
    "RSNA_FINDING_MAP",
    "SIIM_FINDING_MAP",
    "VINDR_FINDING_MAP",
    "FindingMap",
    "Relation",
    "finding_map_of",
    "harmonised_targets",
    "map_findings",
]

Relation = Literal["same", "narrower", "broader"]
#: Source name -> ``((canonical name, relation), ...)``.
FindingMap = Mapping[str, tuple[tuple[str, Relation], ...]]

#: The pooled vocabulary: NIH's 14 findings (CheXpert's spelling where they share
#: one), CheXpert's other observations, three VinDr-CXR findings, and "No Finding".
CANONICAL_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Pleural Effusion", "Infiltration", "Mass", "Nodule",
    "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
    "Pleural Thickening", "Hernia",
    "Enlarged Cardiomediastinum", "Lung Opacity", "Lung Lesion", "Pleural Other", "Fracture",
    "Support Devices",
    "Aortic Enlargement", "Calcification", "Interstitial Lung Disease",
    "No Finding",
)  # fmt: skip


def _same(name: str) -> tuple[tuple[str, Relation], ...]:
    return ((name, "same"),)


def _narrower(name: str) -> tuple[tuple[str, Relation], ...]:
    return ((name, "narrower"),)


#: NIH ChestX-ray14 (:data:`~cxr_curriculum.data.NIH_FINDINGS`). A nodule or a mass is
#: a lung lesion in CheXpert's sense.
NIH_FINDING_MAP: FindingMap = {
    **{n: _same(n) for n in ("Atelectasis", "Cardiomegaly", "Infiltration", "Pneumonia",
                             "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                             "Hernia")},
    "Effusion": _same("Pleural Effusion"),
    "Pleural_Thickening": _same("Pleural Thickening"),
    "Mass": (("Mass", "same"), ("Lung Lesion", "narrower")),
    "Nodule": (("Nodule", "same"), ("Lung Lesion", "narrower")),
}  # fmt: skip

#: CheXpert and MIMIC-CXR (the 14 observations of the CheXpert labeler). A negative
#: ``Lung Lesion`` rules out a nodule and a mass.
CHEXPERT_FINDING_MAP: FindingMap = {
    **{n: _same(n) for n in ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly",
                             "Lung Opacity", "Edema", "Consolidation", "Pneumonia",
                             "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                             "Fracture", "Support Devices")},
    "Lung Lesion": (("Lung Lesion", "same"), ("Nodule", "broader"), ("Mass", "broader")),
}  # fmt: skip

#: VinDr-CXR's 14 findings and "No finding". ``Other lesion`` has no counterpart. Its
#: ``Lung Opacity`` is one of several opacity classes (consolidation, infiltration, ILD
#: are marked apart), so its negative does not rule out CheXpert's broader one.
VINDR_FINDING_MAP: FindingMap = {
    **{n: _same(n) for n in ("Atelectasis", "Calcification", "Cardiomegaly", "Consolidation",
                             "Infiltration", "Pneumothorax")},
    "Lung Opacity": _narrower("Lung Opacity"),
    "Aortic enlargement": _same("Aortic Enlargement"),
    "ILD": _same("Interstitial Lung Disease"),
    "Nodule/Mass": (("Nodule", "broader"), ("Mass", "broader"), ("Lung Lesion", "narrower")),
    "Pleural effusion": _same("Pleural Effusion"),
    "Pleural thickening": _same("Pleural Thickening"),
    "Pulmonary fibrosis": _same("Fibrosis"),
    "No finding": _same("No Finding"),
}  # fmt: skip

#: PadChest labels (lower case, as in its table) that name a canonical finding or a
#: kind of one. Umbrella terms whose kinds PadChest spreads over many labels
#: (devices, fractures) are left out: a partial list would create false negatives.
PADCHEST_FINDING_MAP: FindingMap = {
    "normal": _same("No Finding"),
    "atelectasis": _same("Atelectasis"),
    **{f"{k} atelectasis": _narrower("Atelectasis")
       for k in ("laminar", "lobar", "segmental", "total", "round")},
    "cardiomegaly": _same("Cardiomegaly"),
    "consolidation": _same("Consolidation"),
    "pulmonary edema": _same("Edema"),
    "pleural effusion": _same("Pleural Effusion"),
    "loculated pleural effusion": _narrower("Pleural Effusion"),
    "loculated fissural effusion": _narrower("Pleural Effusion"),
    "emphysema": _same("Emphysema"),
    "pulmonary fibrosis": _same("Fibrosis"),
    "hiatal hernia": _same("Hernia"),
    "infiltrates": _same("Infiltration"),
    "pulmonary mass": (("Mass", "same"), ("Lung Lesion", "narrower")),
    "nodule": (("Nodule", "same"), ("Lung Lesion", "narrower")),
    "multiple nodules": (("Nodule", "narrower"), ("Lung Lesion", "narrower")),
    "pleural thickening": _same("Pleural Thickening"),
    "apical pleural thickening": _narrower("Pleural Thickening"),
    "calcified pleural thickening": _narrower("Pleural Thickening"),
    "pneumonia": _same("Pneumonia"),
    "atypical pneumonia": _narrower("Pneumonia"),
    "pneumothorax": _same("Pneumothorax"),
}  # fmt: skip

#: RSNA Pneumonia Detection: ``Target`` 1 marks "Lung Opacity" suggestive of pneumonia;
#: 0 includes films with other opacities ("No Lung Opacity / Not Normal").
RSNA_FINDING_MAP: FindingMap = {
    "Lung Opacity": (("Pneumonia", "same"), ("Lung Opacity", "narrower")),
}

#: SIIM-ACR Pneumothorax.
SIIM_FINDING_MAP: FindingMap = {"Pneumothorax": _same("Pneumothorax")}


def _check_vocabulary(vocabulary: Sequence[str]) -> list[str]:
    vocab = list(vocabulary)
    unknown = [v for v in vocab if v not in CANONICAL_FINDINGS]
    if unknown or len(set(vocab)) != len(vocab) or not vocab:
        raise ValueError(
            f"vocabulary must be distinct names from CANONICAL_FINDINGS; unknown {unknown} "
            f"(allowed: {list(CANONICAL_FINDINGS)})"
        )
    return vocab


def map_findings(
    targets: Tensor,
    names: Sequence[str],
    mapping: FindingMap,
    vocabulary: Sequence[str] = CANONICAL_FINDINGS,
) -> Tensor:
    """Map a dataset's targets onto the canonical vocabulary.

    Args:
        targets: ``(N, C)`` with 1 positive, 0 negative, NaN unknown.
        names: The ``C`` source names of the columns (a dataset's ``.classes``).
        mapping: Source name -> canonical names and relations (e.g.
            :data:`NIH_FINDING_MAP`). Columns it does not name are ignored.
        vocabulary: Canonical names to return, in this order.

    Returns:
        ``float32`` tensor ``(N, len(vocabulary))``: 1, 0, or NaN where no column of the
        source says anything (see the module docstring for the rules).

    Raises:
        ValueError: Shapes disagree, a value is not 0, 1 or NaN, or ``vocabulary``
            holds a name that is not canonical.
    """
    vocab = _check_vocabulary(vocabulary)
    targets = torch.as_tensor(targets, dtype=torch.float32)
    if targets.ndim != 2 or targets.shape[1] != len(names):
        raise ValueError(f"targets must be (N, {len(names)}), got {tuple(targets.shape)}")
    known = targets[~targets.isnan()]
    if not bool(((known == 0) | (known == 1)).all()):
        raise ValueError("targets must hold only 0, 1 or NaN (code uncertain labels first)")
    n = targets.shape[0]
    positive = torch.zeros(n, len(vocab), dtype=torch.bool)
    negative = torch.zeros(n, len(vocab), dtype=torch.bool)
    column = {name: k for k, name in enumerate(vocab)}
    for j, name in enumerate(names):
        for canonical, relation in mapping.get(name, ()):
            k = column.get(canonical)
            if k is None:
                continue
            if relation not in ("same", "narrower", "broader"):
                raise ValueError(f"mapping of {name!r}: unknown relation {relation!r}")
            if relation in ("same", "narrower"):
                positive[:, k] |= targets[:, j] == 1
            if relation in ("same", "broader"):
                negative[:, k] |= targets[:, j] == 0
    out = torch.full((n, len(vocab)), float("nan"))
    out[negative] = 0.0
    out[positive] = 1.0
    return out


def root_and_indices(dataset: Any) -> tuple[Any, list[int]]:
    """The dataset under nested ``Subset``s, and the indices into it of ``dataset``'s items."""
    if isinstance(dataset, Subset):
        root, idx = root_and_indices(dataset.dataset)
        return root, [idx[i] for i in dataset.indices]
    return dataset, list(range(len(dataset)))


def finding_map_of(dataset: Any) -> FindingMap:
    """The ``finding_map`` of a dataset (or of the dataset under nested ``Subset``s).

    Raises:
        ValueError: The dataset declares none.
    """
    root, _ = root_and_indices(dataset)
    mapping: FindingMap | None = getattr(root, "finding_map", None)
    if mapping is None:
        raise ValueError(
            f"{type(root).__name__} declares no finding_map; pass mapping=... "
            "(a dict source name -> ((canonical name, relation), ...))"
        )
    return mapping


def harmonised_targets(
    dataset: Any,
    vocabulary: Sequence[str] = CANONICAL_FINDINGS,
    mapping: FindingMap | None = None,
) -> Tensor:
    """A dataset's labels on the canonical vocabulary, without reading images.

    Multi-label datasets (with ``.targets``) map every column of ``.classes``; a binary
    dataset (two ``classes``, ``.labels`` 0/1) maps its positive class ``classes[1]``,
    so RSNA's "Lung Opacity" or NIH's folder form "Pneumonia" become one known column.

    Args:
        dataset: A loader, or a (nested) ``Subset`` of one.
        vocabulary: Canonical names to return, in this order.
        mapping: Overrides the dataset's ``finding_map``.

    Returns:
        ``float32`` tensor ``(N, len(vocabulary))`` with NaN for unknown.

    Raises:
        ValueError: No mapping, or a dataset neither multi-label nor binary.
    """
    root, indices = root_and_indices(dataset)
    mapping = finding_map_of(root) if mapping is None else mapping
    classes = list(getattr(root, "classes", []))
    targets = getattr(root, "targets", None)
    if targets is not None:
        names, values = classes, torch.as_tensor(targets, dtype=torch.float32)
    elif len(classes) == 2 and getattr(root, "labels", None) is not None:
        names = classes[1:]
        values = torch.as_tensor(root.labels, dtype=torch.float32).reshape(-1, 1)
    else:
        raise ValueError(
            f"{type(root).__name__} has no .targets and is not binary (classes {classes})"
        )
    return map_findings(values[indices], names, mapping, vocabulary)
