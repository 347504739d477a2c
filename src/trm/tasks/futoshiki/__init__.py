"""Futoshiki: an NxN Latin square (N = 4..6, default 5) with givens and inequality signs between
adjacent cells, one solution. The fourth task, written only against the plug-in API (docs/TASKS.md).

Tokens: a (2N-1)x(2N-1) layout flattened row-major; even (row, column) positions are cells (0 PAD
unused, 1 blank, 2..N+1 the digits 1..N), the others relations (N+2 none, N+3 ``<``, N+4 ``>``, N+5 ``^``
= upper < lower, N+6 ``v`` = upper > lower; the odd-odd corners always none). Vocabulary N+7, seq_len
(2N-1)^2: (11, 49), (12, 81), (13, 121) for N = 4, 5, 6. The label is the layout with every cell filled
(relations copied). Text form, solver, generator, symmetries and builder: :mod:`.data`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from trm.errors import PuzzleError
from trm.tasks.base import Task, defaults, print_solve_summary, read_puzzle_text, rollout_options, save_pictures

WHAT = "a Futoshiki: lines of cells ('.' blank) with '<'/'>' between cells and '^'/'v' lines between rows, or a file"
_DIMS = {n: (n + 7, (2 * n - 1) ** 2) for n in (4, 5, 6)}


class FutoshikiTask(Task):
    name = "futoshiki"
    legend = "givens black, blue digits filled, red wrong"
    summary = "generated Futoshiki puzzles (Latin squares with inequalities, unique solution)"
    puzzle_help = ("lines of N cells ('.' blank) with '<' '>' between cells and lines of '^' 'v' (upper < / > "
                   "lower) between rows ('|' also ends a line), a file holding them, or - for standard input")

    # -- data ------------------------------------------------------------------------------------
    def add_build_arguments(self, parser: argparse.ArgumentParser) -> None:
        from trm.tasks.futoshiki.data import build_futoshiki_dataset
        d = defaults(build_futoshiki_dataset)
        parser.add_argument("--size", type=int, default=d["size"], choices=(4, 5, 6),
                            help=f"grid side N (default {d['size']})")
        parser.add_argument("--train-size", type=int, default=d["train_size"],
                            help=f"training puzzles (default {d['train_size']})")
        parser.add_argument("--num-aug", type=int, default=d["num_aug"],
                            help=f"transformed versions per training puzzle besides the original (default "
                            f"{d['num_aug']}; 16 symmetries, distinct up to 15)")
        parser.add_argument("--test-size", type=int, default=d["test_size"],
                            help=f"held-out puzzles (default {d['test_size']})")
        parser.add_argument("--inequality-density", type=float, default=d["inequality_density"],
                            help="probability of a sign between two adjacent cells "
                            f"(default {d['inequality_density']})")
        parser.add_argument("--extra-givens", type=int, default=d["extra_givens"],
                            help="givens put back after removing all that uniqueness allows "
                            f"(default {d['extra_givens']}: minimal)")

    def build_options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"size": args.size, "train_size": args.train_size, "num_aug": args.num_aug,
                "test_size": args.test_size, "inequality_density": args.inequality_density,
                "extra_givens": args.extra_givens}

    def build(self, out_dir: str | Path, *, progress: bool = True, **options: Any) -> Path:
        from trm.tasks.futoshiki.data import build_futoshiki_dataset
        return build_futoshiki_dataset(out_dir, progress=progress, **options)

    def dims(self, build: dict[str, Any]) -> tuple[int, int]:
        from trm.tasks.futoshiki.data import build_futoshiki_dataset
        n = int(build.get("size") or defaults(build_futoshiki_dataset)["size"])
        return n + 7, (2 * n - 1) ** 2

    def recognises(self, vocab_size: int, seq_len: int) -> bool:
        return (vocab_size, seq_len) in _DIMS.values()

    # -- evaluation and pictures -----------------------------------------------------------------
    def metrics(self, ps, result, data_dir: Path | None = None) -> dict[str, float]:
        from trm.tasks.futoshiki.data import valid_tokens
        n = len(result.preds)
        if n == 0:
            return {}
        return {"valid_solution": float(valid_tokens(np.asarray(ps.inputs[:n]), np.asarray(result.preds)).mean())}

    def draw_example(self, inputs, pred, label, title=None, shape=None):
        from trm.tasks.futoshiki.data import decode, decode_cells
        from trm.tasks.futoshiki.pictures import draw_futoshiki
        p, _ = decode(inputs)
        truth = None if label is None else decode_cells(np.asarray(label)[None])[0]
        return draw_futoshiki(p, decode_cells(np.asarray(pred)[None])[0], truth=truth, title=title)

    def refinement(self, inputs, trace, halt, label, shape, title):
        from trm.tasks.futoshiki.data import decode, decode_cells
        from trm.tasks.futoshiki.pictures import futoshiki_refinement, refinement_frames
        p, _ = decode(inputs)
        boards = list(decode_cells(np.asarray(trace)))
        truth = decode_cells(np.asarray(label)[None])[0]
        strip = futoshiki_refinement(p, boards, list(halt), truth=truth, title=title)
        return strip, refinement_frames(p, boards, list(halt), truth=truth)

    # -- solving ---------------------------------------------------------------------------------
    def read_puzzle(self, arg: str) -> Any:
        from trm.tasks.futoshiki.data import parse_futoshiki
        return parse_futoshiki(read_puzzle_text(arg, WHAT))

    def encode(self, puzzle: Any, solver) -> np.ndarray:
        """Text or a :class:`~.data.Futoshiki` (a NamedTuple: give ``solver.solve`` a list of them)."""
        from trm.tasks.futoshiki.data import Futoshiki, encode, parse_futoshiki, size_of_seq_len
        if isinstance(puzzle, str):
            puzzle = parse_futoshiki(puzzle)
        if not isinstance(puzzle, Futoshiki):
            raise PuzzleError(f"a Futoshiki puzzle must be text or a Futoshiki(givens, h, v), got "
                              f"{type(puzzle).__name__}")
        n = size_of_seq_len(solver.seq_len)
        if puzzle.size != n:
            raise PuzzleError(f"this model solves {n}x{n} Futoshiki; the puzzle is {puzzle.size}x{puzzle.size}")
        return encode(puzzle)

    def decode(self, tokens: np.ndarray, solver) -> np.ndarray:
        from trm.tasks.futoshiki.data import decode_cells
        return decode_cells(np.asarray(tokens)[None])[0]

    def check(self, inputs: np.ndarray, answers: np.ndarray, solver) -> np.ndarray:
        from trm.tasks.futoshiki.data import valid_tokens
        return valid_tokens(np.asarray(inputs), np.asarray(answers))

    def solve_cli(self, solver, args: argparse.Namespace) -> int:
        from trm.tasks.futoshiki.data import check_solution, format_futoshiki, solve
        from trm.tasks.futoshiki.pictures import futoshiki_refinement, refinement_frames
        puzzle = args.puzzle
        if isinstance(puzzle, str):
            puzzle = self.read_puzzle(puzzle)
        draw = bool(getattr(args, "png", None) or getattr(args, "gif", None))
        res = solver.solve([puzzle], halting=args.halting, trace=draw, **rollout_options(args))
        answer = res.answers[0]
        valid = check_solution(puzzle, answer)
        print(format_futoshiki(puzzle, answer))
        exact = solve(puzzle, limit=2)
        unique = exact.num_solutions == 1
        several = "" if unique else (f"; note: the puzzle has {'no' if exact.num_solutions == 0 else 'several'} "
                                     "solutions")
        print_solve_summary(res, args, "valid solution" if valid else "NOT valid solution", suffix=several)
        if draw:
            boards = [self.decode(t, solver) for t in res.trace[0]]
            truth = exact.solution if unique else None
            halts = list(res.trace_halt[0])
            save_pictures(args, futoshiki_refinement(puzzle, boards, halts, truth=truth),
                          refinement_frames(puzzle, boards, halts, truth=truth))
        return 0 if valid else 3
