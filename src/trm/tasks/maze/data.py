"""Maze-Hard: tokens, text parsing, generator, path checker, CSV import and dataset builder (spec 3, 6, 7).

Tokens follow the original charset ``"# SGo"`` shifted by one so that 0 stays PAD::

    0 PAD   1 '#' wall   2 ' ' open   3 'S' start   4 'G' goal   5 'o' path     (vocab_size 6)

A puzzle's input x is an HxW grid (30x30 in the paper; seq_len = H*W, no padding for small sizes) with
walls, one S and one G; its label y is x with ONE shortest S-to-G path drawn as 'o' (S and G stay).
Distances are counted in steps (4-neighbour moves), so a path of length L has L - 1 'o' cells. Maze-Hard
keeps only mazes whose shortest path is longer than ``min_path`` = 110 steps.

The generator draws random walls, then finds far-apart S and G by a BFS double sweep (farthest cell A from
a random open cell, then the farthest cell B from A) instead of random placement, which succeeds only about
2 times in 75,000 at 30x30 (as reported). The drawn path is canonical (a function of x alone, see
:func:`solve_maze`), so a model can reach 100% exact accuracy; mazes often have several shortest paths, which is why
:func:`check_path` / :func:`score_mazes` also score "a valid path of optimal length".
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
from functools import partial
from pathlib import Path

import numpy as np

from trm.data import dihedral
from trm.data.format import DatasetMetadata, PuzzleSet, PuzzleSetBuilder, check_output_dir, write_dataset
from trm.errors import ConfigError, DatasetError, PuzzleError

CHARSET = "# SGo"
PAD, WALL, OPEN, START, GOAL, PATH = range(6)
VOCAB_SIZE = 6
PAD_CHAR = "?"  # how format_maze shows PAD (token 0), which has no character in the original charset

DEFAULT_SIZE = 30
DEFAULT_MIN_PATH = 110
# Wall probability per cell. Near the site-percolation threshold (open fraction ~0.593) the open cells form
# long tortuous corridors. At 30x30 / min_path 110, 0.37-0.40 all accept about 1% of layouts (~100 mazes/s
# per core, see benchmarks/bench_maze_generator.py); 0.38 is inside the 30-50% wall range of the
# Searchformer mazes that Maze-Hard filters.
DEFAULT_WALL_DENSITY = 0.38
DEFAULT_MAX_TRIES = 200_000

_LUT = np.full(256, 255, np.uint8)
_LUT[np.frombuffer(CHARSET.encode(), np.uint8)] = np.arange(1, VOCAB_SIZE, dtype=np.uint8)
_CHARS = np.frombuffer((PAD_CHAR + CHARSET).encode(), np.uint8)


# ----------------------------------------------------------------------------------------------- tokens

def encode(text: str) -> np.ndarray:
    """Flat string over ``"# SGo"`` (the CSV form) -> uint8 tokens [len(text)]."""
    try:
        raw = np.frombuffer(text.encode("ascii"), np.uint8)
    except UnicodeEncodeError as e:
        raise PuzzleError(f"bad character {text[e.start]!r} at position {e.start}; allowed: {CHARSET!r}") from None
    tokens = _LUT[raw]
    bad = np.flatnonzero(tokens == 255)
    if bad.size:
        raise PuzzleError(f"bad character {text[bad[0]]!r} at position {bad[0]}; allowed: {CHARSET!r}")
    return tokens


def decode(tokens) -> str:
    """uint8 tokens (any shape) -> flat string over ``"# SGo"`` (PAD shown as ``PAD_CHAR``)."""
    t = np.asarray(tokens).ravel()
    if t.size and (t.min() < 0 or t.max() >= VOCAB_SIZE):
        raise PuzzleError(f"maze tokens must be in 0..{VOCAB_SIZE - 1}, got {t.min()}..{t.max()}")
    return _CHARS[t.astype(np.intp)].tobytes().decode("ascii")


def _shape(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if h < 2 or w < 2:
        raise ConfigError(f"maze size must be at least 2x2, got {h}x{w}")
    return int(h), int(w)


def _as_grid(a, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A token grid [H, W]; a flat array is reshaped to ``shape`` or to a square."""
    a = np.asarray(a)
    if a.ndim == 2:
        return a
    if a.ndim != 1:
        raise PuzzleError(f"expected a maze grid [H, W] or flat [H*W], got shape {a.shape}")
    if shape is None:
        side = math.isqrt(a.size)
        if side * side != a.size:
            raise PuzzleError(f"a flat maze of {a.size} cells is not square; pass its shape")
        shape = (side, side)
    return a.reshape(shape)


