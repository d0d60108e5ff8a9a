"""Real stand-in images for datasets whose own images cannot be redistributed.

Tests of the CheXpert, MIMIC, RSNA, VinDr, PadChest and SIIM loaders read the real rows
of the real label tables and put real X-rays from ``../shared/data`` at the paths those
rows name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def place(src: Path, dst: Path) -> None:
    """Put a real stand-in image at ``dst`` (a symlink, or a copy where links fail)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
