"""ARC with a trained TRM: read a task, fit its puzzle embedding (test-time adaptation), predict every
augmented version of its test inputs, undo the augmentations and vote (spec sections 3, 6 and 7).

    trm solve arc TASK.json --checkpoint RUN_DIR [--versions 32 --adapt-steps 100] [--png task.png]

A task the model never saw has no trained puzzle embedding. :func:`adapt` plans ``versions`` augmented
versions of it (a dihedral transform and a permutation of colours 1..9, the identity first, deduplicated
as the dataset builder does), gives each version one fresh zero-initialised embedding row, and trains
only those rows, with every weight of the model frozen, on the versions' demonstration pairs with the
training loss of one supervision step (answer cross-entropy + 0.5 x halting BCE, deep supervision: one
optimizer step per supervision step, the carry detached between steps). The optimizer is the training
run's sparse sign-SGD (its lr and weight decay by default) or Adam. The test inputs of every version
are then solved with the fitted rows, each answer is cropped, un-augmented and voted on with
:class:`trm.tasks.arc.scoring.ArcVoter` (votes, then mean halting probability). A task whose versions are in the
checkpoint's own identifier table (its dataset is on disk) uses the trained rows instead
(``adapt="auto"``).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from trm.errors import CheckpointError, PuzzleError
from trm.tasks.arc import ADAPT_STEPS, VERSIONS
from trm.tasks.arc.data import (CANVAS, SEP, VOCAB_SIZE, encode_versions, grid_array, parse_version_name,
                                plan_versions, version_name)

Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class ArcTask:
    task_id: str
    demos: list[Pair]
    tests: list[tuple[np.ndarray, np.ndarray | None]]     # test output None when the file does not hold it

    def to_dict(self) -> dict:
        return {"id": self.task_id,
                "train": [{"input": a.tolist(), "output": b.tolist()} for a, b in self.demos],
                "test": [{"input": a.tolist(), **({"output": b.tolist()} if b is not None else {})}
                         for a, b in self.tests]}


@dataclass
class Adaptation:
    """How a task's puzzle embeddings were obtained."""

    names: list[str]                   # version names "<task>|||t<k>|||<perm>", identity first
    ids: np.ndarray                    # [V] rows of ``weight`` (fitted) or of the model's table (trained)
    source: str                        # "fitted" | "trained" | "none" (the model has no puzzle embedding)
    weight: torch.Tensor | None = None  # [V, dim] the fitted rows
    losses: list[float] = field(default_factory=list)   # loss per optimizer step
    demo_exact: float = float("nan")   # demonstrations right after the last adaptation step


# ---------------------------------------------------------------------------------------------------
# Reading tasks


def read_tasks(source: Any) -> list[ArcTask]:
    """Tasks from a task JSON path, a task dict, a mapping ``{task_id: task}`` or a list of those."""
    if isinstance(source, (list, tuple)):
        if not source:
            raise PuzzleError("no ARC tasks given (an empty list)")
        return [t for s in source for t in read_tasks(s)]
    if isinstance(source, ArcTask):
        return [source]
    name = "task"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise PuzzleError(f"{path}: no such ARC task file")
        try:
            source = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PuzzleError(f"{path}: not valid JSON ({e})") from None
        name = path.stem
    if not isinstance(source, dict):
        raise PuzzleError(f"{name}: an ARC task must be a JSON object with 'train' and 'test' lists, "
                          f"got {type(source).__name__}")
    if "train" in source or "test" in source:
        return [parse_task(source, str(source.get("id", name)))]
    if not source:
        raise PuzzleError(f"{name}: empty JSON object (expected an ARC task with 'train' and 'test')")
    return [parse_task(task, str(tid)) for tid, task in source.items()]