def format_maze(grid, shape: tuple[int, int] | None = None) -> str:
    """Token grid -> text, one line per row (the inverse of :func:`parse_maze`)."""
    g = _as_grid(grid, shape)
    text = decode(g)
    w = g.shape[1]
    return "\n".join(text[i:i + w] for i in range(0, len(text), w))


# ------------------------------------------------------------------------------------------------- BFS
# Grids are padded with a wall border and flattened, so the neighbours of cell u are u +- 1 and u +- stride
# with no bounds checks. Python lists beat numpy for this scalar-heavy loop on <= 1000 cells.

def _padded(grid: np.ndarray) -> tuple[list[bool], int]:
    h, w = grid.shape
    pad = np.zeros((h + 2, w + 2), bool)
    pad[1:-1, 1:-1] = (grid != WALL) & (grid != PAD)
    return pad.ravel().tolist(), w + 2


def _bfs(open_: list[bool], src: int, stride: int) -> tuple[list[int], list[int]]:
    """Distances from ``src`` (-1 = unreached) and the cells in BFS order (the last one is farthest)."""
    dist = [-1] * len(open_)
    dist[src] = 0
    order = [src]
    for u in order:  # the list grows while we walk it: a queue without pops
        d = dist[u] + 1
        for v in (u - stride, u + stride, u - 1, u + 1):
            if open_[v] and dist[v] < 0:
                dist[v] = d
                order.append(v)
    return dist, order


def _to_padded(rc, stride: int) -> int:
    return (int(rc[0]) + 1) * stride + int(rc[1]) + 1


def _from_padded(u: int, stride: int) -> tuple[int, int]:
    return u // stride - 1, u % stride - 1


def _ends(grid: np.ndarray, what: str = "maze") -> tuple[tuple[int, int], tuple[int, int]]:
    """Positions of the single S and single G, or PuzzleError."""
    for tok, name in ((START, "S"), (GOAL, "G")):
        n = int((grid == tok).sum())
        if n != 1:
            raise PuzzleError(f"{what} must have exactly one '{name}', found {n}")
    s = np.argwhere(grid == START)[0]
    g = np.argwhere(grid == GOAL)[0]
    return (int(s[0]), int(s[1])), (int(g[0]), int(g[1]))


def shortest_distance(grid) -> int:
    """BFS distance (steps) from S to G over non-wall cells; -1 when G is unreachable."""
    g = _as_grid(grid)
    s, t = _ends(g)
    open_, stride = _padded(g)
    dist, _ = _bfs(open_, _to_padded(s, stride), stride)
    return dist[_to_padded(t, stride)]


def solve_maze(grid) -> np.ndarray:
    """The label y of input x: x with one shortest S-to-G path drawn as 'o' (any old 'o' is cleared first).

    The path is canonical: walking back from G, step to the first neighbour one step closer to S in the
    order up, down, left, right. So y is a function of x alone.
    """
    x = _as_grid(grid).astype(np.uint8)
    x = np.where(x == PATH, OPEN, x).astype(np.uint8)
    s, t = _ends(x)
    open_, stride = _padded(x)
    dist, _ = _bfs(open_, _to_padded(s, stride), stride)
    u = _to_padded(t, stride)
    if dist[u] < 0:
        raise PuzzleError(f"no path from S at line {s[0] + 1}, column {s[1] + 1} "
                          f"to G at line {t[0] + 1}, column {t[1] + 1}")
    y = x.copy()
    for d in range(dist[u] - 1, 0, -1):
        u = next(v for v in (u - stride, u + stride, u - 1, u + 1) if dist[v] == d)
        y[_from_padded(u, stride)] = PATH
    return y


