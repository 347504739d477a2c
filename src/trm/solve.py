"""Inference: load a trained model and solve puzzles, with fixed or adaptive halting.

    model = trm.load("runs/sudoku-cpu/model")
    result = model.solve("..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..")
    result.answers[0], result.steps[0], result.halt_probs[0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from trm.config import Config, config_from_dict
from trm.errors import CheckpointError, PuzzleError
from trm.model.recursive import RecursiveReasoner


@dataclass
class SolveResult:
    tokens: np.ndarray                  # [B, S] answer tokens
    steps: np.ndarray                   # [B] supervision steps used
    halt_probs: np.ndarray              # [B] sigmoid(halting logit) at the answer's step
    answers: list[Any] = field(default_factory=list)   # decoded answers (task-specific)
    trace: np.ndarray | None = None     # [B, steps, S] answer tokens after every step
    trace_halt: np.ndarray | None = None  # [B, steps] halting probability after every step


class TRM:
    """A trained model with its config and dataset facts; ``solve`` runs inference."""

    def __init__(self, model: RecursiveReasoner, config: Config, data: dict, device: torch.device):
        self.model, self.config, self.data, self.device = model.eval(), config, data, device

    @property
    def task(self) -> str:
        return self.data.get("task", "")

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, puzzle: Any) -> np.ndarray:
        """One puzzle (text or array, per task) -> [S] input tokens; wrong size -> PuzzleError."""
        S = self.model.cfg.seq_len
        if isinstance(puzzle, np.ndarray) and puzzle.dtype != object and puzzle.size == S and self.task != "arc":
            return puzzle.reshape(S).astype(np.uint8)
        if self.task == "sudoku":
            from trm.data.sudoku import encode_board, parse_sudoku
            side = int(round(S ** 0.5))
            board = parse_sudoku(puzzle) if isinstance(puzzle, str) else np.asarray(puzzle)
            if board.size != S:
                raise PuzzleError(f"this model solves {side}x{side} Sudoku ({S} cells); the puzzle has "
                                  f"{board.size} cells")
            return encode_board(board.reshape(side, side)).reshape(S)
        if self.task == "maze":
            from trm.data.maze import parse_maze
            grid = parse_maze(puzzle, allow_path=False) if isinstance(puzzle, str) else np.asarray(puzzle)
            if grid.size != S:
                h, w = self.data.get("grid_shape") or (int(S ** 0.5),) * 2
                raise PuzzleError(f"this model solves {h}x{w} mazes; the maze is {grid.shape[0]}x{grid.shape[1]}")
            return grid.reshape(S).astype(np.uint8)
        raise PuzzleError(f"cannot encode a puzzle for task {self.task!r} here; pass tokens")

    def decode(self, tokens: np.ndarray) -> Any:
        if self.task == "sudoku":
            from trm.data.sudoku import decode_tokens
            side = int(round(tokens.size ** 0.5))
            return decode_tokens(tokens, side).reshape(side, side)
        if self.task == "maze":
            h, w = self.data.get("grid_shape") or (int(tokens.size ** 0.5),) * 2
            return tokens.reshape(h, w)
        return tokens

    # -- inference ------------------------------------------------------------------------------
    @torch.inference_mode()
    def solve(self, puzzles: Any | Sequence[Any], *, halting: str = "fixed", max_steps: int | None = None,
              trace: bool = False, puzzle_ids: Sequence[int] | None = None, batch_size: int = 256) -> SolveResult:
        """Solve one puzzle or a batch.

        ``halting="fixed"`` runs N_sup steps (the paper); ``"adaptive"`` stops each puzzle when its
        halting logit is > 0 (or at ``max_steps``), and halted puzzles leave the batch.
        """
        if halting not in ("fixed", "adaptive"):
            raise ValueError("halting must be 'fixed' or 'adaptive'")
        single = isinstance(puzzles, str) or (isinstance(puzzles, np.ndarray) and puzzles.ndim <= 2
                                              and self.task != "arc" and puzzles.size == self.model.cfg.seq_len)
        items = [puzzles] if single else list(puzzles)
        tokens = np.stack([self.encode(p) for p in items])
        ids = np.zeros(len(items), np.int32) if puzzle_ids is None else np.asarray(puzzle_ids, np.int32)
        cap = max_steps or self.model.cfg.N_sup
        outs, steps, probs, traces, thalts = [], [], [], [], []
        for s in range(0, len(tokens), batch_size):
            r = self._solve_tokens(tokens[s:s + batch_size], ids[s:s + batch_size], halting, cap, trace)
            outs.append(r[0]); steps.append(r[1]); probs.append(r[2]); traces.append(r[3]); thalts.append(r[4])
        res = SolveResult(np.concatenate(outs), np.concatenate(steps), np.concatenate(probs),
                          trace=np.concatenate(traces) if trace else None,
                          trace_halt=np.concatenate(thalts) if trace else None)
        res.answers = [self.decode(t) for t in res.tokens]
        return res

    def _solve_tokens(self, tokens: np.ndarray, ids: np.ndarray, halting: str, cap: int, trace: bool):
        dev, B, S = self.device, len(tokens), tokens.shape[1]
        inputs = torch.from_numpy(tokens.astype(np.int32)).to(dev)
        pids = torch.from_numpy(ids).to(dev)
        y, z = self.model.initial_state(B, dev)
        active = torch.arange(B, device=dev)
        answer = np.zeros((B, S), np.uint8)
        used = np.full(B, cap, np.int32)
        prob = np.zeros(B, np.float32)
        tr = np.zeros((B, cap, S), np.uint8) if trace else None
        th = np.zeros((B, cap), np.float32) if trace else None
        for k in range(1, cap + 1):
            out = self.model(inputs[active], pids[active], y, z)
            y, z = out.y, out.z
            pred = out.logits.argmax(-1).to(torch.uint8).cpu().numpy()
            p = torch.sigmoid(out.q_halt).cpu().numpy()
            rows = active.cpu().numpy()
            if trace:
                tr[rows, k - 1:] = pred[:, None]
                th[rows, k - 1:] = p[:, None]
            done = (p > 0.5) if halting == "adaptive" else np.zeros(len(rows), bool)
            if k == cap:
                done[:] = True
            answer[rows[done]], used[rows[done]], prob[rows[done]] = pred[done], k, p[done]
            if halting == "adaptive" and done.any():
                keep = torch.from_numpy(~done).to(dev)
                active, y, z = active[keep], y[keep], z[keep]
                if len(active) == 0:
                    break
        if trace:
            last = used.max()
            tr, th = tr[:, :last], th[:, :last]
        return answer, used, prob, tr, th


def load(path: str | Path, device: str | torch.device = "cpu") -> TRM:
    """Load a trained model from an exported directory (model.safetensors + config.json), a run
    directory (uses its ``model/``), or a full-state checkpoint (``.pt``; EMA weights if present)."""
    from trm.train.checkpoint import load_checkpoint, read_export
    path = Path(path)
    device = torch.device(device)
    if path.is_dir() and (path / "model" / "model.safetensors").is_file():
        path = path / "model"
    if path.suffix == ".pt" or (path.is_dir() and (path / "checkpoints" / "last.pt").is_file()
                                and not (path / "model.safetensors").is_file()):
        state = load_checkpoint(path, map_location="cpu")
        cfg = config_from_dict(state["config"])
        model = RecursiveReasoner(cfg.model)
        eng = state["engine"]
        weights = dict(eng["model"])
        if eng.get("ema"):
            weights.update({k: v for k, v in eng["ema"]["shadow"].items()})
        data = {"task": "", "grid_shape": None}
        data_dir = Path(cfg.data.path)
        if (data_dir / "train" / "dataset.json").is_file():
            from trm.data.format import read_metadata
            meta = read_metadata(data_dir / "train")
            data = {"task": meta.task, "grid_shape": meta.grid_shape, "ignore_label_id": meta.ignore_label_id}
    else:
        weights, exported = read_export(path)
        try:
            cfg = config_from_dict(exported["config"])
            data = exported.get("data", {})
        except (KeyError, TypeError):
            raise CheckpointError(f"{path}: config.json lacks the 'config' section of a trm export") from None
        model = RecursiveReasoner(cfg.model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model config "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    for name, tensor in weights.items():
        if expected[name].shape != tensor.shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, the config expects "
                                  f"{tuple(expected[name].shape)}")
    model.load_state_dict(weights)
    return TRM(model.to(device), cfg, data, device)
