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
from trm.model.recursive import RecursiveReasoner
from trm.train.engine import to_labels
from trm.train.losses import IGNORE_INDEX


@dataclass
class EvalResult:
    preds: np.ndarray          # [N, S] uint8 answer tokens used for scoring (last step, or halting step)
    halt_prob: np.ndarray      # [N] sigmoid(halting logit) at the answer's step
    steps: np.ndarray          # [N] supervision steps used
    exact_by_step: np.ndarray  # [N_sup] exact accuracy if read after step k (k = 1..N_sup)
    metrics: dict[str, float]
    trace: np.ndarray | None = None  # [N, N_sup, S] answers after every step (on request)


@torch.inference_mode()
def evaluate(model: RecursiveReasoner, ps: PuzzleSet, ignore_label_id: int | None, *, batch_size: int = 256,
             halting: str = "fixed", max_examples: int = 0, device: torch.device | str = "cpu",
             keep_trace: bool = False, progress: bool = False) -> EvalResult:
    model.eval()
    N_sup = model.cfg.N_sup
    n = ps.num_examples if not max_examples else min(max_examples, ps.num_examples)
    example_pid = np.repeat(np.asarray(ps.puzzle_identifiers), np.diff(np.asarray(ps.puzzle_indices)))[:n]
    labels_all = to_labels(ps.labels[:n], ignore_label_id)
    preds = np.zeros((n, ps.inputs.shape[1]), np.uint8)
    halt_prob = np.zeros(n, np.float32)
    steps_used = np.zeros(n, np.int32)
    correct_by_step = np.zeros(N_sup, np.int64)
    first_halt_exact = np.zeros(n, bool)     # fixed mode: what adaptive halting would have answered
    first_halt_step = np.full(n, N_sup, np.int32)
    cells_right = cells_total = 0
    trace = np.zeros((n, N_sup, ps.inputs.shape[1]), np.uint8) if keep_trace else None

    for start in tqdm(range(0, n, batch_size), desc="eval", disable=not progress, leave=False):
        idx = np.arange(start, min(n, start + batch_size))
        inputs = torch.from_numpy(np.asarray(ps.inputs[idx], np.int32)).to(device)
        labels = labels_all[idx].to(device)
        pids = torch.from_numpy(example_pid[idx].astype(np.int32)).to(device)
        y, z = model.initial_state(len(idx), device)
        active = torch.arange(len(idx), device=device)     # rows still running (adaptive mode)
        halted_at = torch.full((len(idx),), N_sup, dtype=torch.int32, device=device)
        for k in range(1, N_sup + 1):
            out = model(inputs[active], pids[active], y, z)
            y, z = out.y, out.z
            pred = out.logits.argmax(-1)
            lab = labels[active]
            mask = lab != IGNORE_INDEX
            exact = ((pred == lab) | ~mask).all(-1)
            wants_halt = out.q_halt > 0
            rows = idx[active.cpu().numpy()]
            if keep_trace:
                trace[rows, k - 1:] = pred.cpu().numpy().astype(np.uint8)[:, None]
            if halting == "fixed":
                correct_by_step[k - 1] += int(exact.sum())
                newly = (halted_at[active] == N_sup) & wants_halt & (k < N_sup)
                first_rows = rows[newly.cpu().numpy()]
                first_halt_exact[first_rows] = exact[newly].cpu().numpy()
                first_halt_step[first_rows] = k
                halted_at[active[newly]] = k
                done = torch.zeros_like(wants_halt) if k < N_sup else torch.ones_like(wants_halt)
            else:
                # Rows that halted earlier keep their answer; count them as right/wrong at every later k.
                correct_by_step[k - 1] += int(exact.sum())
                done = wants_halt | (k == N_sup)
            if k == N_sup or halting == "adaptive":
                d = done.cpu().numpy()
                drows = rows[d]
                preds[drows] = pred[done].cpu().numpy().astype(np.uint8)
                halt_prob[drows] = torch.sigmoid(out.q_halt[done]).cpu().numpy()
                steps_used[drows] = k
                if halting == "adaptive":
                    first_halt_exact[drows] = exact[done].cpu().numpy()
                    first_halt_step[drows] = k
                    for later in range(k, N_sup):   # a halted answer stays the answer at later steps
                        correct_by_step[later] += int(exact[done].sum())
                if halting == "adaptive" and bool(done.any()):
                    keep = ~done
                    active, y, z = active[keep], y[keep], z[keep]
                    if len(active) == 0:
                        break
            if k == N_sup:
                cells_right += int(((pred == lab) & mask).sum())
                cells_total += int(mask.sum())
        if halting == "fixed":
            never = first_halt_step[idx] == N_sup
            first_halt_exact[idx[never]] = _exact_rows(preds[idx[never]], labels_all[idx[never]])

    if halting == "adaptive":
        cells_right, cells_total = _cell_counts(preds, labels_all)
    exact_by_step = correct_by_step / max(n, 1)
    metrics = {
        "exact": float(_exact_rows(preds, labels_all).mean()) if n else 0.0,
        "accuracy": cells_right / max(cells_total, 1),
        "halt_accuracy": float(((halt_prob >= 0.5) == _exact_rows(preds, labels_all)).mean()) if n else 0.0,
        "steps": float(steps_used.mean()) if n else 0.0,
        "adaptive_exact": float(first_halt_exact.mean()) if n else 0.0,
        "adaptive_steps": float(first_halt_step.mean()) if n else 0.0,
        "examples": float(n),
    }
    for k in (1, 2, 4, 8, N_sup):
        if k <= N_sup:
            metrics[f"exact@{k}"] = float(exact_by_step[k - 1])
    return EvalResult(preds, halt_prob, steps_used, exact_by_step, metrics, trace)


def _exact_rows(preds: np.ndarray, labels: torch.Tensor) -> np.ndarray:
    lab = labels.numpy()
    mask = lab != IGNORE_INDEX
    return ((preds.astype(np.int64) == lab) | ~mask).all(-1)


def _cell_counts(preds: np.ndarray, labels: torch.Tensor) -> tuple[int, int]:
    lab = labels.numpy()
    mask = lab != IGNORE_INDEX
    return int(((preds.astype(np.int64) == lab) & mask).sum()), int(mask.sum())
