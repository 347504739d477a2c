"""Puzzle types as plug-ins: one folder per task, one :class:`~trm.tasks.base.Task` each, and this registry.

The CLI, the solver, the evaluator, the report and the benchmarks ask the registry; no file outside
``tasks/`` names a task. Adding one: docs/TASKS.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trm.errors import ConfigError
from trm.tasks.arc import ArcTask
from trm.tasks.base import Task, grid_shape
from trm.tasks.futoshiki import FutoshikiTask
from trm.tasks.maze import MazeTask
from trm.tasks.sudoku import SudokuTask

REGISTRY: dict[str, Task] = {t.name: t for t in (SudokuTask(), MazeTask(), ArcTask(), FutoshikiTask())}
TASKS = tuple(REGISTRY)

__all__ = ["REGISTRY", "TASKS", "Task", "build_dataset", "dims_from_build", "get", "grid_shape", "infer_task"]


def get(name: str) -> Task:
    """The task called ``name``; ConfigError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}: expected one of {', '.join(REGISTRY)}") from None


def infer_task(vocab_size: int, seq_len: int) -> str:
    """The task of a dataset that names none (the public builders' layout), or "" when no task claims it."""
    return next((t.name for t in REGISTRY.values() if t.recognises(vocab_size, seq_len)), "")


def dims_from_build(cfg: Any) -> bool:
    """Fill ``cfg.model.vocab_size`` / ``seq_len`` from ``data.build`` (its task's :meth:`~Task.dims`) when
    the dataset is not built yet; True when they are known afterwards."""
    m, build = cfg.model, cfg.data.build or {}
    task = REGISTRY.get(str(build.get("task", "")))
    dims = task.dims(build) if task and not (m.vocab_size and m.seq_len) else None
    if dims:
        m.vocab_size, m.seq_len = m.vocab_size or dims[0], m.seq_len or dims[1]
    return bool(m.vocab_size and m.seq_len)


def build_dataset(out_dir: str | Path, build: dict[str, Any], progress: bool = True) -> Path:
    """Build a dataset from a ``data.build`` mapping: ``{"task": NAME, **builder arguments}``."""
    args = dict(build)
    name = args.pop("task", None)
    if name not in REGISTRY:
        raise ConfigError(f"data.build.task must be one of {', '.join(REGISTRY)}, got {name!r}")
    try:
        return REGISTRY[name].build(out_dir, progress=progress, **args)
    except TypeError as e:
        raise ConfigError(f"data.build for {name}: {e}") from None
