"""Optimizers, learning-rate schedule and EMA (spec section 5).

- :class:`AdamATan2` for the network (the public code's choice) or ``torch.optim.AdamW`` (the paper's
  text), both built by :func:`build_optimizer`.
- :class:`SignSGD` for the sparse puzzle-embedding table(s) (:class:`trm.model.puzzle_emb.PuzzleEmbedding`).
- :func:`lr_at`: linear warmup, then constant / cosine / linear decay. The caller sets
  ``group["lr"] = lr_at(...)`` on every optimizer's ``param_groups`` before each step.
- :class:`EMA` of the trained weights, used for evaluation and export.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from trm.errors import CheckpointError, ConfigError
from trm.model.puzzle_emb import PuzzleEmbedding, sign_sgd_rows_


# ---------------------------------------------------------------------------------------------------
# AdamATan2


class AdamATan2(torch.optim.Optimizer):
    """Adam with the update atan2(m, sqrt(v)) instead of m / (sqrt(v) + eps): scale-invariant, no epsilon.

    Per parameter and step t (1-based), with g the gradient:
        p <- p * (1 - lr * wd)                       (decoupled weight decay)
        m <- b1 * m + (1 - b1) * g
        v <- b2 * v + (1 - b2) * g^2
        p <- p - (lr / bc1) * atan2(m, sqrt(v / bc2)),   bc1 = 1 - b1^t,  bc2 = 1 - b2^t
    ``lr`` is read from ``param_groups[i]["lr"]`` at every step (set it per step from the schedule).
    The step count is a Python int in each parameter's state, so ``state_dict`` round-trips exactly.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
    ) -> None:
        _check_hparams(lr, weight_decay, betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        b1, b2 = group["betas"]
        params, grads, ms, vs, bc1s, bc2s = [], [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AdamATan2 does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            t = state["step"]
            params.append(p)
            grads.append(p.grad)
            ms.append(state["exp_avg"])
            vs.append(state["exp_avg_sq"])
            bc1s.append(1 - b1**t)
            bc2s.append(1 - b2**t)
        if not params:
            return
        if wd != 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_lerp_(ms, grads, 1 - b1)  # m + (1-b1)(g - m) = b1 m + (1-b1) g
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
        denom = torch._foreach_div(vs, bc2s)
        torch._foreach_sqrt_(denom)
        for m, d in zip(ms, denom):  # no _foreach_atan2 in torch; one kernel per tensor, in place
            torch.atan2(m, d, out=d)
        torch._foreach_mul_(denom, [-lr / bc1 for bc1 in bc1s])
        torch._foreach_add_(params, denom)


def _check_hparams(lr: float, weight_decay: float, betas: tuple[float, float]) -> None:
    if not lr >= 0:
        raise ConfigError(f"learning rate must be >= 0, got {lr}")
    if not weight_decay >= 0:
        raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ConfigError(f"betas must be two numbers in [0, 1), got {betas}")


def build_optimizer(
    name: str,
    params: Iterable[torch.Tensor] | Iterable[dict],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
) -> torch.optim.Optimizer:
    """The network's optimizer: ``"adam_atan2"`` (public code) or ``"adamw"`` (paper text, eps 1e-8).

    Both use decoupled weight decay ``p *= 1 - lr * wd``.
    """
    _check_hparams(lr, weight_decay, betas)
    if name == "adam_atan2":
        return AdamATan2(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; choose 'adam_atan2' or 'adamw'")


# ---------------------------------------------------------------------------------------------------
# Learning-rate schedule

SCHEDULES = ("constant", "cosine", "linear")


def lr_at(
    step: int,
    base_lr: float,
    warmup_steps: int,
    total_steps: int,
    min_ratio: float = 1.0,
    schedule: str = "cosine",
) -> float:
    """Learning rate for optimizer step ``step``.

    Warmup: ``base_lr * step / warmup_steps`` for ``step < warmup_steps`` (0 at step 0; the public
    code counts steps from 1, so its first update uses ``base_lr / warmup_steps``: pass ``step + 1``
    for that). Then, with progress q = (step - warmup) / (total - warmup) clipped to [0, 1]:
      - ``"cosine"``:   base_lr * (min_ratio + (1 - min_ratio) * (1 + cos(pi q)) / 2)
      - ``"linear"``:   base_lr * (1 - (1 - min_ratio) * q)
      - ``"constant"``: base_lr (``min_ratio`` ignored)
    ``min_ratio = 1.0`` makes cosine and linear constant: the public configuration (warmup 2000, then
    constant). A real decay ends at ``base_lr * min_ratio`` at ``step = total_steps``.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")
    if warmup_steps < 0 or total_steps < 0 or not 0 <= min_ratio <= 1:
        raise ConfigError(
            f"lr schedule needs warmup_steps >= 0, total_steps >= 0, 0 <= min_ratio <= 1; "
            f"got {warmup_steps}, {total_steps}, {min_ratio}"
        )
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if schedule == "constant":
        return base_lr
    q = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    if schedule == "cosine":
        return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * q)))
    return base_lr * (1 - (1 - min_ratio) * q)


def set_lr(optimizer: torch.optim.Optimizer | "SignSGD", lr: float) -> None:
    """Set ``lr`` on every param group (works for torch optimizers and :class:`SignSGD`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---------------------------------------------------------------------------------------------------
# EMA

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


def _clean_name(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def _trained_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return {_clean_name(n): p for n, p in model.named_parameters() if p.requires_grad}


class EMA:
    """Exponential moving average of the trained weights (every parameter with ``requires_grad``).

    After each optimizer step: ema <- r * ema + (1 - r) * p with r = ``rate`` (0.999, the paper), or,
    with ``warmup=True``, r = min(rate, (1 + t) / (10 + t)) where t is the number of earlier updates
    (so the first update uses 0.1). The shadow copy is fp32 on the parameters' device.

    Buffers are not averaged and are used live: in particular the puzzle-embedding table (a buffer
    trained by :class:`SignSGD`) keeps its current values when evaluating with EMA weights, as in the
    public code. Names are matched with DDP / torch.compile wrapper prefixes removed, so the same EMA
    works on the wrapped and the bare model. Create the EMA after moving the model to its device.
    """

    def __init__(self, model: nn.Module, rate: float = 0.999, warmup: bool = False) -> None:
        if not 0 <= rate <= 1:
            raise ConfigError(f"EMA rate must be in [0, 1], got {rate}")
        self.rate, self.warmup, self.num_updates = rate, warmup, 0
        self.shadow: dict[str, torch.Tensor] = {
            n: p.detach().to(torch.float32, copy=True) for n, p in _trained_params(model).items()
        }

    def current_rate(self) -> float:
        """The rate r the next :meth:`update` will use."""
        if not self.warmup:
            return self.rate
        t = self.num_updates
        return min(self.rate, (1 + t) / (10 + t))

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        params = _trained_params(model)
        if params.keys() != self.shadow.keys():
            missing = sorted(self.shadow.keys() ^ params.keys())
            raise CheckpointError(f"EMA and model parameters differ: {missing[:5]}")
        names = list(self.shadow)
        return [self.shadow[n] for n in names], [params[n] for n in names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        shadow, params = self._pairs(model)
        weight = 1 - self.current_rate()
        params = [p.detach().float() for p in params]  # no copy for fp32 parameters
        torch._foreach_lerp_(shadow, params, weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's trained parameters with the EMA weights (cast to their dtype)."""
        shadow, params = self._pairs(model)
        for s, p in zip(shadow, params):
            p.copy_(s)

    @contextlib.contextmanager
    def swap(self, model: nn.Module) -> Iterator[nn.Module]:
        """Context: the model holds the EMA weights inside, its own weights (bit-exact) after."""
        _, params = self._pairs(model)
        backup = [p.detach().clone() for p in params]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)

    def state_dict(self) -> dict:
        return {
            "rate": self.rate,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {n: t.clone() for n, t in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        shadow = state["shadow"]
        if shadow.keys() != self.shadow.keys():
            diff = sorted(shadow.keys() ^ self.shadow.keys())
            raise CheckpointError(f"EMA state does not match the model's parameters: {diff[:5]}")
        for n, t in shadow.items():
            if t.shape != self.shadow[n].shape:
                raise CheckpointError(
                    f"EMA state for {n!r} has shape {tuple(t.shape)}, expected {tuple(self.shadow[n].shape)}"
                )
            self.shadow[n].copy_(t)
        self.rate, self.warmup, self.num_updates = state["rate"], state["warmup"], state["num_updates"]


# ---------------------------------------------------------------------------------------------------
# Sign-SGD for the puzzle-embedding table


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_gather_rows(ids: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate (ids, grads) of every rank (ranks may hold different numbers of rows, even 0)."""
    world = dist.get_world_size()
    count = torch.tensor([ids.numel()], dtype=torch.int64, device=ids.device)
    counts = [torch.empty_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    n = max(sizes)
    if n == 0:
        return ids, grads
    pad = n - ids.numel()
    ids_p = torch.cat([ids, ids.new_zeros(pad)])
    grads_p = torch.cat([grads, grads.new_zeros(pad, grads.shape[1])])
    all_ids = [torch.empty_like(ids_p) for _ in range(world)]
    all_grads = [torch.empty_like(grads_p) for _ in range(world)]
    dist.all_gather(all_ids, ids_p)
    dist.all_gather(all_grads, grads_p)
    ids = torch.cat([t[:k] for t, k in zip(all_ids, sizes)])
    grads = torch.cat([t[:k] for t, k in zip(all_grads, sizes)])
    return ids, grads


class SignSGD:
    """Sparse sign-SGD with decoupled decay for :class:`PuzzleEmbedding` tables (spec section 5).

    For every row r used in the batch (on any rank): w_r <- w_r * (1 - lr * wd) - lr * sign(sum of the
    gradients of r). Rows used several times are summed first (``index_add_``), so the update does not
    depend on the batch size or on how the batch is split across ranks; unused rows are untouched
    (no decay). With ``torch.distributed`` initialised and world size > 1, the (ids, grads) pairs are
    all-gathered first, so every rank applies the same update (``step`` is then a collective: every
    rank must call it). ``param_groups[0]["lr"]`` is set per step like the main optimizer's.
    Stateless apart from lr and weight decay. Cost: see :mod:`trm.model.puzzle_emb`.
    """

    def __init__(
        self,
        embeddings: PuzzleEmbedding | Iterable[PuzzleEmbedding],
        lr: float,
        weight_decay: float = 0.0,
        distributed: bool | None = None,
    ) -> None:
        _check_hparams(lr, weight_decay, (0.0, 0.0))
        self.embeddings = [embeddings] if isinstance(embeddings, PuzzleEmbedding) else list(embeddings)
        if not all(isinstance(e, PuzzleEmbedding) for e in self.embeddings):
            raise TypeError("SignSGD takes PuzzleEmbedding modules")
        self.param_groups = [{"lr": lr, "weight_decay": weight_decay}]
        self.distributed = distributed  # None: decide at each step from torch.distributed

    @torch.no_grad()
    def step(self) -> None:
        lr, wd = self.param_groups[0]["lr"], self.param_groups[0]["weight_decay"]
        sync = _distributed() if self.distributed is None else self.distributed
        for emb in self.embeddings:
            weight = emb.weight
            pending = emb.pending_grads()
            if pending is None:
                ids = torch.empty(0, dtype=torch.int64, device=weight.device)
                grads = weight.new_empty(0, weight.shape[1])
            else:
                ids, grads = pending
            if sync:
                ids, grads = _all_gather_rows(ids, grads)
            if ids.numel() == 0:
                continue
            rows, inverse = torch.unique(ids, return_inverse=True)
            summed = grads.new_zeros(rows.numel(), grads.shape[1]).index_add_(0, inverse, grads)
            sign_sgd_rows_(weight, rows, summed, lr, wd)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the rows and gradients remembered by the embeddings' forward passes."""
        for emb in self.embeddings:
            emb.clear()

    def state_dict(self) -> dict:
        return {"param_groups": [dict(g) for g in self.param_groups]}

    def load_state_dict(self, state: dict) -> None:
        groups = state["param_groups"]
        if len(groups) != len(self.param_groups):
            raise CheckpointError("SignSGD state has a different number of param groups")
        self.param_groups = [dict(g) for g in groups]
