"""The shape of the code (issue "one place for each idea"), checked on the source itself:

- tasks are plug-ins: outside ``trm/tasks/`` no code names a task (docstrings and comments may);
- the module-level import graph has no cycle;
- training imports nothing of evaluation, solving, tasks, data or the report, and those import nothing
  of training (the pipeline wires them together);
- one supervision unroll: the evaluator, the solver and ARC adaptation step through ``Unroll``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from trm.config import list_presets
from trm.tasks import REGISTRY

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "trm"
# The benchmark's own case names (model shapes of the paper configurations, not tasks): `trm bench --configs`.
BENCH_CASES = {"sudoku-mlp", "sudoku-att", "maze-att"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """trm modules imported by ``path`` (imports under ``if TYPE_CHECKING`` excluded)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(child, ast.Import):
                found.update(t for a in child.names if (t := _resolve(a.name)))
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.update(t for a in child.names
                             if (t := _resolve(f"{child.module}.{a.name}") or _resolve(child.module)))
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m.startswith("trm")}


def _code_strings_and_names(path: Path):
    """(line, text) of every string constant that is not a docstring, and every identifier."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings:
            yield n.lineno, n.value
        elif isinstance(n, ast.Name):
            yield n.lineno, n.id
        elif isinstance(n, ast.Attribute):
            yield n.lineno, n.attr
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            yield n.lineno, n.name
        elif isinstance(n, ast.ImportFrom) and n.module:
            yield n.lineno, n.module


def test_no_code_outside_tasks_names_a_task():
    names = sorted(REGISTRY)
    word = re.compile(rf"(?<![A-Za-z])(?:{'|'.join(names)})(?![A-Za-z])", re.IGNORECASE)
    allowed = set(list_presets()) | BENCH_CASES
    hits = []
    for name, path in MODULES.items():
        if name.startswith("trm.tasks"):
            continue
        for line, text in _code_strings_and_names(path):
            cleaned = re.sub(r"[\w-]+", lambda w: "" if w.group(0) in allowed else w.group(0), text)
            if word.search(cleaned):
                hits.append(f"{path.relative_to(SRC)}:{line}: {text[:60]!r}")
    assert hits == []


def test_the_module_level_import_graph_has_no_cycle():
    graph = {m: _imports(p, top_level_only=True) - {m} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(t):] + [t]) if t in path
                            else f"import cycle through {t}")
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


OUTSIDE_TRAINING = ("trm.eval", "trm.solve", "trm.tasks", "trm.data", "trm.report", "trm.pipeline", "trm.viz")


def test_training_and_inference_do_not_import_each_other():
    wrong = []
    for m, p in MODULES.items():
        for t in _imports(p, top_level_only=False):
            if m.startswith("trm.train") and t.startswith(OUTSIDE_TRAINING):
                wrong.append(f"{m} imports {t}")
            inference = m.startswith(("trm.eval", "trm.solve", "trm.tasks", "trm.data", "trm.model"))
            if inference and t.startswith("trm.train"):
                wrong.append(f"{m} imports {t}")
    assert wrong == []


def test_one_supervision_unroll():
    """Only model/unroll.py calls the model step by step outside training; the others use Unroll."""
    users = {m for m, p in MODULES.items() if "Unroll(" in p.read_text()}
    assert {"trm.eval.evaluate", "trm.solve", "trm.tasks.arc.solve"} <= users
    for m, p in MODULES.items():
        text = p.read_text()
        if m in ("trm.model.unroll", "trm.model.recursive", "trm.train.engine", "trm.bench"):
            continue                    # the unroll itself, the model, training's carry, the bench's timed raw step
        assert "deep_recursion(" not in text and "initial_state(" not in text, m
