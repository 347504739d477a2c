"""Sparse puzzle-embedding table (spec sections 3 and 5).

One ``dim``-vector per puzzle identifier, initialised to zero, trained only by
:class:`trm.train.optim.SignSGD` on the rows used in the batch. The table is a persistent *buffer*,
not a parameter, so the main optimizer, the EMA and DDP's gradient all-reduce never see it; it is
saved in the model's ``state_dict`` like any buffer.

How gradients reach it: in training (``self.training`` and grad mode on) ``forward`` copies the
used rows into a fresh leaf tensor ``[B, dim]`` with ``requires_grad=True``, remembers ``(ids, leaf)``
and returns the leaf; after ``backward`` the sparse optimizer reads ``leaf.grad``. Forward passes
without gradients (evaluation, the extra Q-learning pass) are plain gathers and remember nothing.

Cost (no benchmark, by construction): a forward gathers B rows (B*dim reads, never a copy of the
table); an update sorts B ids (``torch.unique``), sums duplicate rows (``index_add_``), and reads and
writes only the U <= B used rows, i.e. O(B*dim + B log B), independent of ``num_ids`` (e.g. 876k x 512
fp32 = 1.8 GB for ARC). Distributed training adds one all-gather of B*(dim+1) values per rank.

Notes for the caller: keep this module outside any ``torch.compile`` region (it creates a leaf
tensor); with DDP, exclude ``weight`` from buffer broadcasting (``broadcast_buffers=False`` or
DDP's params-and-buffers-to-ignore list), otherwise DDP re-sends the whole table from rank 0 every
forward. Every rank starts from the same table (zeros) and applies the identical update, so no
broadcast is needed. Ids are not range-checked here (that would synchronise with the GPU); the
dataset loader guarantees ``0 <= id < num_ids``.
"""

from __future__ import annotations

import torch
from torch import nn


class PuzzleEmbedding(nn.Module):
    """Table ``weight`` [num_ids, dim] (fp32 buffer, zeros unless ``init_std`` > 0)."""

    weight: torch.Tensor  # registered as a buffer in __init__

    def __init__(self, num_ids: int, dim: int, init_std: float = 0.0) -> None:
        super().__init__()
        if num_ids < 1 or dim < 1:
            raise ValueError(f"PuzzleEmbedding needs num_ids >= 1 and dim >= 1, got {num_ids}, {dim}")
        self.num_ids, self.dim, self.init_std = num_ids, dim, init_std
        weight = torch.zeros(num_ids, dim, dtype=torch.float32)
        if init_std > 0:  # spec: 0; a truncated normal (at +-2 std) is offered for experiments
            nn.init.trunc_normal_(weight, std=init_std, a=-2 * init_std, b=2 * init_std)
        self.register_buffer("weight", weight, persistent=True)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (ids, leaf) awaiting the optimizer

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` [B] (any integer dtype) -> rows [B, dim] fp32."""
        ids = ids.long()
        rows = self.weight.index_select(0, ids)
        if not (self.training and torch.is_grad_enabled()):
            return rows
        leaf = rows.requires_grad_(True)  # index_select returns a fresh tensor: a leaf of its own
        self._pending.append((ids, leaf))
        return leaf

    def pending_grads(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(ids [N], grads [N, dim]) of every training forward since the last :meth:`clear`; None if none.

        Leaves that received no gradient (not part of the backward graph) are skipped.
        """
        pairs = [(ids, leaf.grad) for ids, leaf in self._pending if leaf.grad is not None]
        if not pairs:
            return None
        return torch.cat([ids for ids, _ in pairs]), torch.cat([g for _, g in pairs]).to(self.weight.dtype)

    def clear(self) -> None:
        """Forget remembered (ids, leaf) pairs (called by the sparse optimizer's ``zero_grad``)."""
        self._pending.clear()

    def extra_repr(self) -> str:
        return f"num_ids={self.num_ids}, dim={self.dim}, init_std={self.init_std}"


def sign_sgd_rows_(weight: torch.Tensor, rows: torch.Tensor, grads: torch.Tensor, lr: float, wd: float) -> None:
    """The puzzle table's update (spec section 5), in place on ``rows`` only: w_r <- w_r (1 - lr wd) -
    lr sign(g_r), ``grads`` [len(rows), dim] summed per row. Training (SignSGD) and ARC adaptation share it."""
    new = weight.index_select(0, rows).mul_(1 - lr * wd).add_(torch.sign(grads), alpha=-lr)
    weight.index_copy_(0, rows, new)
