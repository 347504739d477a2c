"""Sudoku: tokens, parsing, an exact solver that rates difficulty, a generator, augmentation, the
Sudoku-Extreme CSV importer and the dataset builder (spec sections 3 and 6).

Grids have box size ``b`` (3 for 9x9, 2 for 4x4) and side ``N = b*b``. A board is an ``np.uint8`` array
of shape ``(N, N)`` with 0 for a blank and 1..N for digits. Tokens (spec section 3): 0 PAD, 1 blank,
2..N+1 the digits 1..N, so the vocabulary has N+2 entries (11 for 9x9) and a board is a row of N*N tokens.

Difficulty rating. :func:`solve` propagates naked and hidden singles and otherwise guesses on the cell
with the fewest candidates. Its ``backtracks`` count is the number of guesses that ran into a
contradiction while exhausting the search (with ``limit=2``, a proof of uniqueness). It is 0 for puzzles
that singles alone solve and grows with how much guessing a puzzle needs, like the tdoku rating of
Sudoku-Extreme (its ``rating`` column); the two are analogous, not numerically equal.
"""

from __future__ import annotations

import csv
import functools
import multiprocessing
import os
import random
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, NoReturn

import numpy as np

from trm.data.format import DatasetMetadata, PuzzleSet, check_output_dir, write_dataset
from trm.errors import DatasetError, PuzzleError

PAD_ID = 0
BLANK_ID = 1
DIGIT_OFFSET = 1  # token = digit + 1 (blank 0 -> 1, digit d -> d + 1)
_SIDE_TO_BOX = {4: 2, 9: 3}
_SEPARATORS = frozenset(" \t\r\n|-+")


def vocab_size(size: int = 9) -> int:
    """N + 2: PAD, blank and the N digits."""
    return _box_of(size) ** 2 + 2


def _box_of(size: int) -> int:
    if size not in _SIDE_TO_BOX:
        raise PuzzleError(f"unsupported Sudoku size {size}: expected 9 (3x3 boxes) or 4 (2x2 boxes)")
    return _SIDE_TO_BOX[size]


def _side_of_cells(cells: int) -> int:
    for side in _SIDE_TO_BOX:
        if side * side == cells:
            return side
    raise PuzzleError(f"a board has {cells} cells; expected 81 (9x9) or 16 (4x4)")


# ---------------------------------------------------------------------------------------------------
# Tokens


def encode_board(board: np.ndarray) -> np.ndarray:
    """Boards ``[..., N, N]`` (0 blank) -> token rows ``[..., N*N]`` (uint8, blank 1, digit d -> d+1)."""
    b = np.asarray(board)
    n = b.shape[-1] if b.ndim >= 2 else 0
    if b.ndim < 2 or b.shape[-2] != n or n not in _SIDE_TO_BOX:
        raise PuzzleError(f"boards must have shape [..., N, N] with N = 4 or 9, got {b.shape}")
    if b.size and (b.min() < 0 or b.max() > n):
        raise PuzzleError(f"board values must lie in 0..{n} (0 = blank), found {b.min()}..{b.max()}")
    return b.reshape(*b.shape[:-2], n * n).astype(np.uint8) + np.uint8(DIGIT_OFFSET)


def decode_tokens(tokens: np.ndarray, size: int = 9) -> np.ndarray:
    """Token rows ``[..., N*N]`` -> boards ``[..., N, N]`` (uint8). PAD and blank both decode to 0."""
    t = np.asarray(tokens)
    n = _box_of(size) ** 2
    if t.shape[-1] != n * n:
        raise PuzzleError(f"token rows have length {t.shape[-1]}, expected {n * n} for {n}x{n}")
    if t.size and (t.min() < 0 or t.max() > n + 1):
        raise PuzzleError(f"tokens must lie in 0..{n + 1} for {n}x{n}, found {t.min()}..{t.max()}")
    out = np.where(t > 0, t.astype(np.int64) - DIGIT_OFFSET, 0).astype(np.uint8)
    return out.reshape(*t.shape[:-1], n, n)


# ---------------------------------------------------------------------------------------------------
# Text


