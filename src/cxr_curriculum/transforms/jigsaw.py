"""Jigsaw pretext task (Noroozi & Favaro, ECCV 2016, "Unsupervised learning of visual
representations by solving jigsaw puzzles")."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch

from ._checks import check_image

__all__ = ["JigsawPretext", "maximal_hamming_permutations"]

_ENUMERATE_LIMIT = 5_040  # 7!: enumerate every permutation of up to 7 items
_CANDIDATES = 10_000  # seeded random candidate pool beyond (9! = 362,880 is slow to scan)


@functools.lru_cache(maxsize=8)
def _permutations_cached(n_items: int, n_permutations: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if math.factorial(n_items) <= _ENUMERATE_LIMIT:
        pool = torch.tensor(list(itertools.permutations(range(n_items))), dtype=torch.int16)
    else:
        keys = torch.rand(_CANDIDATES, n_items, generator=g)
        pool = torch.unique(keys.argsort(dim=1).to(torch.int16), dim=0)
    # The greedy scan runs in numpy: single-threaded, it avoids torch's thread-pool
    # overhead on these small arrays. All randomness stays in the torch generator.
    perms = pool.numpy()
    first = int(torch.randint(0, perms.shape[0], (1,), generator=g).item())
    chosen = [first]
    min_dist = (perms != perms[first]).sum(axis=1)
    for _ in range(n_permutations - 1):
        ties = np.flatnonzero(min_dist == min_dist.max())
        pick = int(ties[int(torch.randint(0, ties.size, (1,), generator=g).item())])
        chosen.append(pick)
        np.minimum(min_dist, (perms != perms[pick]).sum(axis=1), out=min_dist)
    return pool[chosen].long()


def maximal_hamming_permutations(n_items: int, n_permutations: int, seed: int = 0) -> torch.Tensor:
    """A fixed set of permutations far apart in Hamming distance, chosen greedily.

    Starting from a random permutation, each step adds the candidate whose smallest
    Hamming distance to the permutations chosen so far is largest (ties broken at
    random), a farthest-point variant of Noroozi & Favaro's Algorithm 1 (which
    maximises the average distance); it guarantees a large minimum distance (6 of 9
    for 100 permutations of a 3x3 grid). All ``n_items!`` permutations are candidates
    up to ``n_items = 7``; beyond, a seeded pool of 10,000 random ones (scanning all
    9! = 362,880 costs seconds and gave the same minimum distance). Randomness comes
    from a torch generator seeded by ``seed``, so a seed always gives the same set.

    Returns:
        ``(n_permutations, n_items)`` long tensor; row ``i`` is permutation ``i``.
    """
    if n_items < 2:
        raise ValueError(f"n_items must be >= 2, got {n_items}")
    n_max = min(math.factorial(n_items), _CANDIDATES // 2)
    if not 1 <= n_permutations <= n_max:
        raise ValueError(f"n_permutations must be in [1, {n_max}] for {n_items} items")
    return _permutations_cached(n_items, n_permutations, seed).clone()


class JigsawPretext:
    """Cut an image into ``grid x grid`` tiles and shuffle them by one of a fixed set of
    permutations; the target is the permutation's index.

    Each cell of the grid gives one square tile of side ``t = floor(tile_fraction *
    min(cell height, cell width))`` at a random offset inside its cell (the jitter
    that stops the network matching edges). Output position ``i`` holds original tile
    ``permutations[index, i]`` (tiles numbered row-major), so
    ``ordered[permutations[index]] = tiles`` puts them back in order.

    Args:
        grid: Tiles per side (Noroozi & Favaro: 3).
        n_permutations: Size of the permutation set (the number of classes; paper: 100
            to 1000).
        seed: Seed of the permutation set.
        tile_fraction: Tile side over cell side, in ``(0, 1]`` (paper: 64 / 75).

    Example:
        >>> jig = JigsawPretext(grid=3, n_permutations=10)
        >>> tiles, index = jig(torch.rand(1, 64, 64), generator=torch.Generator().manual_seed(0))
        >>> tiles.shape, 0 <= index < 10
        (torch.Size([9, 1, 17, 17]), True)
    """

    def __init__(
        self, grid: int = 3, n_permutations: int = 100, seed: int = 0, tile_fraction: float = 0.85
    ) -> None:
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
            raise ValueError(f"grid must be an int >= 2, got {grid!r}")
        if not 0.0 < tile_fraction <= 1.0:
            raise ValueError(f"tile_fraction must be in (0, 1], got {tile_fraction!r}")
        self.grid = grid
        self.seed = seed
        self.tile_fraction = float(tile_fraction)
        self.permutations = maximal_hamming_permutations(grid * grid, n_permutations, seed)

    @property
    def n_permutations(self) -> int:
        """Number of permutations (classes)."""
        return int(self.permutations.shape[0])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(grid={self.grid}, n_permutations={self.n_permutations}, "
            f"seed={self.seed}, tile_fraction={self.tile_fraction})"
        )

    def tile_size(self, height: int, width: int) -> int:
        """Side of the square tiles cut from a ``(height, width)`` image."""
        return int(self.tile_fraction * min(height // self.grid, width // self.grid))

    def __call__(
        self, image: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, int]:
        """Return ``(tiles (grid**2, 1, t, t), permutation index)``."""
        check_image(image)
        h, w = image.shape[-2:]
        ch, cw = h // self.grid, w // self.grid
        t = self.tile_size(h, w)
        if t < 1:
            raise ValueError(f"image {h}x{w} is too small for a {self.grid}x{self.grid} jigsaw")
        n = self.grid * self.grid
        u = torch.rand(n, 2, generator=generator)
        dy = torch.floor(u[:, 0] * (ch - t + 1)).long().tolist()
        dx = torch.floor(u[:, 1] * (cw - t + 1)).long().tolist()
        tiles = []
        for cell in range(n):
            r, c = divmod(cell, self.grid)
            y, x = r * ch + dy[cell], c * cw + dx[cell]
            tiles.append(image[:, y : y + t, x : x + t])
        index = int(torch.randint(0, self.n_permutations, (1,), generator=generator).item())
        stacked = torch.stack(tiles)
        return stacked[self.permutations[index]].contiguous(), index
