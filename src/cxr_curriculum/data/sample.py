"""The small Kermany chest X-ray sample shipped inside the package.

48 CC BY 4.0 images (Kermany et al., Cell 2018; Mendeley Data
doi:10.17632/rscbjbr9sj.2) in the published ``train|test/NORMAL|PNEUMONIA`` layout,
so that examples, doctests and the demo run with no download. Attribution:
``cxr_curriculum/data/sample/ATTRIBUTION.md``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["bundled_sample_root"]


def bundled_sample_root() -> Path:
    """Folder of the bundled Kermany sample, usable as ``KermanyPneumonia(root)``.

    Returns:
        Path to ``.../cxr_curriculum/data/sample`` holding ``train/`` (16 NORMAL +
        16 PNEUMONIA) and ``test/`` (8 + 8), patients disjoint between the two.

    Raises:
        FileNotFoundError: The package is installed without its data files (e.g. from
            a zip that is not extracted).

    Example:
        >>> from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root
        >>> KermanyPneumonia(bundled_sample_root(), split="test").class_counts()
        {'NORMAL': 8, 'PNEUMONIA': 8}
    """
    root = resources.files("cxr_curriculum.data") / "sample"
    path = Path(str(root))
    if not (path / "train").is_dir():
        raise FileNotFoundError(
            f"bundled sample not found at {path}; reinstall cxr_curriculum with its package data"
        )
    return path