# --------------------------------------------------------------------------------------------- parsing

def parse_maze(text: str, size: int | tuple[int, int] | None = None, allow_path: bool = True) -> np.ndarray:
    """Text (lines of equal length over ``"# SG"``, plus 'o' when ``allow_path``) -> token grid [H, W].

    Blank lines before and after the maze are ignored; spaces inside lines are open cells and count.
    Raises PuzzleError on ragged rows, bad characters, not exactly one S and one G, no S-to-G path, or a
    size other than ``size`` (an int for a square, or (H, W)).
    """
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[0] == "":
        lines.pop(0)
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise PuzzleError("empty maze text")
    w = len(lines[0])
    for i, line in enumerate(lines):
        if len(line) != w:
            raise PuzzleError(f"ragged maze: line {i + 1} has {len(line)} characters, line 1 has {w} "
                              "(open cells are spaces; was trailing whitespace stripped?)")
    allowed = "# SGo" if allow_path else "# SG"
    for i, line in enumerate(lines):
        for j, ch in enumerate(line):
            if ch not in allowed:
                raise PuzzleError(f"bad character {ch!r} at line {i + 1}, column {j + 1}; allowed: {allowed!r}")
    grid = encode("".join(lines)).reshape(len(lines), w)
    if size is not None and grid.shape != _shape(size):
        h2, w2 = _shape(size)
        raise PuzzleError(f"maze is {grid.shape[0]}x{w}, expected {h2}x{w2}")
    if shortest_distance(grid) < 0:  # also checks exactly one S and one G
        solve_maze(grid)  # raises the error naming S and G
    return grid


# ------------------------------------------------------------------------------------------- generator

def _try_layout(rng: np.random.Generator, h: int, w: int, wall_density: float, min_path: int):
    """One random wall layout; returns (open mask [H, W], S, G) when the double sweep finds a path
    longer than ``min_path`` steps, else None."""
    stride = w + 2
    pad = np.zeros((h + 2, w + 2), bool)
    pad[1:-1, 1:-1] = rng.random((h, w)) >= wall_density
    cells = np.flatnonzero(pad)
    if cells.size < min_path + 2:
        return None
    open_ = pad.ravel().tolist()
    dist, order = _bfs(open_, int(cells[rng.integers(cells.size)]), stride)
    a = order[-1]
    # The diameter of this component is at most twice the eccentricity of any of its cells.
    if len(order) < min_path + 2 or 2 * dist[a] <= min_path:
        return None
    dist, order = _bfs(open_, a, stride)
    b = order[-1]
    if dist[b] <= min_path:
        return None
    s, g = (a, b) if rng.random() < 0.5 else (b, a)
    return pad[1:-1, 1:-1], _from_padded(s, stride), _from_padded(g, stride)


def _generate(rng, size, wall_density, min_path, max_tries) -> tuple[np.ndarray, np.ndarray, int]:
    h, w = _shape(size)
    if not 0.0 <= wall_density < 1.0:
        raise ConfigError(f"wall_density must be in [0, 1), got {wall_density}")
    if min_path < 0 or min_path + 2 > h * w:
        raise ConfigError(f"min_path {min_path} is impossible in a {h}x{w} maze")
    for tries in range(1, max_tries + 1):
        found = _try_layout(rng, h, w, wall_density, min_path)
        if found is not None:
            open_mask, s, g = found
            x = np.where(open_mask, OPEN, WALL).astype(np.uint8)
            x[s], x[g] = START, GOAL
            return x, solve_maze(x), tries
    raise ConfigError(f"no {h}x{w} maze with a shortest path > {min_path} in {max_tries} layouts at "
                      f"wall_density {wall_density}; lower min_path or move wall_density towards 0.4")


def generate_maze(rng: np.random.Generator, size: int | tuple[int, int] = DEFAULT_SIZE,
                  wall_density: float = DEFAULT_WALL_DENSITY, min_path: int = DEFAULT_MIN_PATH,
                  max_tries: int = DEFAULT_MAX_TRIES) -> tuple[np.ndarray, np.ndarray]:
    """One maze: (input x [H, W], label y [H, W]) uint8 with shortest path > ``min_path`` steps.

    Each layout draws a wall in every cell with probability ``wall_density``; S and G are the two ends of
    a BFS double sweep (in random order); a layout whose sweep distance is <= ``min_path`` is discarded.
    """
    x, y, _ = _generate(rng, size, wall_density, min_path, max_tries)
    return x, y


