"""The ``Task`` protocol: what the CLI, solver, evaluator, report and benchmarks ask of a puzzle type.

The engine and the evaluator only see token arrays ``[examples, seq_len]``; a task turns puzzles into
tokens and back, builds its datasets, scores and checks answers and draws them. Every method has a
default, so a new task writes only what it has (see docs/TASKS.md). Tasks import their heavy modules
inside the methods: the registry stays cheap to import.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trm.errors import ConfigError, PuzzleError

if TYPE_CHECKING:
    from PIL import Image

    from trm.data.format import PuzzleSet
    from trm.solve import SolveResult, Solver


def grid_shape(seq_len: int, shape: Any = None) -> tuple[int, int]:
    """The (H, W) of a grid task: the dataset's ``grid_shape`` when it has one, else the square of
    ``seq_len`` cells (the one place that takes sqrt(seq_len))."""
    if shape:
        return int(shape[0]), int(shape[1])
    side = int(round(seq_len ** 0.5))
    return side, seq_len // max(side, 1)


def read_puzzle_text(puzzle: Any, what: str = "a puzzle or a file holding one") -> Any:
    """``-`` -> standard input; a Path, or a one-line string naming a file -> the file's text; puzzle text
    and arrays unchanged.
    A directory, an unreadable or non-UTF-8 file, or a string that looks like a path (a ``/`` or a file
    extension) but names no file -> PuzzleError."""
    if isinstance(puzzle, str) and puzzle == "-":
        return sys.stdin.read()
    if not (isinstance(puzzle, Path) or (isinstance(puzzle, str) and "\n" not in puzzle and 0 < len(puzzle) < 4096)):
        return puzzle
    p = Path(puzzle)
    if p.is_dir():
        raise PuzzleError(f"{puzzle}: is a directory (give {what})")
    if p.is_file():
        try:
            return p.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise PuzzleError(f"{puzzle}: not a text file (not UTF-8)") from None
        except OSError as e:
            raise PuzzleError(f"{puzzle}: cannot read the puzzle file ({e.strerror or e})") from None
    if isinstance(puzzle, Path) or "/" in puzzle or re.search(r"\.[A-Za-z][A-Za-z0-9]*$", puzzle):
        raise PuzzleError(f"{puzzle}: no such file (give {what})")
    return puzzle


class Task:
    """A puzzle type. Subclasses set ``name`` and ``summary`` and override what they support."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""             # one line for `trm data --help` and `trm solve --help`
    puzzle_help: ClassVar[str] = ""         # what `trm solve NAME PUZZLE` takes
    submission: ClassVar[bool] = False      # the test split can be written as a competition submission
    trace_rows: ClassVar[int] = 128         # held-out puzzles traced for the report's refinement picture
    legend: ClassVar[str] = "cells that differ from the label outlined red"   # how pictures mark mistakes

    # -- data ------------------------------------------------------------------------------------
    def add_build_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The task's own options of ``trm data NAME`` (``--out --seed --workers --force`` are shared)."""

    def build_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """``trm data`` arguments -> keyword arguments of :meth:`build` (the ``data.build`` mapping)."""
        return {}

    def build(self, out_dir: str | Path, *, progress: bool = True, **options: Any) -> Path:
        raise ConfigError(f"task {self.name!r} has no dataset builder")

    def dims(self, build: dict[str, Any]) -> tuple[int, int] | None:
        """(vocab_size, seq_len) of the dataset a ``data.build`` mapping would give, without building it."""
        return None

    def recognises(self, vocab_size: int, seq_len: int) -> bool:
        """True when a dataset that names no task (the public builders') is this task's."""
        return False

    # -- evaluation ------------------------------------------------------------------------------
    def metrics(self, ps: PuzzleSet, result: Any, data_dir: Path | None = None) -> dict[str, float]:
        """Task metrics on top of exact/cell accuracy, from ``result.preds`` (the first rows of ``ps``)."""
        return {}

    def make_submission(self, ps: PuzzleSet, result: Any, data_dir: Path) -> dict | None:
        """The competition submission of an evaluated test split (tasks with ``submission``)."""
        return None

    def canonical_identifier(self, name: str) -> str:
        """One spelling of a puzzle identifier, so that two builders' names of the same puzzle compare
        equal (a model's puzzle rows are matched to a dataset by name)."""
        return name

    # -- pictures --------------------------------------------------------------------------------
    def draw_example(self, inputs: np.ndarray, pred: np.ndarray, label: np.ndarray | None,
                     title: str | None = None, shape: Any = None) -> Image.Image:
        """One prediction as a picture (input, answer, mistakes against ``label``)."""
        from trm import viz
        h, w = grid_shape(len(inputs), shape)
        truth = None if label is None else np.asarray(label).reshape(h, w)
        return viz.draw_token_grid(np.asarray(pred).reshape(h, w), truth=truth, title=title)

    def refinement(self, inputs: np.ndarray, trace: np.ndarray, halt: np.ndarray, label: np.ndarray,
                   shape: Any, title: str) -> tuple[Image.Image, list[Image.Image]]:
        """(strip, GIF frames) of one puzzle's answer after every supervision step."""
        from trm import viz
        frames = [self.draw_example(inputs, t, label, f"step {k + 1}  halt p={float(p):.2f}", shape)
                  for k, (t, p) in enumerate(zip(trace, halt))]
        return viz.refinement_strip(frames, [""] * len(frames), title=title), frames

    # -- solving ---------------------------------------------------------------------------------
    def add_solve_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The task's own options of ``trm solve NAME`` (the shared ones: rollouts, noise, halting, ...)."""

    def read_puzzle(self, arg: str) -> Any:
        """The CLI's puzzle argument (text, a file or ``-``) -> a puzzle, checked before the model loads."""
        return arg

    def encode(self, puzzle: Any, solver: Solver) -> np.ndarray:
        """One puzzle -> [seq_len] input tokens; PuzzleError when malformed or of the wrong size."""
        raise PuzzleError(f"cannot encode a puzzle for task {self.name!r}; pass token rows to solve_tokens()")

    def decode(self, tokens: np.ndarray, solver: Solver) -> Any:
        return tokens

    def check(self, inputs: np.ndarray, answers: np.ndarray, solver: Solver) -> np.ndarray | None:
        """Per row: does the answer pass the task's rules? None for tasks without a cheap check."""
        return None

    def solve(self, solver: Solver, puzzles: Any, **options: Any) -> SolveResult | None:
        """A task-specific solving path (ARC: whole tasks, many versions); None: the generic token path."""
        return None

    def solve_cli(self, solver: Solver, args: argparse.Namespace) -> int:
        """``trm solve``: print the answer (and pictures); returns the exit code (3: not a valid answer)."""
        res = solver.solve(args.puzzle, halting=args.halting, trace=False, **rollout_options(args))
        print(res.answers[0])
        return 0


