"""ROAD's noisy linear imputation: fill removed pixels from their neighbours.

Rong et al. (ICML 2022) replace removed pixels by the solution of a sparse linear
system: each removed pixel equals the weighted mean of its 8 neighbours (weight 1/6 for
the 4 direct ones, 1/12 for the diagonals; neighbours outside the image are dropped),
known neighbours entering as constants, plus a little Gaussian noise. Unlike a blurred
or constant baseline, the filled region carries no shape of the removed set for the
model to pick up, so removing pixels measures their information rather than the
artefact of removal.

The system is the one of the authors' code, as vendored by pytorch-grad-cam
(``pytorch_grad_cam.metrics.road.NoisyLinearImputer``), solved exactly with
``scipy.sparse.linalg.spsolve`` on the CPU (one image at a time); noise comes from a
seeded ``torch.Generator`` instead of the global random state. An image whose every
pixel is removed has nothing to interpolate from and is filled with its own mean.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["NEIGHBOUR_WEIGHTS", "noisy_linear_impute"]

#: ``(dy, dx, weight)`` of the 8 neighbours (weights sum to 1), as in ROAD's code.
NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)


def noisy_linear_impute(
    image: Tensor,
    remove: Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace the ``remove`` pixels of ``image`` by noisy linear imputation.

    Args:
        image: ``(C, H, W)`` float.
        remove: ``(H, W)`` bool: pixels to impute.
        noise: Standard deviation of the Gaussian noise added to imputed values.
        generator: CPU generator of the noise (``None``: a fresh one seeded 0).

    Returns:
        ``(C, H, W)`` on ``image``'s device and dtype; kept pixels unchanged.
    """
    if image.ndim != 3 or remove.shape != image.shape[-2:]:
        raise ValueError(
            f"image must be (C, H, W) and remove (H, W), got {tuple(image.shape)} "
            f"and {tuple(remove.shape)}"
        )
    channels, height, width = image.shape
    flat = image.detach().reshape(channels, -1).double().cpu().numpy()
    missing = remove.detach().reshape(-1).bool().cpu().numpy()
    idx = np.flatnonzero(missing)
    m = idx.size
    if m == 0:
        return image.clone()
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    if m == missing.size:  # nothing to interpolate from
        values = np.repeat(flat.mean(axis=1, keepdims=True), m, axis=1)
    else:
        values = _solve(flat, missing, idx, height, width)
    filled = torch.from_numpy(values)
    if noise > 0:
        filled = filled + noise * torch.randn(filled.shape, generator=gen, dtype=torch.float64)
    out = image.detach().reshape(channels, -1).clone()
    out[:, torch.from_numpy(idx).to(out.device)] = filled.to(out.device, out.dtype)
    return out.reshape(image.shape)


def _solve(flat: np.ndarray, missing: np.ndarray, idx: np.ndarray, h: int, w: int) -> np.ndarray:
    """Solve ``diag_i x_i - sum_{j missing} w_ij x_j = sum_{j known} w_ij v_j``: ``(C, M)``."""
    from scipy.sparse import coo_matrix  # scipy comes with scikit-image; imported on use
    from scipy.sparse.linalg import spsolve

    m = idx.size
    var = np.full(missing.size, -1, dtype=np.int64)
    var[idx] = np.arange(m)
    y, x = np.divmod(idx, w)
    diag = np.zeros(m)
    rhs = np.zeros((m, flat.shape[0]))
    rows, cols, vals = [np.arange(m)], [np.arange(m)], []
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        yy, xx = y + dy, x + dx
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        diag[valid] += weight
        eq = np.flatnonzero(valid)
        nb = (yy * w + xx)[valid]
        known = ~missing[nb]
        rhs[eq[known]] += weight * flat[:, nb[known]].T
        rows.append(eq[~known])
        cols.append(var[nb[~known]])
        vals.append(np.full(int((~known).sum()), -weight))
    system = coo_matrix(
        (np.concatenate([diag, *vals]), (np.concatenate(rows), np.concatenate(cols))),
        shape=(m, m),
    ).tocsc()
    solution = np.asarray(spsolve(system, rhs)).reshape(m, flat.shape[0])
    return solution.T