def parse_task(task: Any, task_id: str = "task") -> ArcTask:
    """Validate one task -> :class:`ArcTask`; every fault raises PuzzleError naming the task and pair.
    Demonstrations need inputs and outputs; test pairs need inputs (outputs are optional)."""
    task_id = task_id.replace(SEP, "_") or "task"
    where = f"task {task_id!r}"
    if not isinstance(task, dict):
        raise PuzzleError(f"{where}: expected an object with 'train' and 'test' lists")
    for split in ("train", "test"):
        if split not in task:
            raise PuzzleError(f"{where}: missing key {split!r}")
    for split in ("train", "test"):
        if not isinstance(task[split], list) or not task[split]:
            raise PuzzleError(f"{where}: {split!r} must be a non-empty list of pairs")
    demos: list[tuple[np.ndarray, np.ndarray | None]] = []
    tests: list[tuple[np.ndarray, np.ndarray | None]] = []
    for split, out in (("train", demos), ("test", tests)):
        for i, pair in enumerate(task[split]):
            if not isinstance(pair, dict) or "input" not in pair:
                raise PuzzleError(f"{where} {split} pair {i}: expected an object with 'input' (and 'output')")
            if split == "train" and pair.get("output") is None:
                what = "'output' is null" if "output" in pair else "missing key 'output'"
                raise PuzzleError(f"{where} train pair {i}: {what} (demonstrations need outputs)")
            a = grid_array(pair["input"], f"{where} {split} pair {i} input")
            b = pair.get("output")
            b = None if b is None else grid_array(b, f"{where} {split} pair {i} output")
            out.append((a, b))
    return ArcTask(task_id, [(a, b) for a, b in demos if b is not None], tests)


# ---------------------------------------------------------------------------------------------------
# Test-time adaptation


class _Rows(nn.Module):
    """Stands in for the model's puzzle-embedding table: row ``i`` of ``weight`` for id ``i``."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight
        self.num_ids, self.dim = weight.shape

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight.index_select(0, ids.long())


@contextlib.contextmanager
def task_embedding(model: nn.Module, weight: torch.Tensor | None) -> Iterator[None]:
    """Use ``weight`` [V, dim] as the model's puzzle-embedding table inside the block (None: no change)."""
    if weight is None:
        yield
        return
    old = model.puzzle_emb
    model.puzzle_emb = _Rows(weight)
    try:
        yield
    finally:
        model.puzzle_emb = old


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def _check_arc_model(solver) -> None:
    m = solver.model.cfg
    if (m.vocab_size, m.seq_len) != (VOCAB_SIZE, CANVAS * CANVAS):
        raise CheckpointError(f"this checkpoint is not an ARC model (vocab {m.vocab_size}, sequence "
                              f"{m.seq_len}; ARC needs vocab {VOCAB_SIZE} on a {CANVAS}x{CANVAS} canvas)")


