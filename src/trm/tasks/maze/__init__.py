"""Mazes (Maze-Hard; spec section 6): HxW token grids (1 wall, 2 open, 3 S, 4 G, 5 path), vocabulary 6;
the label draws one shortest S-to-G path. Tokens, generator and builder in :mod:`.data`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from trm.errors import PuzzleError
from trm.tasks.base import (Task, add_csv_arguments, csv_options, defaults, grid_shape, print_solve_summary,
                            read_puzzle_text, rollout_options, save_pictures)


class MazeTask(Task):
    name = "maze"
    legend = "cells differing from the label outlined orange"
    summary = "generated mazes or the Maze-Hard CSV files"
    puzzle_help = ("a maze text file (one line per row: '#' wall, ' ' open, 'S' start, 'G' goal), or - for "
                   "standard input")

    def add_build_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_csv_arguments(parser)
        from trm.tasks.maze.data import DEFAULT_MIN_PATH, DEFAULT_SIZE, DEFAULT_WALL_DENSITY, build_maze_dataset
        parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                            help=f"generated: grid side (default {DEFAULT_SIZE}, Maze-Hard's)")
        parser.add_argument("--wall-density", type=float, default=None,
                            help=f"generated: probability of a wall in each cell, in [0, 1) "
                            f"(default {DEFAULT_WALL_DENSITY})")
        parser.add_argument("--min-path", type=int, default=DEFAULT_MIN_PATH,
                            help="generated: keep mazes whose shortest S-G path is longer than this many steps "
                            f"(default {DEFAULT_MIN_PATH}, Maze-Hard's)")
        d = defaults(build_maze_dataset)
        parser.add_argument("--train-size", type=int, default=d["train_size"],
                            help=f"training mazes (default {d['train_size']}, the paper's)")
        parser.add_argument("--test-size", type=int, default=d["test_size"],
                            help=f"held-out mazes (default {d['test_size']})")
        parser.add_argument("--aug", action="store_true",
                            help="8 dihedral versions per training maze (default off, as the public builder)")

    def build_options(self, args: argparse.Namespace) -> dict[str, Any]:
        options = {"size": args.size, "min_path": args.min_path, "train_size": args.train_size,
                   "test_size": args.test_size, "aug": args.aug}
        if args.wall_density is not None:
            options["wall_density"] = args.wall_density
        options.update(csv_options(args))
        if options["source"] == "csv":
            options.pop("size")                  # the side comes from the files
        return options

    def build(self, out_dir: str | Path, *, progress: bool = True, **options: Any) -> Path:
        from trm.tasks.maze.data import build_maze_dataset
        return build_maze_dataset(out_dir, progress=progress, **options)

    def dims(self, build: dict[str, Any]) -> tuple[int, int]:
        side = int(build.get("size") or 30)
        return 6, side * side

    def recognises(self, vocab_size: int, seq_len: int) -> bool:
        return vocab_size == 6 and round(seq_len ** 0.5) ** 2 == seq_len and seq_len != 16

    # -- evaluation and pictures -----------------------------------------------------------------
    def metrics(self, ps, result, data_dir: Path | None = None) -> dict[str, float]:
        from trm.tasks.maze.data import score_mazes
        n = len(result.preds)
        if n == 0:
            return {}
        inputs = np.asarray(ps.inputs[:n])
        scores = score_mazes(inputs, result.preds, shape=grid_shape(inputs.shape[1]))
        return {"valid_shortest": float(scores["valid_shortest"].mean())}

    def draw_example(self, inputs, pred, label, title=None, shape=None):
        from trm.tasks.maze.pictures import draw_maze
        h, w = grid_shape(len(inputs), shape)
        return draw_maze(np.asarray(pred).reshape(h, w),
                         truth=np.asarray(label).reshape(h, w) if label is not None else None, title=title)

    def refinement(self, inputs, trace, halt, label, shape, title):
        from trm.tasks.maze.pictures import maze_refinement, refinement_frames
        h, w = grid_shape(len(inputs), shape)
        grids = [np.asarray(t).reshape(h, w) for t in trace]
        cell = max(4, min(12, 480 // max(h, w)))
        truth = np.asarray(label).reshape(h, w)
        strip = maze_refinement(np.asarray(inputs).reshape(h, w), grids, list(halt), truth=truth, cell=cell,
                                title=title)
        return strip, refinement_frames(grids, list(halt), truth=truth, cell=cell)

    # -- solving ---------------------------------------------------------------------------------
    def read_puzzle(self, arg: str) -> Any:
        from trm.tasks.maze.data import OPEN, PATH, parse_maze
        text = read_puzzle_text(arg, self.puzzle_help)
        if "\n" not in text.strip():
            raise PuzzleError(f"{arg}: no such file (give {self.puzzle_help})")
        grid = parse_maze(text)
        if (grid == PATH).any():
            print("note: the path drawn in the maze ('o') was cleared; the model finds its own", file=sys.stderr)
            grid = np.where(grid == PATH, OPEN, grid).astype(np.uint8)
        return grid

    def encode(self, puzzle: Any, solver) -> np.ndarray:
        from trm.tasks.maze.data import parse_maze
        h, w = self.shape(solver)
        if isinstance(puzzle, str):
            grid = parse_maze(puzzle, allow_path=False)
        else:
            grid = np.asarray(puzzle)
            if grid.dtype.kind not in "iu" or grid.ndim != 2:
                raise PuzzleError(f"a maze must be text or an HxW array of tokens 1..4, got {grid.dtype} "
                                  f"array of shape {grid.shape}")
            if grid.size and (grid.min() < 1 or grid.max() > 4):
                raise PuzzleError(f"maze tokens must lie in 1..4 (wall, open, S, G), found "
                                  f"{grid.min()}..{grid.max()}")
        if grid.shape != (h, w):
            raise PuzzleError(f"this model solves {h}x{w} mazes; the maze is {grid.shape[0]}x{grid.shape[1]}")
        for tok, name in ((3, "start 'S'"), (4, "goal 'G'")):
            if int((grid == tok).sum()) != 1:
                raise PuzzleError(f"the maze needs exactly one {name}, found {int((grid == tok).sum())}")
        return grid.reshape(h * w).astype(np.uint8)

    def decode(self, tokens: np.ndarray, solver) -> np.ndarray:
        return np.asarray(tokens).reshape(self.shape(solver))

    def check(self, inputs: np.ndarray, answers: np.ndarray, solver) -> np.ndarray:
        from trm.tasks.maze.data import score_mazes
        return score_mazes(np.asarray(inputs), np.asarray(answers), shape=self.shape(solver))["valid_shortest"]

    @staticmethod
    def shape(solver) -> tuple[int, int]:
        return grid_shape(solver.seq_len, solver.data.get("grid_shape"))

    def solve_cli(self, solver, args: argparse.Namespace) -> int:
        from trm.tasks.maze.data import check_path, format_maze
        from trm.tasks.maze.pictures import maze_refinement, refinement_frames
        grid = args.puzzle
        draw = bool(args.png or args.gif)
        res = solver.solve(grid, halting=args.halting, trace=draw, **rollout_options(args))
        pred = res.answers[0]
        print(format_maze(pred))
        verdict = check_path(grid, pred)
        ok = bool(verdict["optimal"])
        what = (f"valid shortest path ({verdict['length']} steps)" if ok
                else f"NOT a valid shortest path: {verdict['reason']} (shortest: {verdict['shortest']} steps)")
        print_solve_summary(res, args, what)
        if draw:
            trace = list(res.trace[0].reshape(-1, *grid.shape))
            halts = list(res.trace_halt[0])
            save_pictures(args, maze_refinement(grid, trace, halts), refinement_frames(trace, halts))
        return 0 if ok else 3