def maze_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of maze ``index`` of ``stream`` (train 0, test 1): independent of worker count."""
    return np.random.default_rng([int(seed), int(stream), int(index)])


def _generate_range(args) -> tuple[np.ndarray, np.ndarray, int]:
    lo, hi, seed, stream, size, wall_density, min_path, max_tries = args
    out = [_generate(maze_rng(seed, i, stream), size, wall_density, min_path, max_tries) for i in range(lo, hi)]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), sum(o[2] for o in out)


def generate_many(n: int, seed: int = 0, workers: int | None = None, *, size=DEFAULT_SIZE,
                  wall_density: float = DEFAULT_WALL_DENSITY, min_path: int = DEFAULT_MIN_PATH,
                  stream: int = 0, max_tries: int = DEFAULT_MAX_TRIES, progress: bool = False,
                  return_tries: bool = False):
    """``n`` mazes as (inputs [n, H, W], labels [n, H, W]) uint8; maze i is seeded by (seed, stream, i),
    so the result is the same for any ``workers`` (None = all CPUs; <= 1 = in this process).
    With ``return_tries`` also return the number of wall layouts drawn in total."""
    h, w = _shape(size)
    if n < 0:
        raise ConfigError(f"number of mazes must be >= 0, got {n}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    chunk = max(1, -(-n // (4 * max(1, workers))))  # about 4 jobs per worker
    jobs = [(lo, min(n, lo + chunk), seed, stream, (h, w), wall_density, min_path, max_tries)
            for lo in range(0, n, chunk)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc=f"maze {h}x{w} path>{min_path}", unit="maze")
    pool = multiprocessing.Pool(min(workers, len(jobs))) if workers > 1 and len(jobs) > 1 else None
    parts = []
    try:
        for part in (pool.imap(_generate_range, jobs) if pool else map(_generate_range, jobs)):
            parts.append(part)
            if bar is not None:
                bar.update(len(part[0]))
    finally:
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()
    empty = np.zeros((0, h, w), np.uint8)
    inputs = np.concatenate([p[0] for p in parts]) if parts else empty
    labels = np.concatenate([p[1] for p in parts]) if parts else empty
    if return_tries:
        return inputs, labels, sum(p[2] for p in parts)
    return inputs, labels


# ----------------------------------------------------------------------------------------- evaluation

def check_path(input_grid, pred_grid, label_grid=None, shape: tuple[int, int] | None = None) -> dict:
    """Score one predicted grid against its input x (and optionally its label y).

    Returns ``valid`` (pred = x except that some open cells became 'o', and those cells with S and G form
    one simple 4-neighbour S-to-G path; "simple" means no cell of it touches a non-consecutive one),
    ``optimal`` (valid and its length equals the BFS shortest distance), ``length`` (steps of the path,
    or None), ``shortest``, ``reason`` ('' when optimal) and, given a label, ``exact`` (pred == y).
    """
    x = _as_grid(input_grid, shape)
    p = _as_grid(pred_grid, x.shape if shape is None else shape)
    if p.shape != x.shape:
        raise PuzzleError(f"prediction shape {p.shape} differs from input shape {x.shape}")
    shortest = shortest_distance(x)  # raises on a malformed input
    if shortest < 0:
        raise PuzzleError("input maze has no path from S to G")
    out = dict(valid=False, optimal=False, length=None, shortest=shortest, reason="")
    if label_grid is not None:
        out["exact"] = bool(np.array_equal(_as_grid(label_grid, x.shape), p))

    changed = (p != x) & ~((x == OPEN) & (p == PATH))
    if changed.any():
        r, c = np.argwhere(changed)[0]
        out["reason"] = (f"cell at line {r + 1}, column {c + 1} changed from {CHARSET[x[r, c] - 1]!r} "
                         f"to {decode([p[r, c]])!r}")
        return out
    on_path, stride = _padded(np.where((p == PATH) | (p == START) | (p == GOAL), OPEN, WALL))
    s, g = _ends(x)
    u, prev, goal, steps = _to_padded(s, stride), -1, _to_padded(g, stride), 0
    while True:
        nxt = [v for v in (u - stride, u + stride, u - 1, u + 1) if on_path[v] and v != prev]
        if u == goal:
            if nxt:
                out["reason"] = "the path branches or touches itself at G"
                return out
            break
        if len(nxt) != 1:
            r, c = _from_padded(u, stride)
            out["reason"] = (f"the path {'ends' if not nxt else 'branches or touches itself'} "
                             f"at line {r + 1}, column {c + 1}")
            return out
        prev, u, steps = u, nxt[0], steps + 1
    n_path = int((p == PATH).sum())
    if n_path != steps - 1:
        out["reason"] = f"{n_path - (steps - 1)} stray 'o' cell(s) off the S-to-G path"
        return out
    out.update(valid=True, length=steps, optimal=steps == shortest)
    if steps != shortest:
        out["reason"] = f"path length {steps} is not the shortest ({shortest})"
    return out


def _neighbour_count(mask: np.ndarray) -> np.ndarray:
    """Number of 4-neighbours set in ``mask`` [N, H, W]."""
    m = np.pad(mask, ((0, 0), (1, 1), (1, 1))).astype(np.int8)
    return m[:, :-2, 1:-1] + m[:, 2:, 1:-1] + m[:, 1:-1, :-2] + m[:, 1:-1, 2:]


def batch_shortest_distance(inputs: np.ndarray) -> np.ndarray:
    """BFS distance S -> G for a batch of grids [N, H, W] by wavefront expansion; -1 when unreachable."""
    open_ = (inputs != WALL) & (inputs != PAD)
    goal = inputs == GOAL
    reached = inputs == START
    frontier = reached.copy()
    dist = np.where(reached.any((1, 2)) & goal.any((1, 2)), -1, -2).astype(np.int64)  # -2: no S or G
    active = np.flatnonzero(dist == -1)
    step = 0
    while active.size:
        step += 1
        f = np.pad(frontier[active], ((0, 0), (1, 1), (1, 1)))
        grow = f[:, :-2, 1:-1] | f[:, 2:, 1:-1] | f[:, 1:-1, :-2] | f[:, 1:-1, 2:]
        new = grow & open_[active] & ~reached[active]
        reached[active] |= new
        frontier[active] = new
        hit = (new & goal[active]).any((1, 2))
        dist[active[hit]] = step
        active = active[~hit & new.any((1, 2))]
    return np.maximum(dist, -1)


def score_mazes(inputs, preds, labels=None, shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Vectorised scoring of a batch of token arrays ([N, H*W] or [N, H, W]); per-example bool arrays:

    ``exact``: pred == label (only when labels are given); ``valid_shortest``: pred = input except open
    cells turned 'o', every 'o' has exactly 2 path neighbours and S, G exactly 1 (path cells = 'o', S, G),
    and #'o' + 1 equals the BFS shortest distance. With the degree rule the S-to-G chain is a simple path
    of length >= the shortest distance, so that count forces it to be shortest and leaves no stray cycles.
    """
    x = np.asarray(inputs)
    if x.ndim == 2:
        if shape is None:
            side = math.isqrt(x.shape[1])
            if side * side != x.shape[1]:
                raise PuzzleError(f"sequences of {x.shape[1]} cells are not square; pass shape=(H, W)")
            shape = (side, side)
        x = x.reshape(-1, *shape)
    p = np.asarray(preds).reshape(x.shape)
    out = {}
    if labels is not None:
        out["exact"] = (np.asarray(labels).reshape(x.shape) == p).all(axis=(1, 2))
    unchanged = ((p == x) | ((x == OPEN) & (p == PATH))).all(axis=(1, 2))
    ends = (p == START) | (p == GOAL)
    is_path = p == PATH
    deg = _neighbour_count(is_path | ends)
    degree_ok = ((deg == 2) | ~is_path).all(axis=(1, 2)) & ((deg == 1) | ~ends).all(axis=(1, 2))
    one_each = ((x == START).sum((1, 2)) == 1) & ((x == GOAL).sum((1, 2)) == 1)
    candidate = unchanged & degree_ok & one_each
    dist = np.full(x.shape[0], -1, np.int64)
    if candidate.any():
        dist[candidate] = batch_shortest_distance(x[candidate])
    out["valid_shortest"] = candidate & (dist > 0) & (is_path.sum((1, 2)) + 1 == dist)
    return out