def add_csv_arguments(parser: argparse.ArgumentParser) -> None:
    """``--source generate | csv PATH`` and ``--csv-test``: a generated dataset or the public CSV files."""
    parser.add_argument("--source", default=["generate"], nargs="+", metavar="SOURCE",
                        help="generate | csv PATH | csv:PATH (a directory with train.csv and test.csv, or the "
                        "train CSV)")
    parser.add_argument("--csv-test", default=None, help="test CSV (default: test.csv beside the train CSV)")


def csv_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--source`` / ``--csv-test`` (:func:`add_csv_arguments`) -> the builder's source options."""
    source, csv_test = args.source, args.csv_test
    if isinstance(source, list):            # `--source csv PATH` (two words) or `--source csv:PATH`
        if len(source) > 2 or (len(source) == 2 and source[0] != "csv"):
            raise ConfigError(f"--source takes 'generate', 'csv PATH' or 'csv:PATH', got {' '.join(source)!r}")
        source = ":".join(source) if len(source) == 2 else source[0]
    if source == "generate":
        return {"source": "generate"}
    if source.startswith("csv"):
        path = source[3:].lstrip(":= ") or None
        if not path:
            raise ConfigError("--source csv needs a path: --source csv:PATH (a train CSV or a directory "
                              "holding train.csv and test.csv)")
        p = Path(path)
        train = p / "train.csv" if p.is_dir() else p
        test = Path(csv_test) if csv_test else train.with_name("test.csv")
        return {"source": "csv", "csv_train": str(train), "csv_test": str(test)}
    raise ConfigError(f"--source must be 'generate' or 'csv:PATH', got {source!r}")


def defaults(func: Any) -> dict[str, Any]:
    """A function's keyword defaults: CLI flags take theirs from the builder, never restate them."""
    import inspect
    return {k: v.default for k, v in inspect.signature(func).parameters.items()
            if v.default is not inspect.Parameter.empty}


def rollout_options(args: argparse.Namespace) -> dict[str, Any]:
    """The solver options shared by every task's ``trm solve`` (rollouts, noise, verification)."""
    verify = bool(getattr(args, "verify", False))
    return {"rollouts": args.rollouts, "noise": args.noise, "select": args.select,
            "noise_at": getattr(args, "noise_at", "both"), "seed": getattr(args, "seed", 0),
            "max_steps": getattr(args, "max_steps", None), "require_valid": verify, "stop_on_valid": verify}


def print_solve_summary(res: SolveResult, args: argparse.Namespace, verdict: str, suffix: str = "") -> None:
    """The line after the answer: verdict, steps, halting probability (and the rollouts' agreement)."""
    print(f"{verdict}; {int(res.steps[0])} supervision step(s); halting probability "
          f"{res.halt_probs[0]:.2f}{suffix}")
    if args.rollouts > 1:
        assert res.rollout is not None and res.agreement is not None and res.compute_steps is not None  # selected
        print(f"rollout {int(res.rollout[0])} of {args.rollouts} chosen (select={args.select}, noise {args.noise}); "
              f"{res.agreement[0]:.0%} of the rollouts agree; {int(res.compute_steps[0])} supervision steps in all")


def save_pictures(args: argparse.Namespace, strip: Any, frames: list) -> None:
    """``--png`` / ``--gif`` of ``trm solve`` (paths were checked before the model loaded)."""
    from trm import viz
    if getattr(args, "png", None):
        viz.save_png(strip, args.png)
        print(f"picture: {args.png}")
    if getattr(args, "gif", None):
        viz.refinement_gif(frames, args.gif)
        print(f"animation: {args.gif}")


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