def plan_task_versions(task: ArcTask, versions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``versions`` distinct (t, colour permutation) pairs, the identity first (as the builder)."""
    grids = [g for p in task.demos for g in p] + [a for a, _ in task.tests]
    return plan_versions(grids, versions, np.random.default_rng([seed, 7]))


def _trained_versions(solver, task_id: str) -> tuple[list[str], np.ndarray] | None:
    """The task's versions in the checkpoint's identifier table, when its dataset is on disk."""
    from trm.data.format import load_identifiers
    from trm.errors import DatasetError
    path = Path(solver.config.data.path or "")
    if solver.model.puzzle_emb is None or not (path / "identifiers.json").is_file():
        return None
    try:
        idents = load_identifiers(path)
    except DatasetError:
        return None
    if len(idents) != solver.model.puzzle_emb.num_ids:
        return None
    prefix = task_id + SEP
    hits = [(i, n) for i, n in enumerate(idents) if n.startswith(prefix)]
    if not hits:
        return None
    return [n for _, n in hits], np.array([i for i, _ in hits], np.int32)


def adapt(solver, task: ArcTask, *, versions: int = VERSIONS, steps: int = ADAPT_STEPS, lr: float | None = None,
          weight_decay: float | None = None, optimizer: str = "signsgd", batch_size: int = 16,
          sup_steps: int | None = None, seed: int = 0, progress: bool = False) -> Adaptation:
    """Fit one fresh embedding row per version of ``task`` on its demonstrations, all weights frozen.

    ``steps`` optimizer steps; each batch of ``batch_size`` (version, demonstration) examples is run
    for up to ``sup_steps`` (default N_sup) supervision steps, one optimizer step each, rows whose
    halting logit is > 0 leaving the unroll (as in training). ``optimizer="signsgd"`` (default: the
    training run's puzzle-embedding lr and weight decay) or ``"adam"`` (lr default 1e-2).
    """
    from trm.model.losses import to_labels
    from trm.model.losses import IGNORE_INDEX, halting_bce, sequence_loss
    from trm.model.puzzle_emb import sign_sgd_rows_
    from trm.model.unroll import Unroll
    _check_arc_model(solver)
    if optimizer not in ("signsgd", "adam"):
        raise ValueError(f"optimizer must be 'signsgd' or 'adam', got {optimizer!r}")
    if versions < 1 or steps < 0 or batch_size < 1:
        raise ValueError("versions and batch_size must be >= 1 and steps >= 0")
    model, dev, cfg = solver.model, solver.device, solver.config
    ts, perms = plan_task_versions(task, versions, seed)
    names = [version_name(task.task_id, t, p) for t, p in zip(ts, perms)]
    for n in names:
        parse_version_name(n)
    V = len(names)
    if model.puzzle_emb is None:
        return Adaptation(names, np.zeros(V, np.int32), "none")
    rng = np.random.default_rng([seed, 11])
    inputs, labels = encode_versions(task.demos, ts, perms, shift=True, rng=rng)
    version_of = np.repeat(np.arange(V), len(task.demos))
    labels_t = to_labels(labels, 0)                   # PAD (0) is not supervised
    weight = torch.zeros(V, model.cfg.puzzle_emb_dim, device=dev, requires_grad=True)
    if optimizer == "adam":
        opt = torch.optim.Adam([weight], lr=lr or 1e-2)
    lr = lr or (cfg.train.puzzle_emb_lr if optimizer == "signsgd" else 1e-2)
    wd = cfg.train.puzzle_emb_weight_decay if weight_decay is None else weight_decay
    cap = sup_steps or model.cfg.N_sup
    losses: list[float] = []
    exact_last = np.zeros(len(inputs), bool)
    order = rng.permutation(len(inputs))
    pos = 0
    from tqdm.auto import tqdm
    bar = tqdm(total=steps, desc=f"adapting {task.task_id}", disable=not progress, leave=False)
    model.eval()
    with task_embedding(model, weight), _frozen(model), torch.enable_grad():
        while len(losses) < steps:
            if pos + batch_size > len(order):
                order, pos = rng.permutation(len(inputs)), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            x_tok = torch.from_numpy(inputs[idx].astype(np.int32)).to(dev)
            lab = labels_t[idx].to(dev)
            pid = torch.from_numpy(version_of[idx]).to(dev)
            run = Unroll(model, x_tok, pid)
            for _ in range(cap):
                active = run.active
                out = run.step()
                seq = sequence_loss(out.logits, lab[active], cfg.train.loss, IGNORE_INDEX)
                loss = (seq.loss.sum().float() + cfg.train.halt_loss_weight * halting_bce(out.q_halt, seq.exact)
                        ) / len(idx)
                weight.grad = None
                loss.backward()
                with torch.no_grad():
                    if optimizer == "adam":
                        opt.step()
                    else:
                        grad: torch.Tensor | None = weight.grad     # set by loss.backward()
                        assert grad is not None
                        rows = torch.nonzero(grad.abs().sum(1) > 0).flatten()
                        sign_sgd_rows_(weight, rows, grad[rows], lr, wd)
                losses.append(float(loss.detach()))
                bar.update(1)
                exact_last[idx[active.cpu().numpy()]] = seq.exact.detach().cpu().numpy()
                run.drop(run.halts(out).detach())
                if len(losses) >= steps or run.finished:
                    break
    bar.close()
    return Adaptation(names, np.arange(V, dtype=np.int32), "fitted", weight.detach(), losses,
                      float(exact_last.mean()) if steps else float("nan"))


# ---------------------------------------------------------------------------------------------------
# Solving


def solve_tasks(solver, tasks: Any, *, halting: str = "fixed", max_steps: int | None = None, trace: bool = False,
                batch_size: int = 256, halt_threshold: float = 0.5, rollouts: int = 1, noise: float = 0.0,
                noise_on: str = "z", noise_at: str = "both", select: str = "halt", seed: int = 0,
                versions: int = VERSIONS, adapt_mode: str | bool = "auto", adapt_steps: int = ADAPT_STEPS,
                adapt_lr: float | None = None, adapt_optimizer: str = "signsgd", adapt_batch_size: int = 16,
                progress: bool = False):
    """Solve ARC tasks; one result row per test input (tasks in order).

    ``answers[i]``: the top-voted grid (None when no version produced a croppable grid); ``extra``:
    ``task_ids``, ``test_index``, ``attempts`` (top-2 grids), ``votes``, ``rank`` (0-based rank of the
    true output among the candidates when the task file holds it, else None; -1 when absent),
    ``adaptations``. ``tokens``, ``steps``, ``halt_probs`` and ``trace`` are those of the identity
    version; ``compute_steps`` counts the supervision steps over every version and rollout.
    """
    from trm.tasks.arc.scoring import ArcVoter, _key
    from trm.solve import SolveResult
    _check_arc_model(solver)
    task_list = read_tasks(tasks)
    rows: list[dict] = []
    adaptations = []
    for task in task_list:
        known = _trained_versions(solver, task.task_id) if adapt_mode == "auto" else None
        if known is not None:
            names, ids = known
            ad = Adaptation(names, ids, "trained")
        elif adapt_mode is False or adapt_mode == "none":
            ts, perms = plan_task_versions(task, versions, seed)
            ad = Adaptation([version_name(task.task_id, t, p) for t, p in zip(ts, perms)],
                            np.zeros(len(ts), np.int32), "none")
        else:
            ad = adapt(solver, task, versions=versions, steps=adapt_steps, lr=adapt_lr, optimizer=adapt_optimizer,
                       batch_size=adapt_batch_size, seed=seed, progress=progress)
        adaptations.append(ad)
        parsed = [parse_version_name(n) for n in ad.names]
        ts = np.array([t for _, t, _ in parsed], np.uint8)
        perms = np.stack([p for _, _, p in parsed])
        nt = len(task.tests)
        tokens, _ = encode_versions([(a, a) for a, _ in task.tests], ts, perms, shift=False)
        ids = np.repeat(ad.ids, nt)
        with task_embedding(solver.model, ad.weight):
            res = solver.solve_tokens(tokens, puzzle_ids=ids, halting=halting, max_steps=max_steps, trace=trace,
                                      batch_size=batch_size, halt_threshold=halt_threshold, rollouts=rollouts,
                                      noise=noise, noise_on=noise_on, noise_at=noise_at, select=select, seed=seed)
        voter = ArcVoter()
        for r in range(len(tokens)):
            voter.add(ad.names[r // nt], r % nt, res.tokens[r], float(res.halt_probs[r]))
        for j, (_, truth) in enumerate(task.tests):
            ranked = voter.ranked(task.task_id, j)
            rank = None
            if truth is not None:
                keys = [_key(c.grid) for c in ranked]
                rank = keys.index(_key(truth)) if _key(truth) in keys else -1
            rows.append(dict(task_id=task.task_id, test_index=j, answer=ranked[0].grid if ranked else None,
                             attempts=[c.grid for c in ranked[:2]], votes=[c.votes for c in ranked[:2]],
                             halt=ranked[0].mean_halt if ranked else 0.0, rank=rank, versions=len(ad.names),
                             tokens=res.tokens[j], steps=int(res.steps[j]),
                             compute=int(res.compute_steps[j::nt].sum()),
                             trace=None if res.trace is None else res.trace[j],
                             trace_halt=None if res.trace_halt is None else res.trace_halt[j]))
    out = SolveResult(tokens=np.stack([r["tokens"] for r in rows]), steps=np.array([r["steps"] for r in rows]),
                      halt_probs=np.array([r["halt"] for r in rows], np.float32),
                      answers=[r["answer"] for r in rows],
                      compute_steps=np.array([r["compute"] for r in rows]))
    if trace:
        last = max(r["trace"].shape[0] for r in rows)
        out.trace = np.stack([_pad_steps(r["trace"], last) for r in rows])
        out.trace_halt = np.stack([_pad_steps(r["trace_halt"], last) for r in rows])
    out.extra = {k: [r[k] for r in rows] for k in ("task_id", "test_index", "attempts", "votes", "rank", "versions")}
    out.extra["adaptations"] = adaptations
    out.extra["tasks"] = task_list
    return out


def _pad_steps(a: np.ndarray, n: int) -> np.ndarray:
    """Repeat the last step so every trace has ``n`` steps."""
    return np.concatenate([a, np.repeat(a[-1:], n - len(a), axis=0)]) if len(a) < n else a[:n]


# ---------------------------------------------------------------------------------------------------
# Command line


def _grid_text(g: np.ndarray | None) -> str:
    if g is None:
        return "    (no grid)"
    return "\n".join("    " + "".join(str(int(v)) for v in row) for row in g)


def solve_arc_cli(solver, args) -> int:
    """``trm solve arc TASK.json``: adapt, predict, vote; print the top-2 attempts per test input. Returns
    the exit code: 3 when a known answer is not solved at pass@2."""
    from trm import viz
    from trm.tasks.arc.pictures import draw_arc_task, refinement_frames
    steps = getattr(args, "adapt_steps", None)
    opts: dict[str, Any] = dict(versions=getattr(args, "versions", None) or VERSIONS,
                                adapt_steps=ADAPT_STEPS if steps is None else steps,
                                adapt_lr=getattr(args, "adapt_lr", None), seed=getattr(args, "seed", 0) or 0,
                                max_steps=getattr(args, "max_steps", None))
    res = solve_tasks(solver, args.puzzle, halting=args.halting, trace=bool(args.gif), rollouts=args.rollouts,
                      noise=args.noise, select=args.select, progress=True, **opts)
    ex = res.extra
    solved_all, known = True, False
    for i, (tid, j) in enumerate(zip(ex["task_id"], ex["test_index"])):
        ad = ex["adaptations"][[t.task_id for t in ex["tasks"]].index(tid)]
        if j == 0:
            how = {"fitted": f"fitted {len(ad.names)} task embeddings in {len(ad.losses)} steps (loss "
                             f"{ad.losses[0]:.3f} -> {ad.losses[-1]:.3f}, demonstrations right {ad.demo_exact:.0%})"
                   if ad.losses else f"{len(ad.names)} versions, embeddings not fitted (0 steps)",
                   "trained": f"{len(ad.names)} versions with the checkpoint's trained embeddings",
                   "none": f"{len(ad.names)} versions (the model has no puzzle embedding)"}[ad.source]
            print(f"task {tid}: {how}")
        print(f"  test {j + 1}:")
        for k, (g, v) in enumerate(zip(ex["attempts"][i], ex["votes"][i])):
            print(f"   attempt {k + 1} ({v}/{ex['versions'][i]} votes):")
            print(_grid_text(g))
        if not ex["attempts"][i]:
            print("   no attempt: no version produced a grid")
        rank = ex["rank"][i]
        if rank is not None:
            known = True
            ok = 0 <= rank < 2
            solved_all &= ok
            print(f"   correct answer: {'rank ' + str(rank + 1) if rank >= 0 else 'not among the candidates'}"
                  f" ({'solved' if ok else 'not solved'} at pass@2)")
    if args.png:
        for t_i, task in enumerate(ex["tasks"]):
            preds = [ex["attempts"][i] or None for i, tid in enumerate(ex["task_id"]) if tid == task.task_id]
            img = draw_arc_task(task.to_dict(), preds)
            path = Path(args.png) if len(ex["tasks"]) == 1 else Path(args.png).with_name(
                f"{Path(args.png).stem}-{task.task_id}{Path(args.png).suffix or '.png'}")
            viz.save_png(img, path)
            print(f"picture: {path}")
    if args.gif:
        frames = refinement_frames(res.trace[0], res.trace_halt[0], int(res.steps[0]))
        viz.refinement_gif(frames, args.gif)
        print(f"animation: {args.gif} (identity version of {ex['task_id'][0]} test 1)")
    return 3 if known and not solved_all else 0
