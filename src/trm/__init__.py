"""trm: Tiny Recursive Models (arXiv 2510.04871) and HRM, faithful and fast, in PyTorch.

    import trm
    model = trm.load("runs/sudoku-cpu")          # a run dir, an exported model dir or a .pt checkpoint
    model = trm.load("ckpt/step_N", data="data/sudoku-extreme-1k-aug-1000")   # official TRM/HRM, nano-trm
    result = model.solve(puzzle, halting="adaptive")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["TRM", "SolveResult", "Solver", "__version__", "load"]

if TYPE_CHECKING:  # pragma: no cover
    from trm.solve import TRM, SolveResult, Solver


def load(path: Any, device: Any = "auto", dtype: str = "trained", *, data: Any = None,
         task: str | None = None) -> "Solver":
    """Load a trained model (see :func:`trm.solve.load`); torch is imported on first use."""
    from trm.solve import load as _load
    return _load(path, device, dtype, data=data, task=task)


def __getattr__(name: str) -> Any:
    if name in ("Solver", "TRM", "SolveResult"):
        import trm.solve
        return getattr(trm.solve, name)
    raise AttributeError(f"module 'trm' has no attribute {name!r}")
