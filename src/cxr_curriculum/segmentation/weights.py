"""The bundled lung-segmentation weights, declared as data and loaded with a checksum.

Each entry of :class:`LungSegmenterWeights` names a file shipped inside the package
(``cxr_curriculum/segmentation/weights/``), its sha256, the architecture, the input
size and ``meta`` (training data, recipe, licences, measured metrics), in the manner
of torchvision's ``Weights`` enums (``torchvision/models/_api.py``). Files are read
through :mod:`importlib.resources` and checked against their sha256 before use: a
changed or missing file raises, never loads a different model silently.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_safetensors
from torch import Tensor

from cxr_curriculum._artefacts import ArtefactIntegrityError
from cxr_curriculum.segmentation.model import ModelSpec

__all__ = ["LungSegmenterWeights", "LungWeights", "WeightsChecksumError", "load_state_dict"]


class WeightsChecksumError(ArtefactIntegrityError, RuntimeError):
    """A bundled weights file whose sha256 differs from the one declared for it.

    A kind of :class:`~cxr_curriculum._artefacts.ArtefactIntegrityError`, the error every
    artefact of the package raises on a checksum mismatch (catch that one); it is also a
    ``RuntimeError``, as it always was.
    """


@dataclass(frozen=True)
class LungWeights:
    """One bundled weights file and what is known about it.

    Attributes:
        file: File name inside ``cxr_curriculum/segmentation/weights/``.
        sha256: Hex sha256 of the file's bytes.
        spec: The architecture to build before loading.
        input_size: Square side (pixels) the network sees; inputs are resized to it.
        meta: Training data, recipe, licences and measured metrics (JSON-like).
    """

    file: str
    sha256: str
    spec: ModelSpec
    input_size: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _resource(file: str) -> Path:
    """Path of a bundled weights file (through importlib.resources)."""
    root = importlib.resources.files("cxr_curriculum.segmentation") / "weights" / file
    return Path(str(root))


_REGNETX002_UNET_128_V2 = LungWeights(
    file="lungnet_regnetx002_128_v2.safetensors",
    sha256="22d807c641d6e294e0157e842b69178d5d57dcc76aa414b8b26298abab487fd6",
    spec=ModelSpec(),
    input_size=128,
    meta={
        "dtype_on_disk": "float16 (converted to float32 on load)",
        "training_data": {
            "covid-chestxray v7-lung-masks": "349 images (Cohen et al. 2020 images, V7 Labs masks)",
            "shenzhen-montgomery-tb": "72 images (Jaeger et al. 2014; Stirenko et al. 2018 masks)",
            "split": "patient_split(fractions=(0.8, 0.2), seed=0) per source",
        },
        "licences": {
            "v7_masks": "CC BY 4.0",
            "shenzhen_masks": "CC BY-NC-SA 4.0",
            "covid_images": "per image (metadata.csv 'license'), many CC BY-NC-SA / CC BY-NC-ND",
        },
        "recipe": "PYTHONPATH=src python benchmarks/train_lungseg.py --epochs 90 --size 128 "
        "(seed 0, CPU, 1 thread; last epoch exported with --export; targets resized with "
        "nearest-exact)",
        "parameters": 3_253_579,
        # benchmarks/bench_lungseg.py -> benchmarks/results/lungseg.json; validation
        # split (83 images), each at its own resolution, ignore pixels excluded.
        "metrics": {
            "val_dice_both": 0.950,
            "val_iou_both": 0.906,
            "val_dice_right": 0.955,
            "val_dice_left": 0.946,
            "val_dice_both_covid_v7": 0.948,
            "val_dice_both_shenzhen_montgomery": 0.956,
            "classical_baseline_val_dice_both": 0.697,
            "cpu_images_per_s_512": 54.2,
            "speedup_vs_pspnet_resnet101_512": 31.1,
        },
    },
)


class LungSegmenterWeights(Enum):
    """Bundled lung-segmentation weights; ``DEFAULT`` is the recommended entry."""

    REGNETX002_UNET_128_V2 = _REGNETX002_UNET_128_V2
    DEFAULT = _REGNETX002_UNET_128_V2

    @property
    def path(self) -> Path:
        """Where the file lies in the installed package."""
        return _resource(self.value.file)


def load_state_dict(weights: LungSegmenterWeights) -> dict[str, Tensor]:
    """Read a bundled weights file, verify its sha256, and return a float32 state dict.

    Args:
        weights: The entry to load.

    Returns:
        State dict of :class:`~cxr_curriculum.segmentation.model.LungNet`, float
        tensors in ``float32`` on the CPU.

    Raises:
        FileNotFoundError: The file is not in the package (a broken install).
        WeightsChecksumError: The file's sha256 differs from the declared one; the
            message names the file and both digests.
    """
    if not isinstance(weights, LungSegmenterWeights):
        raise ValueError(
            f"weights must be a LungSegmenterWeights entry, one of "
            f"{[w.name for w in LungSegmenterWeights]}, got {weights!r}"
        )
    path = weights.path
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled lung-segmentation weights {path} are missing; reinstall "
            f"cxr_curriculum (the wheel ships {weights.value.file})"
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != weights.value.sha256:
        raise WeightsChecksumError(
            f"lung-segmentation weights {path} have sha256 {digest}, expected "
            f"{weights.value.sha256}: the file was changed or corrupted; refusing to load it"
        )
    state = load_safetensors(data)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
