"""Check an installed wheel outside the source tree: imports, bundled files, offline use.

Run by ``nox -s build`` from a temporary folder with the wheel installed into a fresh
virtual environment; exits non-zero on any failure.
"""

from __future__ import annotations

import socket
from pathlib import Path

import torch


def _no_network(*args: object, **kwargs: object) -> None:
    raise OSError("network disabled by check_wheel.py")


def main() -> None:
    socket.socket.connect = _no_network  # type: ignore[method-assign]
    import cxr_curriculum
    from cxr_curriculum import Backbone, LungSegmenter
    from cxr_curriculum.data import KermanyPneumonia, bundled_sample_root

    here = Path(cxr_curriculum.__file__).resolve()
    assert "site-packages" in str(here), f"imported from the source tree: {here}"
    sample = KermanyPneumonia(bundled_sample_root(), split="test")
    images = torch.stack([sample[i].image for i in range(2)])
    masks = LungSegmenter().predict(images)
    assert masks.shape == (2, 2, *images.shape[-2:]) and masks.dtype == torch.bool
    feats = Backbone("resnet18")(torch.nn.functional.interpolate(images, size=64))
    print(
        f"wheel OK: cxr_curriculum {cxr_curriculum.__version__} from {here.parent}; "
        f"{len(sample)} sample images; lung fraction {masks.float().mean():.3f}; "
        f"features {tuple(feats.shape)}"
    )


if __name__ == "__main__":
    main()
