"""Puzzle types, seen from the engine: how to build a dataset, score predictions and draw them.

The engine and evaluator only see token arrays; this module is the one place that knows which task a
dataset holds (``dataset.json``'s ``task``) and calls that task's own module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trm.data.format import PuzzleSet
from trm.errors import ConfigError

TASKS = ("sudoku", "maze", "arc")


def build_dataset(out_dir: str | Path, build: dict[str, Any], progress: bool = True) -> Path:
    """Build a dataset from a ``data.build`` mapping: ``{"task": "sudoku", **builder arguments}``."""
    args = dict(build)
    task = args.pop("task", None)
    if task == "sudoku":
        from trm.data.sudoku import build_sudoku_dataset as builder
    elif task == "maze":
        from trm.data.maze import build_maze_dataset as builder
    elif task == "arc":
        from trm.data.arc import build_arc_dataset as builder
    else:
        raise ConfigError(f"data.build.task must be one of {', '.join(TASKS)}, got {task!r}")
    try:
        return builder(out_dir, progress=progress, **args)
    except TypeError as e:
        raise ConfigError(f"data.build for {task}: {e}") from None


def grid_shape(ps_or_meta_shape, seq_len: int) -> tuple[int, int]:
    if ps_or_meta_shape:
        return tuple(ps_or_meta_shape)  # type: ignore[return-value]
    side = int(round(seq_len ** 0.5))
    return side, side


def task_metrics(task: str, ps: PuzzleSet, result, data_dir: Path | None = None) -> dict[str, float]:
    """Task-specific metrics on top of exact/cell accuracy (evaluated on ``result.preds``)."""
    n = len(result.preds)
    if n == 0:
        return {}
    inputs = np.asarray(ps.inputs[:n])
    if task == "sudoku":
        from trm.data.sudoku import decode_tokens, valid_solutions
        side = int(round(inputs.shape[1] ** 0.5))
        puzzles = decode_tokens(inputs, side).reshape(n, side, side)
        preds = decode_tokens(np.asarray(result.preds), side).reshape(n, side, side)
        return {"valid_solution": float(valid_solutions(puzzles, preds).mean())}
    if task == "maze":
        from trm.data.maze import score_mazes
        side = int(round(inputs.shape[1] ** 0.5))
        scores = score_mazes(inputs, result.preds, shape=(side, inputs.shape[1] // side))
        return {"valid_shortest": float(scores["valid_shortest"].mean())}
    if task == "arc" and data_dir is not None:
        from trm.eval.arc import is_scored, score_arc_predictions
        if not is_scored(data_dir):      # a test set without solutions: for a submission only
            return {"arc_unscored": 1.0}
        return score_arc_predictions(ps, result, data_dir)
    return {}


def draw_example(task: str, inputs: np.ndarray, pred: np.ndarray, label: np.ndarray | None,
                 title: str | None = None, grid: tuple[int, int] | None = None):
    """A PIL image of one prediction (tokens -> the task's own picture)."""
    from trm import viz
    if task == "sudoku":
        from trm.data.sudoku import decode_tokens
        side = int(round(len(inputs) ** 0.5))
        b = lambda t: decode_tokens(np.asarray(t), side).reshape(side, side)  # noqa: E731
        return viz.draw_sudoku(b(inputs), b(pred), truth=b(label) if label is not None else None, title=title)
    if task == "maze":
        h, w = grid or grid_shape(None, len(inputs))
        return viz.draw_maze(np.asarray(pred).reshape(h, w),
                             truth=np.asarray(label).reshape(h, w) if label is not None else None, title=title)
    if task == "arc":
        from trm.eval.arc import crop
        g = crop(np.asarray(pred).reshape(30, 30))
        return viz.draw_arc(g if g is not None else np.zeros((1, 1), np.int64))
    raise ConfigError(f"unknown task {task!r}")
