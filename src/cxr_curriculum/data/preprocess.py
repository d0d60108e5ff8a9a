"""The build step of :class:`~cxr_curriculum.data.DecodedCache`: decode, resize, quantise.

Each image is decoded (:func:`~cxr_curriculum.data.decode_image`), checked against
:data:`~cxr_curriculum.data.MIN_IMAGE_SIDE`, shrunk so that its longer side is at most
``long_side`` (aspect kept) and quantised to ``uint8`` (sources of 8 bits or fewer) or
``uint16`` (deeper ones), in this process or in a pool of worker processes (one torch
thread each). Masks are resized with nearest-neighbour so that 0, 1 and 255 survive.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Generator

import numpy as np
import torch
import torch.nn.functional as F

from cxr_curriculum.data.io import MIN_IMAGE_SIDE, check_size, decode_image, read_mask
from cxr_curriculum.data.windowing import Window

__all__ = ["DecodeTask", "Decoded", "decode_all", "decode_task", "resize_long_side"]

#: ``(slot, image path, mask path or None, window, long_side, mask ignore value)``.
DecodeTask = tuple[int, str, str | None, Window, int, int | None]

#: ``(slot, stored uint8/uint16 (h, w), mask uint8 (h, w) or None, source bits,
#: source (H, W) as decoded)``.
Decoded = tuple[int, np.ndarray, np.ndarray | None, int, tuple[int, int]]


def resize_long_side(image: np.ndarray, long_side: int, *, mask: bool = False) -> np.ndarray:
    """Shrink ``(H, W)`` so that its longer side is ``long_side`` (aspect kept).

    Images already that small are returned unchanged. Images are resized bilinearly
    with antialiasing and clipped to ``[0, 1]`` (as the library's ``Resize``); masks
    with ``nearest-exact`` so that their values (0, 1, 255) are kept.
    """
    h, w = image.shape
    if max(h, w) <= long_side:
        return image
    scale = long_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    if mask:
        return F.interpolate(x.float(), size=size, mode="nearest-exact")[0, 0].to(x.dtype).numpy()
    out = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].clamp_(0.0, 1.0).numpy()


def decode_task(task: DecodeTask) -> Decoded:
    """Decode, size-check, resize and quantise one image (runs in worker processes)."""
    slot, path, mask_path, window, long_side, ignore_value = task
    decoded = decode_image(path, window=window)
    height, width = decoded.array.shape
    check_size(path, height, width, MIN_IMAGE_SIDE)
    small = resize_long_side(decoded.array, long_side)
    if decoded.bits <= 8:
        stored = np.rint(small * 255.0).astype(np.uint8)
    else:
        stored = np.rint(small * 65535.0).astype(np.uint16)
    mask = None
    if mask_path is not None:
        full = read_mask(mask_path, ignore_value=ignore_value, size=(height, width))[0].numpy()
        mask = resize_long_side(full, long_side, mask=True)
    return slot, stored, mask, decoded.bits, (height, width)


def decode_all(
    tasks: list[DecodeTask], num_workers: int, context: str | None = None
) -> Generator[Decoded, None, None]:
    """Decoded tasks in order; at most ``8 * num_workers`` images in memory at once."""
    if num_workers == 0:
        yield from map(decode_task, tasks)
        return
    ctx = multiprocessing.get_context(context)
    window = 8 * num_workers
    with ctx.Pool(num_workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for start in range(0, len(tasks), window):
            yield from pool.imap(decode_task, tasks[start : start + window])
