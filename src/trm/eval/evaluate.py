"""Evaluation: run every test example for N_sup supervision steps and score every step.

Fixed mode (the paper) runs all N_sup steps; the answer is the last one. Adaptive mode stops each
example when its halting logit is > 0 (or at N_sup) and drops halted examples from the batch, so they
stop costing compute. Both modes report the exact accuracy after each step (so the value of deep
supervision is visible), and fixed mode also reports what adaptive halting would have given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from trm.data.format import PuzzleSet
from trm.errors import ConfigError
from trm.model.recursive import RecursiveReasoner
from trm.model.losses import to_labels
from trm.model.unroll import Unroll
from trm.model.losses import IGNORE_INDEX


@dataclass
class EvalResult:
    preds: np.ndarray          # [N, S] uint8 answer tokens used for scoring (last step, or halting step)
    halt_prob: np.ndarray      # [N] sigmoid(halting logit) at the answer's step
    steps: np.ndarray          # [N] supervision steps used
    exact_by_step: np.ndarray  # [N_sup] exact accuracy if read after step k (k = 1..N_sup)
    metrics: dict[str, float]
    trace: np.ndarray | None = None  # [N, N_sup, S] answers after every step (on request)


@dataclass
class _Rows:
    """Per-example results of one contiguous range of examples (one rank's share)."""
    preds: np.ndarray              # [m, S] uint8
    halt_prob: np.ndarray          # [m] float32
    steps: np.ndarray              # [m] int32
    exact_at: np.ndarray           # [m, N_sup] bool: exact if read after step k
    first_halt_exact: np.ndarray   # [m] bool: exact at the first step whose halting logit is > 0
    first_halt_step: np.ndarray    # [m] int32
    trace: np.ndarray | None

    @staticmethod
    def concat(parts: list["_Rows"]) -> "_Rows":
        def cat(name: str):
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays)
        return _Rows(*(cat(f) for f in _Rows.__dataclass_fields__))


@torch.inference_mode()
def evaluate(model: RecursiveReasoner, ps: PuzzleSet, ignore_label_id: int | None, *, batch_size: int = 256,
             halting: str = "fixed", max_examples: int = 0, device: torch.device | str = "cpu",
             keep_trace: bool = False, progress: bool = False, shard: tuple[int, int] = (0, 1)) -> EvalResult:
    """Score the first ``max_examples`` examples (all when 0) of ``ps``.

    ``shard=(rank, world_size)`` splits the examples into ``world_size`` contiguous shares: each process
    runs its own share and the per-example results are all-gathered, so every process returns the same
    full result (a collective call: every rank of the process group must make it).
    """
    model.eval()
    N_sup = model.cfg.N_sup
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch size must be an integer >= 1, got {batch_size!r}")
    if not (isinstance(max_examples, int) and max_examples >= 0):
        raise ConfigError(f"max_examples must be >= 0 (0: the whole split), got {max_examples!r}")
    if halting not in ("fixed", "adaptive"):
        raise ConfigError(f"halting must be 'fixed' or 'adaptive', got {halting!r}")
    n = ps.num_examples if not max_examples else min(max_examples, ps.num_examples)
    rank, world = shard
    lo, hi = n * rank // world, n * (rank + 1) // world
    example_pid = ps.example_puzzle_ids()[:n]
    labels_all = to_labels(ps.labels[:n], ignore_label_id)
    rows = _run_rows(model, ps, labels_all, example_pid, lo, hi, batch_size=batch_size, halting=halting,
                     device=device, keep_trace=keep_trace, progress=progress)
    if world > 1:
        import torch.distributed as dist
        parts: list = [None] * world
        dist.all_gather_object(parts, rows)
        rows = _Rows.concat(parts)

    final_exact = _exact_rows(rows.preds, labels_all)
    cells_right, cells_total = _cell_counts(rows.preds, labels_all)
    exact_by_step = rows.exact_at.mean(0) if n else np.zeros(N_sup)
    metrics = {
        "exact": float(final_exact.mean()) if n else 0.0,
        "accuracy": cells_right / max(cells_total, 1),
        "halt_accuracy": float(((rows.halt_prob >= 0.5) == final_exact).mean()) if n else 0.0,
        "steps": float(rows.steps.mean()) if n else 0.0,
        "adaptive_exact": float(rows.first_halt_exact.mean()) if n else 0.0,
        "adaptive_steps": float(rows.first_halt_step.mean()) if n else 0.0,
        "examples": float(n),
    }
    for k in (1, 2, 4, 8, N_sup):
        if k <= N_sup:
            metrics[f"exact@{k}"] = float(exact_by_step[k - 1])
    return EvalResult(rows.preds, rows.halt_prob, rows.steps, exact_by_step, metrics, rows.trace)


