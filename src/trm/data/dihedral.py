"""The 8 dihedral transforms of a square grid (rotations and reflections) and their inverses.

Transform t in 0..7: t < 4 rotates by t quarter-turns counter-clockwise; t >= 4 transposes first and then
rotates by t - 4 quarter-turns. ``inverse(t)`` undoes ``t``.
"""

from __future__ import annotations

import numpy as np

NUM_TRANSFORMS = 8
_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def transform(grid: np.ndarray, t: int) -> np.ndarray:
    """Apply dihedral transform ``t`` to the last two axes of ``grid`` (works on batches)."""
    if not 0 <= t < NUM_TRANSFORMS:
        raise ValueError(f"dihedral transform must be in 0..7, got {t}")
    g = np.swapaxes(grid, -1, -2) if t >= 4 else grid
    return np.ascontiguousarray(np.rot90(g, k=t % 4, axes=(-2, -1)))


def inverse(t: int) -> int:
    """The transform that undoes ``t``."""
    return _INVERSE[t]


def inverse_transform(grid: np.ndarray, t: int) -> np.ndarray:
    return transform(grid, inverse(t))
