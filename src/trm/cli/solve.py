"""``trm solve TASK PUZZLE``: solve one puzzle (or task) with a trained model; each task adds its own
options and prints its own answer."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub) -> None:
    from trm.tasks import REGISTRY
    s = sub.add_parser("solve", help="solve one puzzle (or task) with a trained model: trm solve TASK PUZZLE")
    kinds = s.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)       # the options of every task's solver
    common.add_argument("--checkpoint", default=None, help="run dir, exported model dir or .pt, or an official "
                        "step_N / nano-trm .ckpt (default: the example model shipped with trm)")
    common.add_argument("--data", default=None, help="with another implementation's checkpoint: the dataset it was "
                        "trained on, for the facts its weights do not record (sequence length, grid shape)")
    common.add_argument("--halting", default="adaptive", choices=("fixed", "adaptive"),
                        help="fixed: N_sup supervision steps (the paper); adaptive: stop when the halting head says so")
    common.add_argument("--max-steps", type=int, default=None, help="cap on supervision steps (default N_sup)")
    common.add_argument("--png", default=None, help="draw the refinement, one frame per supervision step (or the "
                        "task with its predicted attempts)")
    common.add_argument("--gif", default=None, help="animated refinement")
    common.add_argument("--rollouts", type=int, default=1, help="K rollouts per puzzle (test-time scaling)")
    common.add_argument("--noise", type=float, default=0.0, help="noise scale on the latent z, relative to its RMS")
    common.add_argument("--noise-at", default="both", choices=("start", "every", "both"),
                        help="add the noise to the initial state, at every supervision step, or both")
    common.add_argument("--select", default="halt", choices=("halt", "vote"),
                        help="keep the rollout with the highest halting probability, or the majority answer")
    common.add_argument("--verify", action="store_true", help="tasks with a rule check: adaptive halting stops "
                        "only on an answer that passes it, and a puzzle's rollouts stop once one of them passes")
    common.add_argument("--seed", type=int, default=0, help="seed of the noise (and of augmented versions)")
    common.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    common.add_argument("--dtype", default="trained", choices=("trained", "auto", "bfloat16", "float32"),
                        help="compute precision (default trained: the model's own, or fp32 where this device "
                        "emulates bf16; auto: the fastest here)")
    common.add_argument("--verbose", "-v", action="store_true",
                        help="say which model, device and precision are used")
    for task in REGISTRY.values():
        k = kinds.add_parser(task.name, parents=[common], help=task.puzzle_help)
        k.add_argument("puzzle", help=task.puzzle_help or "the puzzle")
        task.add_solve_arguments(k)


def run(args) -> None:
    from trm.tasks import get
    task = get(args.task)
    args.puzzle = task.read_puzzle(args.puzzle)     # parse and check first: no torch, no model for a bad input
    for out in (args.png, args.gif):
        if out:
            _check_output_path(out)
    ckpt = args.checkpoint or _example_checkpoint(args.task)
    from trm.solve import load
    solver = load(ckpt, device=args.device, dtype=args.dtype, data=args.data, task=args.task)
    if args.verbose:
        print(f"model: {ckpt}\ndevice: {solver.device}\n{solver.describe_precision()}", file=sys.stderr, flush=True)
    if solver.task and solver.task != args.task:
        from trm.errors import CheckpointError
        raise CheckpointError(f"{ckpt} was trained on {solver.task}, not {args.task}")
    code = task.solve_cli(solver, args)
    if code:
        sys.exit(code)


def _example_checkpoint(task: str) -> str:
    from importlib import resources

    from trm.errors import CheckpointError
    path = Path(str(resources.files("trm") / "assets" / f"{task}-cpu"))
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"no example {task} checkpoint ships with trm; pass --checkpoint RUN_DIR")
    return str(path)


def _check_output_path(path: str) -> None:
    """Refuse an output file that cannot be written (a directory, under a file, read-only) before any work."""
    from trm.errors import TRMError
    p = Path(path)
    if p.is_dir():
        raise TRMError(f"{path}: is a directory (give a file name for the picture)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise TRMError(f"{path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise TRMError(f"{path}: cannot write there (permission denied or a read-only disk)")
