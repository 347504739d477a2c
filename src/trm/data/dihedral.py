"""The 8 dihedral transforms of a square grid (rotations and reflections) and their inverses.

Transform t in 0..7, numbered as the official HRM/TRM builders number them (so that identifiers and
datasets are interchangeable): 0 identity, 1-3 rotations by t quarter-turns counter-clockwise,
4 left-right flip, 5 up-down flip, 6 transpose, 7 anti-transpose. ``inverse(t)`` undoes ``t``.

trm datasets written before 2026-12-02 numbered the reflections differently (t >= 4: transpose, then
t - 4 quarter-turns); ``LEGACY_TO_OFFICIAL`` maps those numbers.
"""

from __future__ import annotations

import numpy as np

NUM_TRANSFORMS = 8
_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)
LEGACY_TO_OFFICIAL = (0, 1, 2, 3, 6, 5, 7, 4)


def transform(grid: np.ndarray, t: int) -> np.ndarray:
    """Apply dihedral transform ``t`` to the last two axes of ``grid`` (works on batches)."""
    if not 0 <= t < NUM_TRANSFORMS:
        raise ValueError(f"dihedral transform must be in 0..7, got {t}")
    if t < 4:
        g = np.rot90(grid, k=t, axes=(-2, -1))
    elif t == 4:
        g = np.flip(grid, axis=-1)
    elif t == 5:
        g = np.flip(grid, axis=-2)
    elif t == 6:
        g = np.swapaxes(grid, -1, -2)
    else:
        g = np.flip(np.rot90(grid, k=1, axes=(-2, -1)), axis=-1)
    return np.ascontiguousarray(g)


def inverse(t: int) -> int:
    """The transform that undoes ``t``."""
    return _INVERSE[t]


def inverse_transform(grid: np.ndarray, t: int) -> np.ndarray:
    return transform(grid, inverse(t))