# ------------------------------------------------------------------------------------------ CSV import

def _read_maze_rows(path: Path, reader, xs: list, ys: list) -> None:
    """Validate the rows of :func:`read_maze_csv` and append their grids to ``xs`` / ``ys``."""
    side = None
    header = next(reader, None)
    if header is None or "question" not in header or "answer" not in header:
        raise DatasetError(f"{path}:1: expected a header with 'question' and 'answer' columns "
                           f"(source,question,answer,rating), got {header}")
    qi, ai = header.index("question"), header.index("answer")
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if len(row) != len(header):
            raise DatasetError(f"{where}: {len(row)} fields, the header has {len(header)}")
        q, a = row[qi], row[ai]
        n = math.isqrt(len(q))
        if n * n != len(q) or n < 2:
            raise DatasetError(f"{where}: question has {len(q)} characters, not a square grid")
        side = n if side is None else side
        if n != side or len(a) != len(q):
            raise DatasetError(f"{where}: question/answer have {len(q)}/{len(a)} characters, "
                               f"expected {side * side} ({side}x{side})")
        try:
            x, y = encode(q).reshape(n, n), encode(a).reshape(n, n)
            _ends(x, "question")
        except PuzzleError as e:
            raise DatasetError(f"{where}: {e}") from None
        if (x == PATH).any():
            raise DatasetError(f"{where}: question contains path cells 'o'")
        if ((y != x) & ~((x == OPEN) & (y == PATH))).any():
            raise DatasetError(f"{where}: answer differs from question outside the 'o' path cells")
        xs.append(x)
        ys.append(y)


