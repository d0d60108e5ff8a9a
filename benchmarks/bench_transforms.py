"""CPU speed of BatchedXRayAugment vs a per-sample XRayAugment loop on 64 real Kermany images."""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image

from cxr_curriculum.data._root import data_root
from cxr_curriculum.transforms import BatchedXRayAugment, XRayAugment


def main(image_size: int = 224, repeats: int = 5) -> None:
    folder = data_root() / "kermany-pneumonia" / "train" / "NORMAL"
    files = sorted(folder.glob("*.jpeg"))[:64]
    images = [
        torch.from_numpy(np.asarray(Image.open(f).convert("L"), np.float32) / 255.0)[None]
        for f in files
    ]
    batch = torch.stack(images)  # (64, 1, 224, 224)
    per_sample, batched = XRayAugment(image_size), BatchedXRayAugment(image_size)
    g = torch.Generator().manual_seed(0)

    def loop() -> None:
        torch.stack([per_sample(x, generator=g) for x in images])

    def whole() -> None:
        batched(batch, generator=g)

    times = {}
    for name, fn in (("per-sample loop", loop), ("batched", whole)):
        fn()  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        times[name] = statistics.median(runs)
        print(f"{name:>16}: {times[name] * 1e3:8.1f} ms / batch of {batch.shape[0]}")
    print(
        f"{'speed-up':>16}: {times['per-sample loop'] / times['batched']:.1f}x "
        f"(input {tuple(batch.shape)}, output {image_size} px, "
        f"{torch.get_num_threads()} threads)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 224)
