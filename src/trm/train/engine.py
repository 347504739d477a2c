"""The deep-supervision engine (spec section 5): persistent slots, refill, halting, one optimizer step
per supervision step; and the evaluator that runs N_sup steps and scores every step.

The engine knows nothing of Sudoku, Maze or ARC: it sees token arrays, labels and puzzle identifiers.

Distributed runs keep one *global* view of the slots: every rank holds the same data stream, the
halted masks are all-gathered, and the refill is assigned in global slot order, so N ranks train
exactly like one process on the same global batch (each rank computes its own slice). The network's
gradients are averaged by DistributedDataParallel; the puzzle table is a buffer that DDP ignores, and
:class:`SignSGD` all-gathers its rows itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.distributed as dist

from trm.config import Config, ModelConfig
from trm.train.sampler import ExampleStream
from trm.errors import NumericalError
from trm.model.recursive import RecursiveReasoner
from trm.runtime import world
from trm.model.losses import IGNORE_INDEX, halting_bce, q_learning_target, sequence_loss, to_labels
from trm.model.unroll import wants_halt
from trm.train.optim import EMA, SignSGD, build_optimizer, lr_at, set_lr

if TYPE_CHECKING:
    from trm.data.format import PuzzleSet


def has_unused_params(m: ModelConfig) -> bool:
    """Whether some parameter never gets a gradient (DDP must then look for unused ones at every step):
    with n = 0 latent updates (``latents="yz"``) x never reaches y; a separate f_y never runs with
    ``latents="z"``, a separate f_z never under direct prediction."""
    if m.recursion == "recursive" and m.latents == "yz" and m.n == 0:
        return True
    return m.separate_nets and (m.latents == "z" or m.recursion == "direct")


@dataclass
class Carry:
    """The persistent batch: one slot per example in flight (this rank's share)."""

    y: torch.Tensor
    z: torch.Tensor
    steps: torch.Tensor        # [b] int32 supervision steps taken by the slot's current example
    halted: torch.Tensor       # [b] bool: the slot takes a fresh example at the next step
    inputs: torch.Tensor       # [b, S] int32
    labels: torch.Tensor       # [b, S] int64
    puzzle_ids: torch.Tensor   # [b] int32
    min_steps: torch.Tensor    # [b] int32 exploration floor (per_slot exploration)

    def state_dict(self) -> dict:
        return {k: v.cpu() for k, v in self.__dict__.items()}


class Engine:
    """Owns the model, its optimizers, the EMA and the carry; ``train_step`` = one supervision step."""

    def __init__(self, cfg: Config, model: RecursiveReasoner, train_set: PuzzleSet, ignore_label_id: int | None,
                 device: torch.device, total_steps: int):
        self.cfg, self.model, self.device = cfg, model, device
        self.rank, self.world = world()
        t = cfg.train
        if t.global_batch_size % self.world:
            from trm.errors import ConfigError
            raise ConfigError(f"train.global_batch_size {t.global_batch_size} is not divisible by the "
                              f"number of processes {self.world}")
        self.global_batch = t.global_batch_size
        self.local_batch = t.global_batch_size // self.world
        self.total_steps = total_steps
        self.step = 0

        self.inputs_np = np.asarray(train_set.inputs)
        self.labels_np = train_set.labels          # uint8 (or memory-mapped); int64 only for the rows in use
        self.ignore_label_id = ignore_label_id
        self.example_puzzle = train_set.example_puzzle_ids()
        self.stream = ExampleStream(train_set, seed=t.seed)
        self.gen = torch.Generator().manual_seed(t.seed + 1)   # exploration draws (global, on CPU)

        betas = cast("tuple[float, float]", tuple(t.betas))    # build_optimizer checks the length
        self.optimizer = build_optimizer(t.optimizer, [p for p in model.parameters() if p.requires_grad],
                                         lr=t.lr, weight_decay=t.weight_decay, betas=betas)
        self.sparse_opt = (SignSGD(model.puzzle_emb, lr=t.puzzle_emb_lr, weight_decay=t.puzzle_emb_weight_decay)
                           if model.puzzle_emb is not None else None)
        self.ema = EMA(model, rate=t.ema_rate, warmup=t.ema_warmup) if t.ema else None
        if t.compile:   # the networks only (in place: same module, same state_dict keys); the puzzle
            for net in {model.f_z, model.f_y}:   # embedding makes a leaf tensor and stays eager
                net.compile()
        self.forward = model if self.world == 1 else self._wrap_ddp(model)
        self.carry = self._empty_carry()
        self.skipped_steps = 0

    @staticmethod
    def _wrap_ddp(model: RecursiveReasoner) -> torch.nn.parallel.DistributedDataParallel:
        """DDP over the network's parameters only. Its buffers are left out: the init vectors and rotary
        tables are equal on every rank by construction (same seed), and the puzzle table is updated
        identically on every rank by SignSGD, so broadcasting them (at start, or every forward) is waste."""
        DDP = torch.nn.parallel.DistributedDataParallel
        DDP._set_params_and_buffers_to_ignore_for_model(model, [n for n, _ in model.named_buffers()])
        return DDP(model, find_unused_parameters=has_unused_params(model.cfg))

    # ------------------------------------------------------------------------------------------
    def _empty_carry(self) -> Carry:
        b, S, dev = self.local_batch, self.model.cfg.seq_len, self.device
        y, z = self.model.initial_state(b, dev)
        return Carry(y=y, z=z, steps=torch.zeros(b, dtype=torch.int32, device=dev),
                     halted=torch.ones(b, dtype=torch.bool, device=dev),
                     inputs=torch.zeros(b, S, dtype=torch.int32, device=dev),
                     labels=torch.full((b, S), IGNORE_INDEX, dtype=torch.int64, device=dev),
                     puzzle_ids=torch.zeros(b, dtype=torch.int32, device=dev),
                     min_steps=torch.zeros(b, dtype=torch.int32, device=dev))

    def _global_halted(self) -> np.ndarray:
        halted = self.carry.halted
        if self.world > 1:
            parts = [torch.empty_like(halted) for _ in range(self.world)]
            dist.all_gather(parts, halted)
            halted = torch.cat(parts)
        return halted.cpu().numpy()

    def _refill(self) -> None:
        """Halted slots take the next examples of the stream and restart from the init (y, z)."""
        g_halted = self._global_halted()
        n_new = int(g_halted.sum())
        # Exploration floors are drawn for the whole global batch (same on every rank).
        explore = torch.rand(self.global_batch, generator=self.gen) < self.model.cfg.halt_exploration_prob
        floors = torch.randint(2, max(self.model.cfg.N_sup, 2) + 1, (self.global_batch,), generator=self.gen)
        g_min = torch.where(explore, floors, torch.zeros_like(floors)).to(torch.int32)
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        c = self.carry
        if self.model.cfg.halt_exploration == "per_step":
            c.min_steps = g_min[lo:hi].to(self.device)
        if n_new == 0:
            return
        g_idx = np.full(self.global_batch, -1, np.int64)
        g_idx[g_halted] = self.stream.take(n_new)
        local = g_idx[lo:hi]
        slots = np.nonzero(local >= 0)[0]
        if len(slots) == 0:
            return
        ex = local[slots]
        dev = self.device
        s = torch.from_numpy(slots).to(dev)
        c.inputs[s] = torch.from_numpy(self.inputs_np[ex].astype(np.int32)).to(dev)
        c.labels[s] = to_labels(self.labels_np[ex], self.ignore_label_id).to(dev)
        c.puzzle_ids[s] = torch.from_numpy(self.example_puzzle[ex].astype(np.int32)).to(dev)
        if self.model.cfg.halt_exploration == "per_slot":
            c.min_steps[s] = g_min[lo:hi][torch.from_numpy(slots)].to(dev)
        y0, z0 = self.model.initial_state(len(slots), dev)
        c.y[s], c.z[s] = y0, z0
        c.steps[s] = 0

    # ------------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One supervision step for every slot, one optimizer step. Returns this step's metrics."""
        cfg, m = self.cfg, self.model.cfg
        self.model.train()
        self._refill()
        c = self.carry
        out = self.forward(c.inputs, c.puzzle_ids, c.y, c.z)
        seq = sequence_loss(out.logits, c.labels, cfg.train.loss, IGNORE_INDEX)
        lm_loss = seq.loss.sum()
        halt_loss = halting_bce(out.q_halt, seq.exact)
        steps = c.steps + 1
        is_last = steps >= m.N_sup
        cont_loss = torch.zeros((), device=self.device)
        if m.halting == "qlearn":
            with torch.no_grad():
                nxt = self.forward(c.inputs, c.puzzle_ids, out.y, out.z)
            target = q_learning_target(nxt.q_halt, nxt.q_continue, is_last)
            cont_loss = halting_bce(out.q_continue, target)
        total = lm_loss.float() + cfg.train.halt_loss_weight * (halt_loss + cont_loss)
        # Mean over this rank's slots; DDP averages over the ranks: the mean over the global batch.
        (total / self.local_batch).backward()

        terms = {"lm_loss": lm_loss, "halt_loss": halt_loss, "continue_loss": cont_loss}
        if not self._finite(terms):
            return {"skipped": 1.0}

        # The official code counts the step before it computes the lr: the first update uses lr / warmup.
        lr = lr_at(self.step + 1, cfg.train.lr, cfg.train.lr_warmup_steps, self.total_steps,
                   cfg.train.lr_min_ratio, cfg.train.lr_schedule)
        set_lr(self.optimizer, lr)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.sparse_opt is not None:
            set_lr(self.sparse_opt, lr * cfg.train.puzzle_emb_lr / cfg.train.lr)
            self.sparse_opt.step()
            self.sparse_opt.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)

        with torch.no_grad():
            halted = is_last.clone()
            if m.N_sup > 1:
                wants = wants_halt(out, m.halting)
                halted |= wants & (steps >= c.min_steps)
            c.y, c.z, c.steps, c.halted = out.y, out.z, steps, halted
            metrics = self._metrics(seq, out, halted, steps, terms, lr)
        self.step += 1
        return metrics

    def _finite(self, terms: dict[str, torch.Tensor]) -> bool:
        """Check losses and gradients; stop (NumericalError) or skip the step, per train.nan_policy."""
        checks = {k: v.detach().float().reshape(1) for k, v in terms.items()}
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norms = [torch.linalg.vector_norm(g.float()) for g in grads]
        checks["grad_norm"] = torch.linalg.vector_norm(torch.stack(norms)).reshape(1) if grads else torch.zeros(1)
        flags = torch.isfinite(torch.cat(list(checks.values()))).cpu()
        if bool(flags.all()):
            self._last_grad_norm = checks["grad_norm"]
            return True
        bad = [k for k, ok in zip(checks, flags.tolist()) if not ok]
        msg = (f"non-finite {', '.join(bad)} at step {self.step} "
               f"(values: {', '.join(f'{k}={checks[k].item():.4g}' for k in bad)})")
        if self.cfg.train.nan_policy == "stop":
            raise NumericalError(msg + "; set train.nan_policy=skip to drop such steps instead")
        self.optimizer.zero_grad(set_to_none=True)
        if self.model.puzzle_emb is not None:
            self.model.puzzle_emb.clear()
        self.skipped_steps += 1
        # Keep the slots as they were, but restart them: the step is dropped.
        self.carry.halted = torch.ones_like(self.carry.halted)
        self.step += 1
        print(f"warning: {msg}; step skipped")
        return False

    def _metrics(self, seq, out, halted, steps, terms, lr) -> dict[str, float]:
        valid = halted & (seq.counts > 0)
        cell_acc = seq.correct.sum(-1) / seq.counts.clamp_min(1)
        vals = {
            "count": valid.sum(),
            "exact": (valid & seq.exact).sum(),
            "accuracy": torch.where(valid, cell_acc, 0).sum(),
            "halt_accuracy": (valid & ((out.q_halt >= 0) == seq.exact)).sum(),
            "steps": torch.where(valid, steps, 0).sum(),
            **{k: v.detach().float() for k, v in terms.items()},
            "grad_norm": self._last_grad_norm.reshape(()),
        }
        flat = torch.stack([v.float().reshape(()) for v in vals.values()])
        if self.world > 1:
            dist.all_reduce(flat)
        vals = dict(zip(vals, flat.tolist()))     # one device-to-host transfer
        finished = vals.pop("count")
        n = max(finished, 1.0)
        res = {k: vals[k] / n for k in ("exact", "accuracy", "halt_accuracy", "steps")}
        res["finished"] = finished       # examples that halted at this step (the rates are over them)
        for k in ("lm_loss", "halt_loss", "continue_loss"):
            res[k] = vals[k] / self.global_batch
        res["grad_norm"] = vals["grad_norm"]
        res["lr"] = lr
        return res

    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sparse_opt": self.sparse_opt.state_dict() if self.sparse_opt else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "stream": self.stream.state_dict(),
            "gen": self.gen.get_state(),
            "carry": self.carry.state_dict(),
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, s: dict) -> None:
        self.step = int(s["step"])
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        if self.sparse_opt and s.get("sparse_opt"):
            self.sparse_opt.load_state_dict(s["sparse_opt"])
        if self.ema and s.get("ema"):
            self.ema.load_state_dict(s["ema"])
        self.stream.load_state_dict(s["stream"])
        self.gen.set_state(s["gen"])
        carry = s["carry"]
        expected = {k: tuple(v.shape) for k, v in self._empty_carry().__dict__.items()}
        got = {k: tuple(v.shape) for k, v in carry.items()} if isinstance(carry, dict) else {}
        if got != expected:
            from trm.errors import CheckpointError
            raise CheckpointError(f"the checkpoint's carried slots do not fit this run (shapes {got}, expected "
                                  f"{expected}): it was saved with another batch or model")
        self.carry = Carry(**{k: v.to(self.device) for k, v in carry.items()})
        self.skipped_steps = int(s.get("skipped_steps", 0))