def parse_sudoku(text: str, size: int | None = None) -> np.ndarray:
    """Parse N*N cells ('.' or '0' blank, digits 1..N); spaces, newlines and '|' '-' '+' are ignored.

    ``size`` (9 or 4) is inferred from the number of cells when not given. Raises PuzzleError naming
    the fault: a bad character (and its position), a wrong cell count, a digit above N, or two equal
    givens in one row, column or box.
    """
    cells: list[int] = []
    line, col = 1, 0
    for pos, ch in enumerate(text):
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
        if ch in _SEPARATORS:
            continue
        if ch == ".":
            cells.append(0)
        elif "0" <= ch <= "9":
            cells.append(ord(ch) - 48)
        else:
            raise PuzzleError(f"bad character {ch!r} at position {pos} (line {line}, column {col}); "
                              "expected a digit, '.' or '0' for a blank, or a separator ' |-+'")
    if size is None:
        if len(cells) not in (81, 16):
            raise PuzzleError(f"found {len(cells)} cells; expected 81 (9x9) or 16 (4x4)")
        size = _side_of_cells(len(cells))
    n = _box_of(size) ** 2
    if len(cells) != n * n:
        raise PuzzleError(f"found {len(cells)} cells; expected {n * n} for a {n}x{n} Sudoku")
    board = np.asarray(cells, dtype=np.uint8).reshape(n, n)
    if board.max() > n:
        r, c = np.argwhere(board > n)[0]
        raise PuzzleError(f"digit {board[r, c]} at row {r + 1}, column {c + 1} exceeds {n}")
    _check_givens(board)
    return board


def _check_givens(board: np.ndarray) -> None:
    """Raise PuzzleError naming the first unit that holds a digit twice."""
    n = board.shape[0]
    b = _box_of(n)
    g = _geometry(b)
    flat = board.reshape(-1).tolist()
    for kind, units in (("row", g.units[:n]), ("column", g.units[n:2 * n]), ("box", g.units[2 * n:])):
        for k, unit in enumerate(units):
            seen: dict[int, int] = {}
            for cell in unit:
                d = flat[cell]
                if d and d in seen:
                    where = (f"columns {seen[d] % n + 1} and {cell % n + 1}" if kind == "row" else
                             f"rows {seen[d] // n + 1} and {cell // n + 1}" if kind == "column" else
                             f"cells r{seen[d] // n + 1}c{seen[d] % n + 1} and r{cell // n + 1}c{cell % n + 1}")
                    raise PuzzleError(f"contradictory givens: digit {d} appears twice in {kind} {k + 1} ({where})")
                seen[d] = cell


def format_sudoku(board: np.ndarray) -> str:
    """A pretty grid ('.' for blanks, '|' between stacks, '-+-' rules between bands) that parses back."""
    board = _as_board(board)
    n = board.shape[0]
    b = _box_of(n)
    rows = []
    for r in range(n):
        if r and r % b == 0:
            rows.append("-+-".join("-" * (2 * b - 1) for _ in range(b)))
        chars = ["." if v == 0 else str(v) for v in board[r].tolist()]
        rows.append(" | ".join(" ".join(chars[s * b:(s + 1) * b]) for s in range(b)))
    return "\n".join(rows)


def to_line(board: np.ndarray) -> str:
    """One-line form, '.' for blanks (the Sudoku-Extreme CSV format)."""
    return "".join("." if v == 0 else str(v) for v in _as_board(board).reshape(-1).tolist())


def _as_board(board) -> np.ndarray:
    """Accept a string, [N, N] or [N*N] array of 0..N; return a uint8 [N, N] board."""
    if isinstance(board, str):
        return parse_sudoku(board)
    a = np.asarray(board)
    if a.dtype.kind not in "iu":
        raise PuzzleError(f"a board must hold integers, got dtype {a.dtype}")
    side = _side_of_cells(a.size) if a.ndim in (1, 2) else -1
    if a.ndim == 2 and a.shape != (side, side) or a.ndim not in (1, 2):
        raise PuzzleError(f"a board must have shape [N, N] or [N*N] with N = 4 or 9, got {a.shape}")
    if a.size and (a.min() < 0 or a.max() > side):
        raise PuzzleError(f"board values must lie in 0..{side} (0 = blank), found {a.min()}..{a.max()}")
    return a.astype(np.uint8).reshape(side, side)


# ---------------------------------------------------------------------------------------------------
# Solver: bitmask candidates, naked + hidden singles, guessing on the cell with the fewest candidates


@dataclass(frozen=True)
class _Geometry:
    box: int
    side: int
    cells: int
    full: int                              # all N candidate bits
    units: tuple[tuple[int, ...], ...]     # N rows, N columns, N boxes
    unit_masks: tuple[tuple[int, int, int], ...]  # per cell: its row, column and box index
    peers: tuple[tuple[int, ...], ...]     # per cell: the 3N - 2b - 1 other cells sharing a unit
    popcount: tuple[int, ...]              # popcount of every candidate mask