def read_maze_csv(path: str | Path, limit: int | None = None,
                  seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read an original Maze-Hard CSV (header ``source,question,answer,rating``; question and answer are
    H*W-character strings over ``"# SGo"``) -> (inputs [N, H, W], labels [N, H, W]) uint8.

    The side is sqrt(len(question)). ``limit`` keeps that many rows: the first ones, or with ``seed`` a
    random subset (kept in file order). Malformed rows raise DatasetError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            _read_maze_rows(path, reader, xs, ys)
        except (csv.Error, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    if not xs:
        raise DatasetError(f"{path}: no mazes")
    keep = np.arange(len(xs))
    if limit is not None and limit < len(xs):
        keep = (np.sort(np.random.default_rng(seed).choice(len(xs), limit, replace=False))
                if seed is not None else keep[:limit])
    return np.stack(xs)[keep], np.stack(ys)[keep]


# --------------------------------------------------------------------------------------------- builder

def _puzzle_set(inputs: np.ndarray, labels: np.ndarray, aug: bool) -> PuzzleSet:
    """One group per base maze; with ``aug`` the group holds its 8 dihedral versions (identity first)."""
    b = PuzzleSetBuilder(seq_len=inputs.shape[1] * inputs.shape[2])
    transforms = range(dihedral.NUM_TRANSFORMS) if aug else (0,)
    for x, y in zip(inputs, labels):
        for t in transforms:
            b.add_puzzle(0, dihedral.transform(x, t).reshape(1, -1), dihedral.transform(y, t).reshape(1, -1))
        b.end_group()
    return b.build()


def build_maze_dataset(out_dir: str | Path, *, source: str = "generate", csv_train: str | Path | None = None,
                       csv_test: str | Path | None = None, size: int | tuple[int, int] | None = None,
                       wall_density: float = DEFAULT_WALL_DENSITY, min_path: int = DEFAULT_MIN_PATH,
                       train_size: int | None = 1000, test_size: int | None = 1000, aug: bool = False,
                       seed: int = 0, workers: int | None = None, progress: bool = True) -> Path:
    """Build a Maze dataset directory (train/ and test/) in the shared format and return its path.

    ``source="generate"``: ``train_size`` + ``test_size`` new mazes of ``size`` (default 30x30; seeds
    (seed, 0, i) for train and (seed, 1, i) for test). ``source="csv"``: the original CSV files
    ``csv_train`` / ``csv_test``; the side is read from the files (``size``, when given, must match) and
    ``train_size`` / ``test_size`` subsample with ``seed`` (None = all rows).
    ``aug`` (default False, like the public builder; the paper mentions 8): each training maze becomes a
    group of its 8 dihedral versions, identity first. The test split is never augmented. Every puzzle
    has identifier 0 (one shared puzzle embedding).
    """
    n_max = (train_size or 1000) * (8 if aug else 1) + (test_size or 1000)
    cells = math.prod(_shape(size)) if size is not None else DEFAULT_SIZE ** 2
    check_output_dir(out_dir, need_bytes=2 * cells * n_max + (1 << 20))   # before any generation
    if source == "generate":
        shape = _shape(DEFAULT_SIZE if size is None else size)
        gen = partial(generate_many, seed=seed, workers=workers, size=shape, wall_density=wall_density,
                      min_path=min_path, progress=progress)
        splits = {"train": gen(1000 if train_size is None else train_size, stream=0),
                  "test": gen(1000 if test_size is None else test_size, stream=1)}
        opts = dict(wall_density=wall_density, min_path=min_path,
                    generator="random walls + BFS double sweep for S/G; canonical shortest path label")
    elif source == "csv":
        if csv_train is None or csv_test is None:
            raise ConfigError("source='csv' needs both csv_train and csv_test")
        splits = {"train": read_maze_csv(csv_train, train_size, seed),
                  "test": read_maze_csv(csv_test, test_size, seed)}
        shape = splits["train"][0].shape[1:]
        if splits["test"][0].shape[1:] != shape:
            raise DatasetError(f"{csv_test}: mazes are {splits['test'][0].shape[1:]}, {csv_train} has {shape}")
        if size is not None and _shape(size) != shape:
            raise DatasetError(f"{csv_train}: mazes are {shape[0]}x{shape[1]}, expected size {_shape(size)}")
        opts = dict(csv_train=str(csv_train), csv_test=str(csv_test))
    else:
        raise ConfigError(f"maze source must be 'generate' or 'csv', got {source!r}")
    if aug and shape[0] != shape[1]:
        raise ConfigError(f"dihedral augmentation needs square mazes, got {shape[0]}x{shape[1]}")

    train_keys = {x.tobytes() for x in splits["train"][0]}
    overlap = sum(x.tobytes() in train_keys for x in splits["test"][0])
    out = {}
    for split, (inputs, labels) in splits.items():
        split_aug = aug and split == "train"
        ps = _puzzle_set(inputs, labels, split_aug)
        lengths = (labels == PATH).sum((1, 2)) + 1
        extra = dict(source=source, size=list(shape), aug=split_aug, aug_requested=aug,
                     aug_transforms=dihedral.NUM_TRANSFORMS if split_aug else 1, seed=seed,
                     train_size=len(splits["train"][0]), test_size=len(splits["test"][0]),
                     groups=ps.num_groups, puzzles=ps.num_puzzles, examples=ps.num_examples,
                     path_length=dict(min=int(lengths.min()), mean=float(lengths.mean()),
                                      max=int(lengths.max())) if len(lengths) else None,
                     aug_note="8 dihedral versions per training maze when aug; default off (public "
                              "builder), the paper mentions 8", test_inputs_also_in_train=int(overlap), **opts)
        meta = DatasetMetadata(pad_id=PAD, ignore_label_id=0, blank_identifier_id=0, vocab_size=VOCAB_SIZE,
                               seq_len=shape[0] * shape[1], num_puzzle_identifiers=1,
                               total_groups=ps.num_groups, mean_puzzle_examples=1.0, task="maze",
                               grid_shape=list(shape), extra=extra)
        out[split] = (meta, {"all": ps})
    return write_dataset(out_dir, out, ["<blank>"])
