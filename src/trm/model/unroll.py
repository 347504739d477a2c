"""The supervision unroll: up to N_sup steps on a batch whose finished rows leave it, and the one
halting rule. Evaluation, solving (rollouts included) and ARC test-time adaptation run their steps
through :class:`Unroll`; the training engine keeps its own carry and refill (spec section 5) but asks
:func:`wants_halt` too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from trm.model.recursive import RecursiveReasoner, StepOutput

Perturb = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


def wants_halt(out: StepOutput, rule: str, threshold: float = 0.5) -> torch.Tensor:
    """Per row, whether the halting head says stop (spec section 4): ``bce`` (TRM): sigmoid(q_halt) >
    ``threshold``, compared in logit space (q_halt > 0 at 0.5); ``qlearn`` (HRM ACT): q_halt > q_continue."""
    if rule == "qlearn":
        return out.q_halt > out.q_continue
    if not 0.0 < threshold < 1.0:
        return out.q_halt > (-math.inf if threshold <= 0 else math.inf)
    return out.q_halt > math.log(threshold / (1.0 - threshold))


class Unroll:
    """Supervision steps of ``model`` on ``inputs`` [B, S] / ``puzzle_ids`` [B] from the initial (y, z).

    ``step()`` runs one supervision step on the rows still active and returns its :class:`StepOutput`
    (rows in the order of ``active``); ``drop(done)`` removes the finished rows, so they stop costing
    compute. ``active`` holds the batch positions of the rows still running.
    """

    def __init__(self, model: RecursiveReasoner, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> None:
        self.model, self.inputs, self.puzzle_ids = model, inputs, puzzle_ids
        self.y, self.z = model.initial_state(len(inputs), inputs.device)
        self.active = torch.arange(len(inputs), device=inputs.device)
        self.k = 0                                        # supervision steps taken

    def step(self, perturb: Perturb | None = None) -> StepOutput:
        """One supervision step; ``perturb(y, z, active, k)`` may change the carry first (test-time noise)."""
        self.k += 1
        if perturb is not None:
            self.y, self.z = perturb(self.y, self.z, self.active, self.k)
        out = self.model(self.inputs[self.active], self.puzzle_ids[self.active], self.y, self.z)
        self.y, self.z = out.y, out.z
        return out

    def halts(self, out: StepOutput, threshold: float = 0.5) -> torch.Tensor:
        return wants_halt(out, self.model.cfg.halting, threshold)

    def drop(self, done: np.ndarray | torch.Tensor) -> None:
        """Remove the rows (positions in ``active``) where ``done`` is true."""
        keep = ~torch.as_tensor(done, device=self.active.device)
        self.active, self.y, self.z = self.active[keep], self.y[keep], self.z[keep]

    @property
    def finished(self) -> bool:
        return len(self.active) == 0