@functools.lru_cache(maxsize=None)
def _geometry(box: int) -> _Geometry:
    n = box * box
    rows = [tuple(r * n + c for c in range(n)) for r in range(n)]
    cols = [tuple(r * n + c for r in range(n)) for c in range(n)]
    boxes = [tuple((br * box + i) * n + bc * box + j for i in range(box) for j in range(box))
             for br in range(box) for bc in range(box)]
    where = [(c // n, c % n, (c // n // box) * box + (c % n) // box) for c in range(n * n)]
    peers = tuple(tuple(sorted((set(rows[r]) | set(cols[c]) | set(boxes[k])) - {cell}))
                  for cell, (r, c, k) in enumerate(where))
    return _Geometry(box, n, n * n, (1 << n) - 1, tuple(rows + cols + boxes), tuple(where), peers,
                     tuple(bin(m).count("1") for m in range(1 << n)))


@dataclass(frozen=True)
class SolveResult:
    """``solution``: the first solution found (uint8 [N, N]) or None; ``num_solutions``: solutions
    found, capped at ``limit``; ``backtracks``: guesses that hit a contradiction (the difficulty rating)."""

    solution: np.ndarray | None
    num_solutions: int
    backtracks: int

    @property
    def unique(self) -> bool:
        return self.num_solutions == 1


def _initial_candidates(g: _Geometry, values: list[int]) -> tuple[list[int], list[int]] | None:
    """Candidate masks with every given's digit struck from its peers; None if two givens clash.

    Also returns the blank cells left with a single candidate (to propagate)."""
    n = g.side
    used = [0] * (3 * n)
    for cell, v in enumerate(values):
        if v:
            bit = 1 << (v - 1)
            r, c, k = g.unit_masks[cell]
            if (used[r] | used[n + c] | used[2 * n + k]) & bit:
                return None
            used[r] |= bit
            used[n + c] |= bit
            used[2 * n + k] |= bit
    full, pop = g.full, g.popcount
    cands, queue = [0] * g.cells, []
    for cell, v in enumerate(values):
        if v:
            cands[cell] = 1 << (v - 1)
        else:
            r, c, k = g.unit_masks[cell]
            m = full & ~(used[r] | used[n + c] | used[2 * n + k])
            if not m:
                return None
            cands[cell] = m
            if pop[m] == 1:
                queue.append(cell)
    return cands, queue


def _propagate(cands: list[int], queue: list[int], peers, units, full: int) -> bool:
    """Apply naked singles (via ``queue``) and hidden singles to a fixed point; False on contradiction."""
    while True:
        while queue:
            cell = queue.pop()
            d = cands[cell]
            for p in peers[cell]:
                m = cands[p]
                if m & d:
                    m ^= d
                    if not m:
                        return False
                    cands[p] = m
                    if not m & (m - 1):
                        queue.append(p)
        for unit in units:  # hidden singles: a digit with one place left in a unit
            once = twice = placed = 0
            for cell in unit:
                m = cands[cell]
                if m & (m - 1):
                    twice |= once & m
                    once |= m
                else:
                    placed |= m
            if once | placed != full:
                return False  # some digit has no place left in this unit
            hidden = once & ~twice & ~placed
            if hidden:
                for cell in unit:
                    m = cands[cell]
                    h = m & hidden
                    if h and h != m:
                        if h & (h - 1):
                            return False  # two digits must both go in this one cell
                        cands[cell] = h
                        queue.append(cell)
        if not queue:
            return True


def _search(g: _Geometry, cands: list[int], queue: list[int], limit: int,
            rnd: random.Random | None = None) -> tuple[list[list[int]], int]:
    """Depth-first search; returns (up to ``limit`` solved candidate lists, failed guesses)."""
    peers, units, full, pop, ncell = g.peers, g.units, g.full, g.popcount, g.cells
    solutions: list[list[int]] = []
    failed = 0

    def visit(cands: list[int], queue: list[int]) -> bool:  # True once `limit` solutions are found
        nonlocal failed
        if not _propagate(cands, queue, peers, units, full):
            failed += 1
            return False
        best, fewest = -1, 99
        for cell in range(ncell):
            k = pop[cands[cell]]
            if 1 < k < fewest:
                best, fewest = cell, k
                if k == 2:
                    break
        if best < 0:
            solutions.append(cands)
            return len(solutions) >= limit
        m = cands[best]
        bits = []
        while m:
            bit = m & -m
            bits.append(bit)
            m ^= bit
        if rnd is not None:
            rnd.shuffle(bits)
        for bit in bits:
            child = cands.copy()
            child[best] = bit
            if visit(child, [best]):
                return True
        return False

    if not _propagate(cands, queue, peers, units, full):
        return [], 0
    visit(cands, [])
    return solutions, failed


def _to_values(cands: list[int]) -> list[int]:
    return [m.bit_length() for m in cands]


def solve(board, limit: int = 2) -> SolveResult:
    """Solve exactly; count solutions up to ``limit`` (2 proves uniqueness) and failed guesses.

    ``board``: [N, N] or [N*N] ints (0 blank) or a string for :func:`parse_sudoku`.
    A board whose givens clash has no solution (no error is raised).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    board = _as_board(board)
    g = _geometry(_box_of(board.shape[0]))
    start = _initial_candidates(g, board.reshape(-1).tolist())
    if start is None:
        return SolveResult(None, 0, 0)
    solutions, failed = _search(g, start[0], start[1], limit)
    first = None
    if solutions:
        first = np.asarray(_to_values(solutions[0]), np.uint8).reshape(g.side, g.side)
    return SolveResult(first, len(solutions), failed)


def rate(board) -> int:
    """The difficulty rating of a uniquely solvable puzzle: failed guesses of a full search."""
    res = solve(board, limit=2)
    if res.num_solutions != 1:
        raise PuzzleError(f"cannot rate a puzzle with {'no' if not res.num_solutions else 'several'} solutions")
    return res.backtracks


def valid_solutions(puzzles: np.ndarray, solutions: np.ndarray) -> np.ndarray:
    """Vectorised check over a batch ``[..., N, N]``: each solution is a complete valid grid that agrees
    with its puzzle's givens. Returns a bool array of the batch shape."""
    p, s = np.asarray(puzzles), np.asarray(solutions)
    if p.shape != s.shape or p.ndim < 2 or p.shape[-1] != p.shape[-2]:
        raise PuzzleError(f"puzzles {p.shape} and solutions {s.shape} must both be [..., N, N]")
    n = s.shape[-1]
    b = _box_of(n)
    batch = s.shape[:-2]
    if s.dtype != np.uint8:  # values outside 0..N become 0, which no valid grid contains
        s = np.where((s >= 0) & (s <= n), s, 0).astype(np.uint8)
    s = s.reshape(-1, n, n)
    bit = np.zeros(256, np.uint16)
    bit[1:n + 1] = 1 << np.arange(n)
    bits = bit[s]  # a unit is valid iff its cells' bits OR to all N bits
    want = (1 << n) - 1
    ok = np.all(np.bitwise_or.reduce(bits, axis=2) == want, axis=1)
    ok &= np.all(np.bitwise_or.reduce(bits, axis=1) == want, axis=1)
    boxes = np.bitwise_or.reduce(bits.reshape(-1, b, b, b, b), axis=(2, 4))
    ok &= np.all(boxes == want, axis=(1, 2))
    p = p.reshape(-1, n, n)
    ok &= np.all((p == 0) | (p == s), axis=(1, 2))
    return ok.reshape(batch)


def check_solution(board, solution) -> bool:
    """True iff ``solution`` is a complete valid grid that keeps every given of ``board``."""
    try:
        b, s = _as_board(board), _as_board(solution)
    except PuzzleError:
        return False
    return b.shape == s.shape and bool(valid_solutions(b, s))


# ---------------------------------------------------------------------------------------------------
# Generator


@dataclass(frozen=True)
class Difficulty:
    """A generator setting: dig to ``givens`` clues (None: to a minimal puzzle, where no clue can be
    removed without losing uniqueness), then keep the puzzle only if its rating (failed guesses of
    :func:`solve`) lies in [min_backtracks, max_backtracks]."""

    givens: int | None
    min_backtracks: int = 0
    max_backtracks: int | None = None
    description: str = ""


# Presets per grid side. Random minimal 9x9 puzzles (21-28 clues, mostly 23-26) rate 0 about 40% of
# the time, >= 1 about 60%, >= 5 about 15%, >= 10 about 4%; every 4x4 puzzle rates 0 (singles suffice),
# so 4x4 presets differ by clue count only (4 is the fewest clues a unique 4x4 puzzle can have).
# Generation rates: benchmarks/bench_sudoku_generator.py.
DIFFICULTIES: dict[str, dict[int, Difficulty]] = {
    "beginner": {
        9: Difficulty(45, 0, 0, "45 givens, solvable by singles alone (the CPU default preset)"),
        4: Difficulty(12, 0, None, "12 givens"),
    },
    "easy": {
        9: Difficulty(40, 0, 0, "40 givens, solvable by singles alone"),
        4: Difficulty(10, 0, None, "10 givens"),
    },
    "medium": {
        9: Difficulty(32, 0, None, "32 givens"),
        4: Difficulty(8, 0, None, "8 givens"),
    },
    "hard": {
        9: Difficulty(None, 1, None, "minimal puzzle that needs guessing (rating >= 1)"),
        4: Difficulty(None, 0, None, "minimal puzzle (4-6 givens)"),
    },
    "extreme": {
        9: Difficulty(None, 10, None, "minimal puzzle with rating >= 10 (the top ~4% of minimal puzzles)"),
        4: Difficulty(4, 0, None, "4 givens, the fewest possible"),
    },
}


def difficulty_preset(name: str, size: int = 9) -> Difficulty:
    if name not in DIFFICULTIES:
        raise PuzzleError(f"unknown Sudoku difficulty {name!r}; choose from {sorted(DIFFICULTIES)}")
    return DIFFICULTIES[name][_box_of(size) ** 2]


def _random_grid(g: _Geometry, rnd: random.Random) -> list[int]:
    """A random complete grid: search from the empty grid, trying candidates in random order."""
    cands = [g.full] * g.cells
    solutions, _ = _search(g, cands, [], 1, rnd)
    return _to_values(solutions[0])


def _has_other_solution(g: _Geometry, values: list[int], cell: int, digit: int) -> bool:
    """Does the puzzle ``values`` (cell blank) have a solution with ``cell`` != ``digit``?"""
    start = _initial_candidates(g, values)
    if start is None:
        return False
    cands, queue = start
    m = cands[cell] & ~(1 << (digit - 1))
    if not m:
        return False
    cands[cell] = m
    if not m & (m - 1):
        queue.append(cell)
    solutions, _ = _search(g, cands, queue, 1)
    return bool(solutions)


def _dig(g: _Geometry, grid: list[int], rnd: random.Random, givens: int | None) -> list[int]:
    """Blank cells of ``grid`` in random order while the puzzle stays uniquely solvable, stopping at
    ``givens`` clues; with ``givens=None`` the result is minimal."""
    values = grid.copy()
    order = list(range(g.cells))
    rnd.shuffle(order)
    left = g.cells
    for cell in order:
        if givens is not None and left <= givens:
            break
        digit = values[cell]
        values[cell] = 0
        if _has_other_solution(g, values, cell, digit):
            values[cell] = digit  # needed for uniqueness now, hence forever (fewer clues never helps)
        else:
            left -= 1
    return values


def generate_puzzle(rng: np.random.Generator | int, size: int = 9, givens: int | None = None,
                    min_backtracks: int = 0, max_backtracks: int | None = None,
                    max_attempts: int = 100_000) -> tuple[np.ndarray, np.ndarray, int]:
    """Generate a uniquely solvable puzzle: a random full grid, cells blanked in random order while the
    solution stays unique down to ``givens`` clues (None: minimal), and accepted only if its rating is in
    [min_backtracks, max_backtracks] and the clue target was reached; else retry with a new grid.

    Returns (puzzle, solution, rating) with uint8 [N, N] boards.
    """
    g = _geometry(_box_of(size))
    if givens is not None and not 0 <= givens <= g.cells:
        raise PuzzleError(f"givens must lie in 0..{g.cells}, got {givens}")
    if max_backtracks is not None and max_backtracks < min_backtracks:
        raise PuzzleError(f"max_backtracks {max_backtracks} < min_backtracks {min_backtracks}")
    rng = np.random.default_rng(rng)
    rnd = random.Random(int(rng.integers(2 ** 63)))
    for _ in range(max_attempts):
        grid = _random_grid(g, rnd)
        values = _dig(g, grid, rnd, givens)
        if givens is not None and sum(v > 0 for v in values) != givens:
            continue
        start = _initial_candidates(g, values)
        assert start is not None   # the givens come from a valid grid
        _, rating = _search(g, start[0], start[1], 2)
        if rating >= min_backtracks and (max_backtracks is None or rating <= max_backtracks):
            shape = (g.side, g.side)
            return (np.asarray(values, np.uint8).reshape(shape), np.asarray(grid, np.uint8).reshape(shape),
                    rating)
    raise PuzzleError(f"no {size}x{size} puzzle with givens={givens}, rating in "
                      f"[{min_backtracks}, {max_backtracks}] after {max_attempts} attempts")


def _generate_indexed(index: int, seed: int, stream: int, size: int,
                      spec: Difficulty) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream, index]))
    return generate_puzzle(rng, size, spec.givens, spec.min_backtracks, spec.max_backtracks)


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def generate_many(n: int, seed: int, *, size: int = 9, difficulty: str | Difficulty = "medium",
                  workers: int | None = None, stream: int = 0,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``n`` puzzles in parallel (fork). Puzzle i is seeded from (seed, stream, i) only, so the
    output does not depend on ``workers``; another ``stream`` gives an independent set (e.g. a test split).

    Returns (puzzles uint8 [n, N, N], solutions uint8 [n, N, N], ratings int32 [n]).
    """
    spec = difficulty_preset(difficulty, size) if isinstance(difficulty, str) else difficulty
    side = _box_of(size) ** 2
    workers = _default_workers() if workers is None else max(1, workers)
    job = functools.partial(_generate_indexed, seed=seed, stream=stream, size=size, spec=spec)
    puzzles = np.zeros((n, side, side), np.uint8)
    solutions = np.zeros((n, side, side), np.uint8)
    ratings = np.zeros(n, np.int32)
    bar = _progress(n, f"generating {n} {side}x{side} puzzles", progress)
    if workers == 1 or n < 2:
        results: Iterable = map(job, range(n))
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(min(workers, n))
        results = pool.imap(job, range(n), chunksize=max(1, min(64, n // (8 * workers))))
    try:
        for i, (p, s, r) in enumerate(results):
            puzzles[i], solutions[i], ratings[i] = p, s, r
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    return puzzles, solutions, ratings


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total or None, desc=desc, disable=not enabled, unit="puzzle", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------------
# Augmentation (validity preserving): digits permuted; transpose with p = 0.5; bands and the rows
# inside each band shuffled; stacks and the columns inside each stack shuffled.


def _random_maps(rng: np.random.Generator, count: int, box: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random transforms as (digit_map [count, N+1] with 0 -> 0, source cell [count, N*N])."""
    n = box * box
    digit_map = np.zeros((count, n + 1), np.uint8)
    digit_map[:, 1:] = np.argsort(rng.random((count, n)), axis=1) + 1
    transpose = rng.random(count) < 0.5

    def line_perm() -> np.ndarray:  # [count, N]: new row (column) i takes old row perm[i]
        groups = np.argsort(rng.random((count, box)), axis=1)
        inner = np.argsort(rng.random((count, box, box)), axis=2)
        return (groups[:, :, None] * box + inner).reshape(count, n)

    rows, cols = line_perm(), line_perm()
    r, c = rows[:, :, None], cols[:, None, :]
    src = np.where(transpose[:, None, None], c * n + r, r * n + c).reshape(count, n * n)
    return digit_map, src


def augment_batch(puzzles: np.ndarray, solutions: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One independent random transform per board, the same for a puzzle and its solution.

    Boards: [B, N, N] or [B, N*N] digits (0 blank); returns the same shape, dtype uint8.
    """
    p, s = np.asarray(puzzles), np.asarray(solutions)
    if p.shape != s.shape or p.ndim not in (2, 3):
        raise PuzzleError(f"puzzles {p.shape} and solutions {s.shape} must both be [B, N, N] or [B, N*N]")
    count, cells = p.shape[0], int(np.prod(p.shape[1:]))
    digit_map, src = _random_maps(rng, count, _box_of(_side_of_cells(cells)))
    rows = np.arange(count)[:, None]
    out = []
    for x in (p, s):
        moved = x.reshape(count, cells)[rows, src]
        out.append(digit_map[rows, moved].reshape(x.shape))
    return out[0], out[1]


def augment(puzzle: np.ndarray, solution: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random validity-preserving transform to a puzzle and its solution."""
    p, s = augment_batch(np.asarray(puzzle)[None], np.asarray(solution)[None], rng)
    return p[0], s[0]


# ---------------------------------------------------------------------------------------------------
# Sudoku-Extreme CSV (columns source, question, answer, rating; '.' blank)


def _lookup(n: int, blanks: str) -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    for ch in blanks:
        lut[ord(ch)] = 0
    lut[ord("1"):ord("1") + n] = np.arange(1, n + 1)
    return lut


def read_sudoku_csv(path: str | Path, min_rating: int | None = None, limit: int | None = None,
                    seed: int | None = None, size: int | None = None, progress: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a Sudoku-Extreme CSV: (puzzles uint8 [n, N, N], solutions uint8 [n, N, N], ratings int64 [n]).

    Mirrors the public builder: read every row, keep rows with ``rating >= min_rating``, then, if
    ``limit`` is below the number kept, take rows ``np.random.choice(kept, limit, replace=False)`` drawn
    from a legacy ``RandomState(seed)`` (the same draw as ``np.random.seed(seed)`` followed by the
    public ``np.random.choice``), in the order drawn. The exact RNG call matters for reproducing a
    subsample. Every kept row is validated (lengths, characters, a complete valid answer that keeps the
    question's givens); faults raise DatasetError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such CSV file")
    cells = None if size is None else _box_of(size) ** 4
    qbuf, abuf = bytearray(), bytearray()
    ratings, lines = array("q"), array("q")
    bar = _progress(0, f"reading {path.name}", progress)
    bar.unit = "row"
    with open(path, newline="", encoding="utf-8-sig") as f:      # a byte-order mark is not a character
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader, [])]
        except (csv.Error, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: unreadable CSV header ({e})") from None
        missing = [c for c in ("question", "answer", "rating") if c not in header]
        if missing:
            raise DatasetError(f"{path}:1: header {header} lacks column(s) {missing}; "
                               "expected source,question,answer,rating")
        qi, ai, ri, width = header.index("question"), header.index("answer"), header.index("rating"), len(header)
        try:
            for row in reader:
                if not reader.line_num & 0xFFFF:
                    bar.update(0x10000)
                if not row:
                    continue
                if len(row) != width:
                    _row_error(path, reader, f"{len(row)} fields, expected {width} ({','.join(header)})")
                q, a = row[qi].strip(), row[ai].strip()
                try:
                    rating = int(row[ri])
                except ValueError:
                    _row_error(path, reader, f"rating {row[ri]!r} is not an integer")
                if min_rating is not None and rating < min_rating:
                    continue
                if cells is None:
                    cells = len(q) if len(q) in (81, 16) else 81
                if len(q) != cells or len(a) != cells:
                    _row_error(path, reader, f"question has {len(q)} and answer {len(a)} characters, "
                                             f"expected {cells}")
                try:
                    qbuf += q.encode("ascii")
                    abuf += a.encode("ascii")
                except UnicodeEncodeError:
                    _row_error(path, reader, "non-ASCII character in question or answer")
                ratings.append(rating)
                lines.append(reader.line_num)
        except (csv.Error, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
        finally:
            bar.close()
    cells = cells or 81
    side = _side_of_cells(cells)
    questions = np.frombuffer(qbuf, np.uint8).reshape(-1, cells)  # writable: decoded in place below
    answers = np.frombuffer(abuf, np.uint8).reshape(-1, cells)
    _decode_rows(path, questions, answers, np.frombuffer(lines, np.int64), side)
    keep = np.arange(len(questions))
    if limit is not None and limit < len(questions):
        keep = np.random.RandomState(seed).choice(len(questions), size=limit, replace=False)
    shape = (-1, side, side)
    return (questions[keep].reshape(shape), answers[keep].reshape(shape),
            np.frombuffer(ratings, np.int64)[keep].copy())


def _row_error(path: Path, reader, msg: str) -> NoReturn:
    raise DatasetError(f"{path}:{reader.line_num}: {msg}") from None


def _decode_rows(path: Path, questions: np.ndarray, answers: np.ndarray, lines: np.ndarray,
                 side: int, chunk: int = 1 << 18) -> None:
    """Characters -> digits in place, in chunks; raise DatasetError at the first faulty row."""
    q_lut, a_lut = _lookup(side, ".0"), _lookup(side, "")
    for lo in range(0, len(questions), chunk):
        hi = min(lo + chunk, len(questions))
        for name, buf, lut in (("question", questions, q_lut), ("answer", answers, a_lut)):
            raw = buf[lo:hi].copy()
            buf[lo:hi] = lut[raw]
            bad = np.argwhere(buf[lo:hi] == 255)
            if len(bad):
                i, j = bad[0]
                allowed = f"'.', '0' or 1..{side}" if name == "question" else f"1..{side}"
                raise DatasetError(f"{path}:{lines[lo + i]}: {name} has {chr(raw[i, j])!r} at position "
                                   f"{j + 1}; expected {allowed}")
        ok = valid_solutions(questions[lo:hi].reshape(-1, side, side), answers[lo:hi].reshape(-1, side, side))
        if not ok.all():
            i = int(np.argmin(ok))
            raise DatasetError(f"{path}:{lines[lo + i]}: the answer is not a valid {side}x{side} grid "
                               "that keeps the question's givens")


# ---------------------------------------------------------------------------------------------------
# Dataset builder


def _puzzle_set(puzzles: np.ndarray, solutions: np.ndarray, num_aug: int,
                         rng: np.random.Generator, progress: bool) -> PuzzleSet:
    """Tokenised set: group g = base puzzle g, holding the original then ``num_aug`` augmentations; one
    example per puzzle, all with puzzle identifier 0 (Sudoku shares a single identifier)."""
    base, cells = len(puzzles), puzzles[0].size if len(puzzles) else 0
    per = 1 + num_aug
    inputs = np.empty((base * per, cells), np.uint8)
    labels = np.empty((base * per, cells), np.uint8)
    chunk = max(1, (1 << 16) // per)
    bar = _progress(base, "augmenting puzzles", progress)
    for lo in range(0, base, chunk):
        hi = min(lo + chunk, base)
        p = puzzles[lo:hi].reshape(hi - lo, cells)
        s = solutions[lo:hi].reshape(hi - lo, cells)
        ins = np.repeat(p[:, None], per, axis=1)
        outs = np.repeat(s[:, None], per, axis=1)
        if num_aug:
            ap, as_ = augment_batch(np.repeat(p, num_aug, axis=0), np.repeat(s, num_aug, axis=0), rng)
            ins[:, 1:] = ap.reshape(hi - lo, num_aug, cells)
            outs[:, 1:] = as_.reshape(hi - lo, num_aug, cells)
        inputs[lo * per:hi * per] = ins.reshape(-1, cells) + DIGIT_OFFSET  # digits -> tokens
        labels[lo * per:hi * per] = outs.reshape(-1, cells) + DIGIT_OFFSET
        bar.update(hi - lo)
    bar.close()
    n = base * per
    return PuzzleSet(inputs=inputs, labels=labels, puzzle_identifiers=np.zeros(n, np.int32),
                     puzzle_indices=np.arange(n + 1, dtype=np.int32),
                     group_indices=np.arange(0, n + 1, per, dtype=np.int32))


def _metadata(size: int, ps: PuzzleSet, extra: dict) -> DatasetMetadata:
    return DatasetMetadata(pad_id=PAD_ID, ignore_label_id=0, blank_identifier_id=0,
                           vocab_size=size + 2, seq_len=size * size, num_puzzle_identifiers=1,
                           total_groups=ps.num_groups, mean_puzzle_examples=1, task="sudoku",
                           grid_shape=[size, size], extra=extra)


def build_sudoku_dataset(out_dir: str | Path, *, source: str = "generate", csv_train: str | Path | None = None,
                         csv_test: str | Path | None = None, difficulty: str = "medium", size: int = 9,
                         train_size: int = 1000, num_aug: int = 1000, test_size: int | None = None,
                         seed: int = 0, min_rating: int | None = None, workers: int | None = None,
                         progress: bool = True) -> Path:
    """Build a Sudoku dataset directory in the shared on-disk format (spec section 6).

    Train: ``train_size`` base puzzles, each a group of 1 + ``num_aug`` one-example puzzles (the
    original first), all with the single shared puzzle identifier 0. Test: one group per puzzle, no
    augmentation. ``source="generate"``: puzzles from :func:`generate_many` at ``difficulty`` (train
    stream 0, test stream 1; ``test_size`` defaults to 1000). ``source="csv"``: Sudoku-Extreme files;
    train is ``csv_train`` filtered by ``min_rating`` and subsampled to ``train_size`` with ``seed``
    (as the public builder); test is every row of ``csv_test`` passing ``min_rating`` (the public
    builder filters both), or a seeded subsample of ``test_size`` rows if given.
    """
    _box_of(size)
    if train_size < 1 or num_aug < 0 or (test_size is not None and test_size < 1):
        raise DatasetError(f"need train_size >= 1, num_aug >= 0, test_size >= 1; got {train_size}, "
                           f"{num_aug}, {test_size}")
    examples = train_size * (1 + num_aug) + (1000 if test_size is None else test_size)
    check_output_dir(out_dir, need_bytes=2 * size * size * examples + (1 << 20))   # before hours of work
    options = dict(source=source, difficulty=difficulty, size=size, train_size=train_size, num_aug=num_aug,
                   test_size=test_size, seed=seed, min_rating=min_rating)
    if source == "generate":
        spec = difficulty_preset(difficulty, size)
        options["difficulty_spec"] = asdict(spec)
        test_size = options["test_size"] = 1000 if test_size is None else test_size
        train = generate_many(train_size, seed, size=size, difficulty=spec, workers=workers, stream=0,
                              progress=progress)
        test = generate_many(test_size, seed, size=size, difficulty=spec, workers=workers, stream=1,
                             progress=progress)
    elif source == "csv":
        if csv_train is None or csv_test is None:
            raise DatasetError("source='csv' needs both csv_train and csv_test (Sudoku-Extreme train.csv, test.csv)")
        options.update(csv_train=str(csv_train), csv_test=str(csv_test))
        options.pop("difficulty")
        train = read_sudoku_csv(csv_train, min_rating=min_rating, limit=train_size, seed=seed, size=size,
                                progress=progress)
        test = read_sudoku_csv(csv_test, min_rating=min_rating, limit=test_size, seed=seed, size=size,
                               progress=progress)
        for name, part in (("csv_train", train), ("csv_test", test)):
            if not len(part[0]):
                raise DatasetError(f"{name}: no rows left (min_rating={min_rating})")
    else:
        raise DatasetError(f"unknown Sudoku source {source!r}; expected 'generate' or 'csv'")

    aug_rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    train_set = _puzzle_set(train[0], train[1], num_aug, aug_rng, progress)
    test_set = _puzzle_set(test[0], test[1], 0, aug_rng, False)

    def extra(split: str, part, ps: PuzzleSet) -> dict:
        r = part[2]
        return dict(builder=options, source=source, split=split, base_puzzles=len(part[0]),
                    examples=ps.num_examples, rating_mean=float(r.mean()), rating_max=int(r.max()),
                    givens_mean=float((part[0] > 0).sum(axis=(1, 2)).mean()), data_version=1)

    splits = {"train": (_metadata(size, train_set, extra("train", train, train_set)), {"all": train_set}),
              "test": (_metadata(size, test_set, extra("test", test, test_set)), {"all": test_set})}
    return write_dataset(out_dir, splits, ["<blank>"])
