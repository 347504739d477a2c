"""The training data stream: an endless, seeded sequence of example indices.

Each epoch visits every group once in a random order, picks one random puzzle (augmented version) of
the group and yields that puzzle's examples in a random order (spec section 5: "each epoch draws one
random version per group"). Epoch ``e`` is a pure function of ``(seed, e)``, so the stream's whole state
is ``(epoch, cursor)``: saving and resuming it is exact and cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trm.data.format import PuzzleSet


class ExampleStream:
    def __init__(self, ps: PuzzleSet, seed: int):
        self.group_indices = np.asarray(ps.group_indices, np.int64)
        self.puzzle_indices = np.asarray(ps.puzzle_indices, np.int64)
        self.seed = seed
        self.epoch, self.cursor = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        gi, pi = self.group_indices, self.puzzle_indices
        groups = rng.permutation(len(gi) - 1)
        sizes = gi[groups + 1] - gi[groups]
        puzzles = gi[groups] + (rng.random(len(groups)) * sizes).astype(np.int64)
        starts, counts = pi[puzzles], pi[puzzles + 1] - pi[puzzles]
        # Examples of the chosen puzzles, puzzle after puzzle, shuffled inside each puzzle.
        owner = np.repeat(np.arange(len(puzzles)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        within = np.lexsort((rng.random(len(owner)), owner))
        return (starts[owner] + offsets)[within]

    def take(self, k: int) -> np.ndarray:
        """The next ``k`` example indices (crossing epoch boundaries as needed)."""
        out = []
        while k > 0:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            chunk = self._order[self.cursor:self.cursor + k]
            out.append(chunk)
            self.cursor += len(chunk)
            k -= len(chunk)
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.cursor = int(state["seed"]), int(state["epoch"]), int(state["cursor"])
        self._order = self._epoch_order(self.epoch)
