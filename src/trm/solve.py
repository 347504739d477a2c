"""Inference: load a trained model, solve puzzles with fixed or adaptive halting, and spend extra test-time
compute on K noisy rollouts per puzzle.

    model = trm.load("runs/sudoku-cpu")                 # run dir, exported dir or .pt
    res = model.solve("..3.2.6..9..3.5..1..18.64....81.29..7.......8..67.82....26.95..8..2.3..9..5.1.3..",
                      halting="adaptive")
    res.answers[0], res.steps[0], res.halt_probs[0]
    res = model.solve(puzzles, rollouts=16, noise=0.5, select="halt")   # test-time scaling
    model.save_pretrained("my-model"); trm.Solver.from_pretrained("my-model")

Halting (paper symbols): one supervision step is one deep recursion (T latent recursions of n z-updates
and one y-update). ``halting="fixed"`` runs N_sup steps, as the paper evaluates; ``"adaptive"`` stops each
example when sigmoid(halting logit) > ``halt_threshold`` or at ``max_steps``; halted rows leave the batch,
so they stop costing compute.

Rollouts: every puzzle is run K times in one batch (B*K rows). Rollout 0 is the plain deterministic run;
rollouts 1..K-1 get Gaussian noise added to the latent z (``noise_on``: "z", "y" or "yz") with standard
deviation ``noise`` times the latent's RMS, at the start (a random initial state), at every supervision
step, or both (``noise_at``). Per puzzle one answer is kept: the rollout with the highest halting
probability (``select="halt"``) or the answer most rollouts agree on (``"vote"``, ties broken by the mean
halting probability). For Sudoku and mazes, rollouts whose answer breaks a rule (a Sudoku row, column,
box or given; a maze path that is not a shortest S-to-G path) are rejected first whenever another
rollout passes the check; ``stop_on_valid`` also stops a puzzle's other rollouts as soon as one rollout
halts on an answer that passes it. ``require_valid`` makes adaptive halting refuse to stop on an answer
that breaks a rule: such a row keeps refining until its answer passes or it reaches ``max_steps``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from trm.config import Config, config_from_dict
from trm.errors import CheckpointError, ConfigError, PuzzleError
from trm.runtime import Precision, resolve_device, resolve_precision, resolve_trained_precision
from trm.model.recursive import RecursiveReasoner
from trm.model.unroll import Unroll
from trm.tasks.base import Task, read_puzzle_text

NOISE_ON = ("z", "y", "yz")
NOISE_AT = ("start", "every", "both")
SELECT = ("halt", "vote")


@dataclass
class SolveResult:
    tokens: np.ndarray                  # [B, S] answer tokens
    steps: np.ndarray                   # [B] supervision steps used (by the chosen rollout)
    halt_probs: np.ndarray              # [B] sigmoid(halting logit) at the answer's step
    answers: list[Any] = field(default_factory=list)   # decoded answers (task-specific)
    trace: np.ndarray | None = None     # [B, steps, S] answer tokens after every step (chosen rollout)
    trace_halt: np.ndarray | None = None  # [B, steps] halting probability after every step
    compute_steps: np.ndarray | None = None  # [B] supervision steps spent on the puzzle, all rollouts
    valid: np.ndarray | None = None     # [B] the answer passes the task's rule check (Sudoku, maze)
    rollout: np.ndarray | None = None   # [B] index of the chosen rollout (0 = the noiseless run)
    agreement: np.ndarray | None = None  # [B] fraction of the rollouts that gave the chosen answer
    extra: dict = field(default_factory=dict)  # task-specific details (ARC: attempts, votes, ranks)


class Solver:
    """A trained model (TRM, HRM or an ablation) with its config and dataset facts; ``solve`` runs inference."""

    def __init__(self, model: RecursiveReasoner, config: Config, data: dict, device: torch.device,
                 precision: "Precision | None" = None, trained_dtype: str = "", identifiers: list[str] | None = None):
        self.model, self.config, self.data, self.device = model.eval(), config, dict(data), device
        self.identifiers = identifiers      # names of the puzzle table's rows (identifiers.json), if known
        self.precision = precision or resolve_precision(model.cfg.forward_dtype, device,
                                                        hidden_size=model.cfg.hidden_size, seq_len=model.cfg.seq_len)
        self.trained_dtype = trained_dtype or self.precision.dtype
        if not self.data.get("task"):
            self.data["task"] = _guess_task(model.cfg.vocab_size, model.cfg.seq_len)

    @property
    def task(self) -> str:
        return self.data.get("task", "")

    @property
    def seq_len(self) -> int:
        return self.model.cfg.seq_len

    def __repr__(self) -> str:
        m = self.model.cfg
        return (f"Solver(task={self.task!r}, seq_len={m.seq_len}, vocab={m.vocab_size}, hidden={m.hidden_size}, "
                f"T={m.T}, n={m.n}, N_sup={m.N_sup}, params={self.model.num_params():,}, device={self.device})")

    # -- export / import (Hugging Face layout: config.json + model.safetensors) -------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "auto", dtype: str = "trained") -> "Solver":
        """Load from a local directory written by :meth:`save_pretrained` (or any path :func:`load` takes)."""
        return load(path, device, dtype)

    def describe_precision(self) -> str:
        """For example ``precision: float32 (trained in bf16, measured 38x slower than fp32 on this CPU)``."""
        differs = self.trained_dtype != self.precision.dtype and "trained" not in self.precision.reason
        trained = f"; trained in {self.trained_dtype}" if differs else ""
        return f"precision: {self.precision}{trained}"

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write ``model.safetensors`` (all weights and buffers), ``config.json`` (the resolved config and
        the dataset facts a solver needs) and ``identifiers.json`` when the puzzle names are known into
        ``out_dir``; loadable with no training state."""
        from trm import __version__
        from trm.io import export_weights
        saved = self.config.to_dict()
        saved["model"]["forward_dtype"] = self.trained_dtype      # the training precision, not this session's
        config = {"trm_version": __version__, "config": saved, "data": self.data}
        return export_weights(out_dir, self.model.state_dict(), config, self.identifiers)

    def fit_puzzle_table(self, names: list[str], used: "Sequence[int] | np.ndarray | None" = None,
                         where: str = "the dataset") -> str:
        """Make the puzzle-embedding rows follow a dataset's identifiers (``names[i]`` names id i), so that
        id i reads the row trained for that puzzle. With the model's own names known the rows are matched
        by name (reordered where the orders differ); without them only the count can be checked. Every
        identifier in ``used`` (default: all) must have a row; otherwise CheckpointError, because the
        model was trained on another dataset. Returns a note to print, or ""."""
        table = self.model.puzzle_emb
        if table is None:
            return ""
        used = sorted({int(i) for i in used}) if used is not None else list(range(len(names)))
        if self.identifiers is None:
            if table.num_ids != len(names):
                raise CheckpointError(
                    f"{where} names {len(names)} puzzle identifiers, the model's puzzle table has {table.num_ids} "
                    "rows: not the dataset it was trained on (trm import --identifiers gives the names of the "
                    "rows, so that a dataset can be matched by name)")
            return "" if len(names) <= 1 else (f"note: the model does not record its puzzle names; {where}'s "
                                               f"{len(names)} identifiers are taken in order")
        if names == self.identifiers:
            return ""
        canon = self.task_spec.canonical_identifier        # e.g. ARC: one spelling of the augmented versions
        row = {canon(name): i for i, name in enumerate(self.identifiers)}
        names = [canon(name) for name in names]
        missing = [names[i] for i in used if names[i] not in row]
        if missing:
            raise CheckpointError(
                f"{where}: {len(missing)} of the {len(used)} puzzle identifiers it uses have no row in the model's "
                f"puzzle table (e.g. {missing[:3]}): the model was trained on another build of the data (another "
                "seed or number of augmentations?); evaluate on the dataset it was trained on")
        index = torch.tensor([row.get(name, 0) for name in names], device=table.weight.device)
        table.weight = table.weight.index_select(0, index)
        table.num_ids = self.model.cfg.num_puzzle_ids = len(names)
        self.identifiers = list(names)
        return f"note: puzzle table matched by name to {where}'s {len(names)} identifiers"

    # -- encoding (the task's own rules: trm.tasks) ------------------------------------------------
    @property
    def task_spec(self) -> Task:
        """The :class:`~trm.tasks.base.Task` this model solves (a generic token task when unknown)."""
        from trm.tasks import REGISTRY
        return REGISTRY.get(self.task) or Task()

    def encode(self, puzzle: Any) -> np.ndarray:
        """One puzzle -> [S] input tokens (Sudoku: text or an NxN board, 0 blank; maze: text or an HxW
        token grid). A malformed puzzle or one of the wrong size for this model raises PuzzleError."""
        return self.task_spec.encode(read_puzzle_text(puzzle), self)

    def decode(self, tokens: np.ndarray) -> Any:
        return self.task_spec.decode(tokens, self)

    def check(self, inputs: np.ndarray, answers: np.ndarray) -> np.ndarray | None:
        """Per row: does the answer pass the task's rules (Sudoku: complete, valid, keeps the givens; maze:
        a shortest S-to-G path)? None for tasks without a cheap check (ARC)."""
        return self.task_spec.check(np.asarray(inputs), np.asarray(answers), self)

    # -- inference ------------------------------------------------------------------------------
    def solve(self, puzzles: Any | Sequence[Any], *, halting: str = "fixed", max_steps: int | None = None,
              trace: bool = False, puzzle_ids: Sequence[int] | None = None, batch_size: int = 256,
              halt_threshold: float = 0.5, rollouts: int = 1, noise: float = 0.0, noise_on: str = "z",
              noise_at: str = "both", select: str = "halt", reject_invalid: bool = True,
              stop_on_valid: bool = False, require_valid: bool = False, seed: int = 0,
              **task_options: Any) -> SolveResult:
        """Solve one puzzle or a batch (Sudoku strings or boards, maze text or token grids, ARC tasks).

        Returns answers, supervision steps used, halting probabilities and, with ``trace=True``, the
        answer and halting probability after every step. Options: see the module docstring. An ARC
        model takes task dicts or task JSON paths (see :func:`trm.tasks.arc.solve.solve_tasks`, which receives
        ``task_options`` such as ``versions`` and ``adapt_steps``).
        """
        special = self.task_spec.solve(self, puzzles, halting=halting, max_steps=max_steps, trace=trace,
                                       batch_size=batch_size, halt_threshold=halt_threshold, rollouts=rollouts,
                                       noise=noise, noise_on=noise_on, noise_at=noise_at, select=select, seed=seed,
                                       **task_options)
        if special is not None:
            return special
        if task_options:
            raise TypeError(f"unexpected options for a {self.task} model: {sorted(task_options)}")
        items = self._as_items(puzzles)
        tokens = np.stack([self._encode_item(p, i, len(items)) for i, p in enumerate(items)])
        res = self.solve_tokens(tokens, puzzle_ids=puzzle_ids, halting=halting, max_steps=max_steps,
                                trace=trace, batch_size=batch_size, halt_threshold=halt_threshold,
                                rollouts=rollouts, noise=noise, noise_on=noise_on, noise_at=noise_at,
                                select=select, reject_invalid=reject_invalid, stop_on_valid=stop_on_valid,
                                require_valid=require_valid, seed=seed)
        res.answers = [self.decode(t) for t in res.tokens]
        return res

    def _as_items(self, puzzles: Any) -> list:
        """One puzzle or a batch -> a list of puzzles."""
        if isinstance(puzzles, (str, Path)):
            return [puzzles]
        if isinstance(puzzles, np.ndarray):
            if puzzles.ndim == 3:
                return list(puzzles)
            if puzzles.ndim in (1, 2):
                return [puzzles]
            raise PuzzleError(f"expected one puzzle or a batch, got an array of shape {puzzles.shape}")
        if isinstance(puzzles, (list, tuple)):
            if not puzzles:
                raise PuzzleError("no puzzles given (an empty batch)")
            if all(isinstance(v, (int, np.integer)) for v in puzzles):   # one flat board as a list
                return [np.asarray(puzzles)]
            if all(isinstance(r, (list, tuple)) and r and all(isinstance(v, (int, np.integer)) for v in r)
                   for r in puzzles):                                    # one board as nested lists
                return [np.asarray(puzzles)]
            return list(puzzles)
        raise PuzzleError(f"cannot read a puzzle from a {type(puzzles).__name__}; give text, an array or a list")

    def _encode_item(self, puzzle: Any, i: int, n: int) -> np.ndarray:
        try:
            return self.encode(puzzle)
        except PuzzleError as e:
            if n == 1:
                raise
            raise PuzzleError(f"puzzle {i} of the batch: {e}") from None

    def solve_tokens(self, tokens: np.ndarray, *, puzzle_ids: Sequence[int] | None = None, halting: str = "fixed",
                     max_steps: int | None = None, trace: bool = False, batch_size: int = 256,
                     halt_threshold: float = 0.5, rollouts: int = 1, noise: float = 0.0, noise_on: str = "z",
                     noise_at: str = "both", select: str = "halt", reject_invalid: bool = True,
                     stop_on_valid: bool = False, require_valid: bool = False, seed: int = 0) -> SolveResult:
        """Solve token rows [B, S] (a dataset's inputs); the options are those of :meth:`solve`."""
        if select not in SELECT:
            raise ConfigError(f"select must be one of {SELECT}, got {select!r}")
        rows = self.run_rollouts(tokens, puzzle_ids=puzzle_ids, halting=halting, max_steps=max_steps, trace=trace,
                                 batch_size=batch_size, halt_threshold=halt_threshold, rollouts=rollouts, noise=noise,
                                 noise_on=noise_on, noise_at=noise_at, stop_on_valid=stop_on_valid,
                                 require_valid=require_valid, seed=seed)
        return select_rollouts(rows, rollouts, select, reject_invalid)

    @torch.inference_mode()
    def run_rollouts(self, tokens: np.ndarray, *, puzzle_ids: Sequence[int] | None = None, halting: str = "fixed",
                     max_steps: int | None = None, trace: bool = False, batch_size: int = 256,
                     halt_threshold: float = 0.5, rollouts: int = 1, noise: float = 0.0, noise_on: str = "z",
                     noise_at: str = "both", stop_on_valid: bool = False, require_valid: bool = False,
                     seed: int = 0) -> dict[str, np.ndarray | None]:
        """Every rollout of every puzzle, before selection: arrays of B*K rows (row r = puzzle r // K,
        rollout r % K) named tokens, steps, halt_probs, valid (None without a rule check), trace and
        trace_halt (None unless ``trace``). :func:`select_rollouts` keeps one per puzzle."""
        tokens = np.asarray(tokens)
        S = self.seq_len
        if tokens.ndim != 2 or tokens.shape[1] != S:
            raise PuzzleError(f"token rows must have shape [B, {S}], got {tokens.shape}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.model.cfg.vocab_size):
            raise PuzzleError(f"tokens must lie in 0..{self.model.cfg.vocab_size - 1}, found "
                              f"{tokens.min()}..{tokens.max()}")
        _check_options(halting, max_steps, halt_threshold, rollouts, noise, noise_on, noise_at, "halt", batch_size)
        cap = max_steps or self.model.cfg.N_sup
        ids = np.zeros(len(tokens), np.int32) if puzzle_ids is None else np.asarray(puzzle_ids, np.int32).reshape(-1)
        if len(ids) != len(tokens):
            raise PuzzleError(f"{len(ids)} puzzle ids for {len(tokens)} puzzles")
        n_ids = self.model.puzzle_emb.num_ids if self.model.puzzle_emb is not None else 1
        if len(ids) and (ids.min() < 0 or ids.max() >= n_ids):
            raise PuzzleError(f"puzzle ids must lie in 0..{n_ids - 1}, found {ids.min()}..{ids.max()}")
        K = rollouts
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        per_chunk = max(1, batch_size // K)
        parts = [self._run_rows(tokens[s:s + per_chunk].astype(np.uint8), ids[s:s + per_chunk], K, cap, halting,
                                halt_threshold, trace, noise, noise_on, noise_at, stop_on_valid, require_valid, gen)
                 for s in range(0, len(tokens), per_chunk)]
        if not parts:
            raise PuzzleError("no puzzles given (an empty batch)")
        return {k: (np.concatenate([p[k] for p in parts]) if parts[0][k] is not None else None) for k in parts[0]}

    def _run_rows(self, tokens: np.ndarray, ids: np.ndarray, K: int, cap: int, halting: str, thr: float,
                  trace: bool, noise: float, noise_on: str, noise_at: str, stop_on_valid: bool,
                  require_valid: bool, gen: torch.Generator) -> dict[str, np.ndarray | None]:
        """Run B puzzles x K rollouts as one batch of B*K rows (row r = puzzle r // K, rollout r % K)."""
        model, dev = self.model, self.device
        B, S = tokens.shape
        R = B * K
        rows_tok = np.repeat(tokens, K, axis=0)
        inputs = torch.from_numpy(rows_tok.astype(np.int32)).to(dev)
        pids = torch.from_numpy(np.repeat(ids, K)).to(dev)
        noisy = torch.from_numpy(np.arange(R) % K > 0).to(dev)          # rollout 0 stays noiseless
        run = Unroll(model, inputs, pids)
        answer = np.zeros((R, S), np.uint8)
        used = np.full(R, cap, np.int32)
        prob = np.zeros(R, np.float32)
        tr = np.zeros((R, cap, S), np.uint8) if trace else None
        th = np.zeros((R, cap), np.float32) if trace else None
        checker = self._checker(rows_tok) if (stop_on_valid or require_valid) else None

        def perturb(y: torch.Tensor, z: torch.Tensor, active: torch.Tensor, k: int):
            if k == 1 and noise_at not in ("start", "both") or k > 1 and noise_at not in ("every", "both"):
                return y, z
            mask = noisy[active]
            z = _perturb(z, noise, mask, gen) if "z" in noise_on else z       # z first: the seeded draws' order
            return (_perturb(y, noise, mask, gen) if "y" in noise_on else y), z

        for k in range(1, cap + 1):
            rows = run.active.cpu().numpy()
            out = run.step(perturb if noise > 0 else None)
            pred = out.logits.argmax(-1).to(torch.uint8).cpu().numpy()
            p = torch.sigmoid(out.q_halt).float().cpu().numpy()
            if trace:
                assert tr is not None and th is not None   # allocated when trace
                tr[rows, k - 1:] = pred[:, None]
                th[rows, k - 1:] = p[:, None]
            done = run.halts(out, thr).cpu().numpy() if halting == "adaptive" else np.zeros(len(rows), bool)
            if k == cap:
                done[:] = True
            elif checker is not None and done.any():
                ok = checker(rows[done], pred[done])
                accepted = rows[done][ok]
                if require_valid:                                        # a rule breaker keeps going
                    done[np.flatnonzero(done)[~ok]] = False
                if stop_on_valid:                                        # the puzzle is solved: stop its rollouts
                    done |= np.isin(rows // K, np.unique(accepted // K))
            answer[rows[done]], used[rows[done]], prob[rows[done]] = pred[done], k, p[done]
            if done.all():
                break
            if done.any():
                run.drop(done)
        valid = self.check(rows_tok, answer)
        return {"tokens": answer, "steps": used, "halt_probs": prob, "trace": tr, "trace_halt": th,
                "valid": valid}

    def _checker(self, rows_tok: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        if self.check(rows_tok[:1], rows_tok[:1]) is None:
            return None

        def checker(rows: np.ndarray, preds: np.ndarray) -> np.ndarray:
            ok = self.check(rows_tok[rows], preds)
            assert ok is not None   # the task has a check (tested above)
            return ok
        return checker


def _check_options(halting: str, max_steps: int | None, thr: float, rollouts: int, noise: float, noise_on: str,
                   noise_at: str, select: str, batch_size: int) -> None:
    if halting not in ("fixed", "adaptive"):
        raise ConfigError(f"halting must be 'fixed' or 'adaptive', got {halting!r}")
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ConfigError(f"max_steps must be a positive integer, got {max_steps!r}")
    if not 0.0 <= thr < 1.0:
        raise ConfigError(f"halt_threshold must lie in [0, 1), got {thr}")
    if not isinstance(rollouts, (int, np.integer)) or rollouts < 1:
        raise ConfigError(f"rollouts must be an integer >= 1, got {rollouts!r}")
    if not noise >= 0:
        raise ConfigError(f"noise must be >= 0, got {noise}")
    if noise_on not in NOISE_ON:
        raise ConfigError(f"noise_on must be one of {NOISE_ON}, got {noise_on!r}")
    if noise_at not in NOISE_AT:
        raise ConfigError(f"noise_at must be one of {NOISE_AT}, got {noise_at!r}")
    if select not in SELECT:
        raise ConfigError(f"select must be one of {SELECT}, got {select!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")


def _perturb(t: torch.Tensor, scale: float, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """t + scale * RMS(t) * N(0, 1) on the rows in ``mask`` (RMS per row over all its positions and features)."""
    if not bool(mask.any()):
        return t
    rms = t.float().pow(2).flatten(1).mean(1).sqrt().view(-1, *([1] * (t.dim() - 1)))
    eps = torch.randn(t.shape, generator=gen, device=t.device, dtype=torch.float32)
    eps = eps * (scale * rms * mask.view(-1, *([1] * (t.dim() - 1))))
    return (t.float() + eps).to(t.dtype)


def _select(r: dict[str, np.ndarray | None], K: int, select: str, reject_invalid: bool, trace: bool) -> dict:
    """Keep one of the K rollouts per puzzle: rule-passing ones first, then by halting prob or by vote."""
    assert r["tokens"] is not None and r["steps"] is not None and r["halt_probs"] is not None  # always set
    R, S = r["tokens"].shape
    B = R // K
    probs = r["halt_probs"].reshape(B, K)
    cand = np.ones((B, K), bool)
    valid = r["valid"].reshape(B, K) if r["valid"] is not None else None
    if valid is not None and reject_invalid:
        cand = np.where(valid.any(1, keepdims=True), valid, True)
    answers = r["tokens"].reshape(B, K, S)
    choice = np.zeros(B, np.int64)
    agree = np.ones(B, np.float32)
    for b in range(B):
        ks = np.flatnonzero(cand[b])
        if select == "halt" or K == 1:
            best = ks[np.argmax(probs[b, ks])]     # argmax keeps the first (lowest rollout) on ties
        else:
            _, inv, counts = np.unique(answers[b, ks], axis=0, return_inverse=True, return_counts=True)
            inv = inv.reshape(-1)
            mean_p = np.bincount(inv, weights=probs[b, ks]) / counts
            top = np.lexsort((-mean_p, -counts))[0]
            members = ks[inv == top]
            best = members[np.argmax(probs[b, members])]
        choice[b] = best
        agree[b] = float((answers[b] == answers[b, best]).all(-1).mean())
    idx = np.arange(B) * K + choice
    trace_rows: np.ndarray | None = None
    trace_halt_rows: np.ndarray | None = None
    if trace:
        assert r["trace"] is not None and r["trace_halt"] is not None   # kept by a trace=True run
        trace_rows, trace_halt_rows = r["trace"][idx], r["trace_halt"][idx]
    out = {"tokens": r["tokens"][idx], "steps": r["steps"][idx], "halt_probs": r["halt_probs"][idx],
           "trace": trace_rows, "trace_halt": trace_halt_rows,
           "compute_steps": r["steps"].reshape(B, K).sum(1).astype(np.int64),
           "valid": valid[np.arange(B), choice] if valid is not None else None,
           "rollout": choice.astype(np.int32), "agreement": agree}
    return out


def select_rollouts(rows: dict[str, np.ndarray | None], K: int, select: str = "halt", reject_invalid: bool = True
                    ) -> SolveResult:
    """One answer per puzzle from :meth:`Solver.run_rollouts` rows (K rollouts per puzzle): rule-passing
    rollouts first (``reject_invalid``), then the highest halting probability or the majority answer."""
    if select not in SELECT:
        raise ConfigError(f"select must be one of {SELECT}, got {select!r}")
    res = SolveResult(**_select(rows, K, select, reject_invalid, rows["trace"] is not None))
    if res.trace is not None and len(res.steps):
        assert res.trace_halt is not None   # set together with trace
        last = int(res.steps.max())
        res.trace, res.trace_halt = res.trace[:, :last], res.trace_halt[:, :last]
    res.answers = list(res.tokens)
    return res


def first_rollouts(rows: dict[str, np.ndarray | None], K: int, k: int) -> dict[str, np.ndarray | None]:
    """The rows of the first ``k`` of ``K`` rollouts of every puzzle (a K=k run with the same noise)."""
    assert rows["tokens"] is not None   # always set
    keep = np.arange(len(rows["tokens"])) % K < k
    return {name: (a[keep] if a is not None else None) for name, a in rows.items()}


def _guess_task(vocab: int, seq_len: int) -> str:
    """The task from the model's vocabulary and length when the checkpoint does not say."""
    from trm.tasks import infer_task
    return infer_task(vocab, seq_len)


def _config_of(d: Any, path: Path) -> Config:
    """The saved config of a checkpoint or export; a bad one is a CheckpointError naming the file."""
    try:
        return config_from_dict(d)
    except ConfigError as e:
        raise CheckpointError(f"{path}: its saved config is invalid ({e})") from None


def load(path: str | Path, device: str | torch.device = "auto", dtype: str = "trained", *,
         data: str | Path | None = None, task: str | None = None) -> Solver:
    """Load a trained model from an exported directory (model.safetensors + config.json), a run
    directory (uses its ``model/``, else its last checkpoint), a full-state checkpoint (``.pt``; EMA
    weights if present), or another implementation's checkpoint, imported on the fly
    (:mod:`trm.interop`: the official TRM/HRM ``step_N`` with ``all_config.yaml``, nano-trm's ``.ckpt``;
    ``data`` / ``task`` tell it the sequence length where the weights do not). ``device="auto"`` picks
    CUDA when available. ``dtype="trained"`` computes in the training precision unless the device
    emulates it (bf16 on a CPU without native bf16: then fp32; :func:`trm.runtime.resolve_trained_precision`);
    ``auto`` takes the fastest on the device; ``bfloat16`` or ``float32`` force one. ``Solver.precision``
    says which was used and why, ``Solver.trained_dtype`` the training one."""
    path = Path(path)
    device = resolve_device(device)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint (give a run directory, an exported model "
                              "directory, a .pt file, or an official / nano-trm checkpoint)")
    weights, cfg, info, names = _read_source(path, data, task)
    try:
        model = RecursiveReasoner(cfg.model)
    except Exception as e:  # noqa: BLE001 - a config that validates can still describe no buildable model
        raise CheckpointError(f"{path}: cannot build the model its config describes ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model config "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: {name} is a {type(tensor).__name__}, not a tensor")
        if expected[name].shape != tensor.shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, the config expects "
                                  f"{tuple(expected[name].shape)}")
    model.load_state_dict(weights)
    trained = cfg.model.forward_dtype
    precision = resolve_trained_precision(trained, dtype, device, hidden_size=cfg.model.hidden_size,
                                          seq_len=cfg.model.seq_len)
    cfg.model.forward_dtype = precision.dtype       # the model reads it at every call
    return Solver(model.to(device), cfg, info, device, precision, trained, identifiers=names)


def _read_source(path: Path, data_dir: str | Path | None, task: str | None
                 ) -> tuple[dict[str, torch.Tensor], Config, dict[str, Any], list[str] | None]:
    """(weights, config, dataset facts, puzzle-row names or None) of any source :func:`load` takes."""
    from trm.data.format import load_identifiers
    from trm.interop import is_foreign, read
    from trm.io import load_checkpoint, read_export
    if path.is_dir() and (path / "model" / "model.safetensors").is_file():
        path = path / "model"

    def foreign(loaded: Any = None):
        imported = read(path, data_dir=data_dir, task=task, loaded=loaded)
        for note in imported.source.get("notes", []):
            print(f"note: {path}: {note}", file=sys.stderr)
        return imported.weights, imported.config, imported.data, imported.identifiers

    if is_foreign(path):
        return foreign()
    names: list[str] | None = None
    if path.suffix == ".pt" or (path.is_dir() and (path / "checkpoints" / "last.pt").is_file()
                                and not (path / "model.safetensors").is_file()):
        state = load_checkpoint(path, map_location="cpu")
        if path.is_file() and not (isinstance(state, dict) and ("engine" in state or "config" in state)):
            return foreign(loaded=state)        # another implementation's file under a .pt name
        eng = state.get("engine") if isinstance(state, dict) else None
        if not isinstance(eng, dict) or not isinstance(eng.get("model"), dict) or "config" not in state:
            raise CheckpointError(f"{path}: not a trm training checkpoint (no config/engine state)")
        cfg = _config_of(state["config"], path)
        weights = dict(eng["model"])
        ema = eng.get("ema")
        if ema:
            shadow = ema.get("shadow") if isinstance(ema, dict) else None
            if not isinstance(shadow, dict):
                raise CheckpointError(f"{path}: the EMA state holds no 'shadow' weights")
            weights.update(shadow)
        data: dict[str, Any] = {"task": "", "grid_shape": None}
        data_path = Path(cfg.data.path)
        if cfg.data.path and (data_path / "train" / "dataset.json").is_file():
            from trm.data.format import read_metadata
            meta = read_metadata(data_path / "train")
            data = {"task": meta.task, "grid_shape": meta.grid_shape, "ignore_label_id": meta.ignore_label_id}
            if (data_path / "identifiers.json").is_file():
                names = load_identifiers(data_path)
        return weights, cfg, data, names
    weights, exported = read_export(path)
    if "config" not in exported:
        raise CheckpointError(f"{path}: config.json lacks the 'config' section of a trm export")
    cfg = _config_of(exported["config"], path)
    data = exported.get("data") or {}
    shape = data.get("grid_shape") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("task", ""), str) or not (
            shape is None or (isinstance(shape, list) and len(shape) == 2
                              and all(isinstance(v, int) and v > 0 for v in shape))):
        raise CheckpointError(f"{path}: config.json's 'data' must be an object with a task name and a "
                              f"grid_shape [H, W], got {data!r}"[:300])
    export_dir = path if path.is_dir() else path.parent
    if (export_dir / "identifiers.json").is_file():
        names = load_identifiers(export_dir)
    return weights, cfg, data, names


TRM = Solver   # the class's name before 2026-12 (it serves HRM and the ablations too)