def _run_rows(model: RecursiveReasoner, ps: PuzzleSet, labels_all: torch.Tensor, example_pid: np.ndarray,
              lo: int, hi: int, *, batch_size: int, halting: str, device: torch.device | str,
              keep_trace: bool, progress: bool) -> _Rows:
    """Run examples ``lo:hi`` for up to N_sup supervision steps (all of them in fixed mode)."""
    N_sup, m, S = model.cfg.N_sup, hi - lo, ps.inputs.shape[1]
    r = _Rows(preds=np.zeros((m, S), np.uint8), halt_prob=np.zeros(m, np.float32),
              steps=np.zeros(m, np.int32), exact_at=np.zeros((m, N_sup), bool),
              first_halt_exact=np.zeros(m, bool), first_halt_step=np.full(m, N_sup, np.int32),
              trace=np.zeros((m, N_sup, S), np.uint8) if keep_trace else None)
    for start in tqdm(range(lo, hi, batch_size), desc="eval", disable=not progress, leave=False):
        idx = np.arange(start, min(hi, start + batch_size))
        inputs = torch.from_numpy(np.asarray(ps.inputs[idx], np.int32)).to(device)
        labels = labels_all[idx].to(device)
        pids = torch.from_numpy(example_pid[idx].astype(np.int32)).to(device)
        run = Unroll(model, inputs, pids)
        halted = torch.zeros(len(idx), dtype=torch.bool, device=device)   # fixed mode: the halting head said stop
        for k in range(1, N_sup + 1):
            active = run.active
            out = run.step()
            pred = out.logits.argmax(-1)
            lab = labels[active]
            exact = ((pred == lab) | (lab == IGNORE_INDEX)).all(-1)
            halts = run.halts(out)
            local = idx[active.cpu().numpy()] - lo         # positions in this share
            exact_np = exact.cpu().numpy()
            r.exact_at[local, k - 1] = exact_np
            if keep_trace:
                assert r.trace is not None   # allocated when keep_trace
                r.trace[local, k - 1:] = pred.cpu().numpy().astype(np.uint8)[:, None]
            if halting == "fixed":
                newly = (~halted[active] & halts).cpu().numpy() if k < N_sup else np.zeros(len(local), bool)
                r.first_halt_exact[local[newly]] = exact_np[newly]
                r.first_halt_step[local[newly]] = k
                halted[active[torch.from_numpy(newly).to(device)]] = True
                done = np.zeros(len(local), bool) if k < N_sup else np.ones(len(local), bool)
            else:
                done = (halts | (k == N_sup)).cpu().numpy()
            if done.any():
                d = local[done]
                done_t = torch.from_numpy(done).to(device)
                r.preds[d] = pred[done_t].cpu().numpy().astype(np.uint8)
                r.halt_prob[d] = torch.sigmoid(out.q_halt[done_t].float()).cpu().numpy()
                r.steps[d] = k
                if halting == "adaptive":   # a halted answer stays the answer at every later step
                    r.exact_at[d, k:] = exact_np[done][:, None]
                    r.first_halt_exact[d] = exact_np[done]
                    r.first_halt_step[d] = k
                    run.drop(done_t)
                    if run.finished:
                        break
        if halting == "fixed":   # never halted before N_sup: adaptive halting answers at N_sup
            never = idx[~halted.cpu().numpy()] - lo
            r.first_halt_exact[never] = r.exact_at[never, N_sup - 1]
    return r


def _exact_rows(preds: np.ndarray, labels: torch.Tensor) -> np.ndarray:
    lab = labels.numpy()
    mask = lab != IGNORE_INDEX
    return ((preds.astype(np.int64) == lab) | ~mask).all(-1)


def _cell_counts(preds: np.ndarray, labels: torch.Tensor) -> tuple[int, int]:
    lab = labels.numpy()
    mask = lab != IGNORE_INDEX
    return int(((preds.astype(np.int64) == lab) & mask).sum()), int(mask.sum())
