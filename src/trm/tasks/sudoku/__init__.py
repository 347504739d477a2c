"""Sudoku (Sudoku-Extreme; spec section 6): 81 cells, vocabulary 11 (0 PAD, 1 blank, 2..10 digits 1..9),
or 4x4 boards (16 cells, vocabulary 6) for tests. Tokens, generator and builder in :mod:`.data`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from trm.errors import PuzzleError
from trm.tasks.base import (Task, add_csv_arguments, csv_options, defaults, grid_shape, print_solve_summary,
                            read_puzzle_text, rollout_options, save_pictures)


class SudokuTask(Task):
    name = "sudoku"
    legend = "blue digits filled, red wrong"
    summary = "generated puzzles or the Sudoku-Extreme CSV files"
    puzzle_help = "a Sudoku: 81 characters ('.' or '0' blank), a file holding them, or - for standard input"

    def add_build_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_csv_arguments(parser)
        from trm.tasks.sudoku.data import DIFFICULTIES, build_sudoku_dataset
        d = defaults(build_sudoku_dataset)
        parser.add_argument("--difficulty", default=d["difficulty"], choices=tuple(DIFFICULTIES),
                            help="generated puzzles: beginner (45 givens, singles suffice), easy (40), medium (32), "
                            "hard (minimal, needs guessing), extreme (minimal, rating >= 10); "
                            f"default {d['difficulty']}")
        parser.add_argument("--size", type=int, default=d["size"], choices=(4, 9),
                            help=f"grid side (default {d['size']})")
        parser.add_argument("--train-size", type=int, default=d["train_size"],
                            help=f"training puzzles (default {d['train_size']}, the paper's)")
        parser.add_argument("--num-aug", type=int, default=d["num_aug"],
                            help="augmented versions per training puzzle besides the original "
                            f"(default {d['num_aug']})")
        parser.add_argument("--test-size", type=int, default=d["test_size"],
                            help="held-out puzzles (default: all of the test CSV, or 1000 generated)")
        parser.add_argument("--min-rating", type=int, default=d["min_rating"],
                            help="CSV: keep rows with at least this rating")

    def build_options(self, args: argparse.Namespace) -> dict[str, Any]:
        return {"size": args.size, "train_size": args.train_size, "num_aug": args.num_aug,
                "test_size": args.test_size, "difficulty": args.difficulty, "min_rating": args.min_rating,
                **csv_options(args)}

    def build(self, out_dir: str | Path, *, progress: bool = True, **options: Any) -> Path:
        from trm.tasks.sudoku.data import build_sudoku_dataset
        return build_sudoku_dataset(out_dir, progress=progress, **options)

    def dims(self, build: dict[str, Any]) -> tuple[int, int]:
        side = int(build.get("size") or 9)
        return side + 2, side * side

    def recognises(self, vocab_size: int, seq_len: int) -> bool:
        return (vocab_size, seq_len) in ((11, 81), (6, 16))

    # -- evaluation and pictures -----------------------------------------------------------------
    def metrics(self, ps, result, data_dir: Path | None = None) -> dict[str, float]:
        n = len(result.preds)
        if n == 0:
            return {}
        inputs = np.asarray(ps.inputs[:n])
        return {"valid_solution": float(self._valid(inputs, np.asarray(result.preds)).mean())}

    def draw_example(self, inputs, pred, label, title=None, shape=None):
        from trm.tasks.sudoku.pictures import draw_sudoku
        b = _boards(len(inputs))
        return draw_sudoku(b(inputs), b(pred), truth=b(label) if label is not None else None, title=title)

    def refinement(self, inputs, trace, halt, label, shape, title):
        from trm.tasks.sudoku.pictures import refinement_frames, sudoku_refinement
        b = _boards(len(inputs))
        boards = [b(t) for t in trace]
        strip = sudoku_refinement(b(inputs), boards, list(halt), truth=b(label), title=title)
        return strip, refinement_frames(b(inputs), boards, list(halt), truth=b(label))

    # -- solving ---------------------------------------------------------------------------------
    def read_puzzle(self, arg: str) -> Any:
        from trm.tasks.sudoku.data import parse_sudoku
        text = read_puzzle_text(arg, self.puzzle_help)
        parse_sudoku(text)
        return text

    def encode(self, puzzle: Any, solver) -> np.ndarray:
        from trm.tasks.sudoku.data import encode_board, parse_sudoku, to_line
        S = solver.seq_len
        side = grid_shape(S)[0]
        if isinstance(puzzle, str):
            board = parse_sudoku(puzzle)
        else:
            arr = np.asarray(puzzle)
            square = arr.ndim == 1 or (arr.ndim == 2 and arr.shape[0] == arr.shape[1])
            if arr.dtype.kind not in "iu" or not square:
                raise PuzzleError(f"a Sudoku board must be a string or an NxN array of integers 0..N, got "
                                  f"{arr.dtype} array of shape {arr.shape}")
            board = parse_sudoku(to_line(arr))   # checks values and contradictory givens
        if board.size != S:
            raise PuzzleError(f"this model solves {side}x{side} Sudoku ({S} cells); the puzzle is "
                              f"{board.shape[0]}x{board.shape[1]} ({board.size} cells)")
        return encode_board(board).reshape(S)

    def decode(self, tokens: np.ndarray, solver) -> np.ndarray:
        return _boards(tokens.size)(tokens)

    def check(self, inputs: np.ndarray, answers: np.ndarray, solver) -> np.ndarray:
        return self._valid(np.asarray(inputs), np.asarray(answers))

    def solve_cli(self, solver, args: argparse.Namespace) -> int:
        from trm.tasks.sudoku.data import check_solution, format_sudoku, parse_sudoku, solve
        from trm.tasks.sudoku.pictures import refinement_frames, sudoku_refinement
        board = parse_sudoku(args.puzzle)
        draw = bool(args.png or args.gif)
        res = solver.solve(board, halting=args.halting, trace=draw, **rollout_options(args))
        answer = res.answers[0]
        valid = check_solution(board, answer)
        print(format_sudoku(answer))
        exact = solve(board, limit=2)
        unique = exact.num_solutions == 1
        several = "" if unique else (f"; note: the puzzle has {'no' if exact.num_solutions == 0 else 'several'} "
                                     "solutions")
        verdict = "valid solution" if valid else "NOT valid solution"
        print_solve_summary(res, args, verdict, suffix=several)
        if draw:
            b = _boards(board.size)
            trace = [b(t) for t in res.trace[0]]
            truth = exact.solution if unique else None
            halts = list(res.trace_halt[0])
            save_pictures(args, sudoku_refinement(board, trace, halts, truth=truth),
                          refinement_frames(board, trace, halts, truth=truth))
        return 0 if valid else 3

    @staticmethod
    def _valid(inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
        from trm.tasks.sudoku.data import decode_tokens, valid_solutions
        side = grid_shape(inputs.shape[-1])[0]
        return valid_solutions(decode_tokens(inputs, side).reshape(-1, side, side),
                               decode_tokens(answers, side).reshape(-1, side, side))


def _boards(seq_len: int):
    """tokens [seq_len] -> an NxN board (0 blank, 1..N digits)."""
    from trm.tasks.sudoku.data import decode_tokens
    side = grid_shape(seq_len)[0]
    return lambda t: decode_tokens(np.asarray(t), side).reshape(side, side)
