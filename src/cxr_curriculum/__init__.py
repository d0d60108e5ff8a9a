"""cxr_curriculum: curricular self-supervised pretraining for chest X-rays.

The main objects are re-exported here and imported lazily (PEP 562), so that
``import cxr_curriculum`` stays fast and a user pays only for what they use::

    from cxr_curriculum import Backbone, Curriculum, Stage, LungSegmenter, LungAttentionScorer
    from cxr_curriculum.methods import Rotation, SimCLR

References:
    de Andrés Tamé, Sirotkin, Carballeira, Escudero-Viñolo. "Self-supervised curricular
    deep learning for chest X-ray image classification", arXiv:2301.10687.
    Sirotkin, Carballeira, Escudero-Viñolo. "A study on the distribution of social biases
    in self-supervised learning visual models", arXiv:2112.12086.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cxr_curriculum._version import __version__

if TYPE_CHECKING:
    from cxr_curriculum.attention import LungAttentionScorer
    from cxr_curriculum.backbones import Backbone
    from cxr_curriculum.curriculum import Curriculum, Stage
    from cxr_curriculum.methods import SSLMethod
    from cxr_curriculum.segmentation import LungSegmenter

__all__ = [
    "Backbone",
    "Curriculum",
    "LungAttentionScorer",
    "LungSegmenter",
    "SSLMethod",
    "Stage",
    "__version__",
]

_LAZY = {
    "Backbone": "cxr_curriculum.backbones",
    "Curriculum": "cxr_curriculum.curriculum",
    "Stage": "cxr_curriculum.curriculum",
    "SSLMethod": "cxr_curriculum.methods",
    "LungSegmenter": "cxr_curriculum.segmentation",
    "LungAttentionScorer": "cxr_curriculum.attention",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cxr_curriculum' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
