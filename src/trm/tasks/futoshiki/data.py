"""Futoshiki: puzzles, tokens, text form, an exact solver, a generator, augmentation and the builder.

A puzzle of side N (4..6 for the builder; 3..9 parse and solve) is a :class:`Futoshiki`: ``givens``
``[N, N]`` (0 blank, 1..N digits), ``h`` ``[N, N-1]`` (relation between cell (r, c) and (r, c+1): 0 none,
1 ``<``, 2 ``>``) and ``v`` ``[N-1, N]`` (between (r, c) and (r+1, c): 0 none, 1 ``^`` = top < bottom,
2 ``v`` = top > bottom). A solution is an NxN Latin square (each row and column holds 1..N once) that
keeps the givens and satisfies every inequality.

Tokens. The puzzle is laid out on a (2N-1)x(2N-1) grid, flattened row-major: position (2r, 2c) is cell
(r, c); (2r, 2c+1) the horizontal relation right of it; (2r+1, 2c) the vertical relation below it;
(2r+1, 2c+1) touches no pair and always holds the "none" relation. Token ids: 0 PAD (unused), 1 blank,
2..N+1 the digits 1..N, then N+2 none, N+3 ``<``, N+4 ``>``, N+5 ``^``, N+6 ``v``; the vocabulary has
N+7 entries and a puzzle is (2N-1)^2 tokens (N=4: vocab 11, 49 tokens; N=5: 12, 81; N=6: 13, 121).
The label is the same layout with every cell filled; the relation tokens are copied from the input.

Text form (``trm solve futoshiki PUZZLE``, :func:`parse_futoshiki` / :func:`format_futoshiki`): one line
per grid row, cells separated by whitespace, ``.`` or ``0`` a blank, a ``<`` or ``>`` token between two
cells an inequality; a line holding only ``^`` / ``v`` between two cell lines puts each sign under the
cell of the line above whose character column it shares (``^``: upper < lower, ``v``: upper > lower).
Empty lines are ignored; ``|`` also ends a line (one-line form). Example (N=4)::

    1   .   . < .
    ^
    .   .   .   .
            v
    .   3   .   .

    . > .   .   .
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from trm.data.format import DatasetMetadata, PuzzleSet, check_output_dir, write_dataset
from trm.errors import DatasetError, PuzzleError

PAD_ID = 0
BLANK_ID = 1
MIN_SIZE, MAX_SIZE = 3, 9           # parse / solve
BUILD_SIZES = (4, 5, 6)             # the dataset builder
NONE, LT, GT, UP, DOWN = range(5)   # relation codes on the token grid (offset by N+2 in tokens)
SIGNS = {LT: "<", GT: ">", UP: "^", DOWN: "v"}


class Futoshiki(NamedTuple):
    givens: np.ndarray   # [N, N] uint8, 0 blank
    h: np.ndarray        # [N, N-1] uint8: 0 none, 1 left < right, 2 left > right
    v: np.ndarray        # [N-1, N] uint8: 0 none, 1 top < bottom (^), 2 top > bottom (v)

    @property
    def size(self) -> int:
        return int(self.givens.shape[0])


def vocab_size(size: int) -> int:
    return size + 7


def seq_len(size: int) -> int:
    return (2 * size - 1) ** 2


def size_of_seq_len(n_tokens: int) -> int:
    side = int(round(n_tokens ** 0.5))
    if side * side != n_tokens or side % 2 == 0 or not MIN_SIZE <= (side + 1) // 2 <= MAX_SIZE:
        raise PuzzleError(f"{n_tokens} tokens is not a Futoshiki layout ((2N-1)^2 for N in {MIN_SIZE}..{MAX_SIZE})")
    return (side + 1) // 2


def empty_puzzle(n: int) -> Futoshiki:
    return Futoshiki(np.zeros((n, n), np.uint8), np.zeros((n, n - 1), np.uint8), np.zeros((n - 1, n), np.uint8))


# ---------------------------------------------------------------------------------------------------
# Tokens


def relation_grid(p: Futoshiki) -> np.ndarray:
    """[2N-1, 2N-1] relation codes (NONE at cells and corners)."""
    n = p.size
    g = np.zeros((2 * n - 1, 2 * n - 1), np.uint8)
    g[0::2, 1::2] = np.where(p.h == 1, LT, np.where(p.h == 2, GT, NONE))
    g[1::2, 0::2] = np.where(p.v == 1, UP, np.where(p.v == 2, DOWN, NONE))
    return g


def encode(p: Futoshiki, board: np.ndarray | None = None) -> np.ndarray:
    """A puzzle (and optionally the filled board to write in its cells) -> [(2N-1)^2] uint8 tokens."""
    n = p.size
    cells = p.givens if board is None else np.asarray(board)
    g = relation_grid(p) + np.uint8(n + 2)
    g[0::2, 0::2] = cells.astype(np.uint8) + BLANK_ID
    return g.reshape(-1)


def decode(tokens: np.ndarray) -> tuple[Futoshiki, np.ndarray]:
    """Tokens -> (the puzzle its relation tokens describe, the cell board: 0 for blank or a non-digit).

    Raises PuzzleError for a length that is no layout; relation positions holding other tokens count
    as no relation."""
    t = np.asarray(tokens).astype(np.int64).reshape(-1)
    n = size_of_seq_len(t.size)
    g = t.reshape(2 * n - 1, 2 * n - 1)
    cells = g[0::2, 0::2] - BLANK_ID
    board = np.where((cells >= 1) & (cells <= n), cells, 0).astype(np.uint8)
    rel = g - (n + 2)
    hr, vr = rel[0::2, 1::2], rel[1::2, 0::2]
    h = np.where(hr == LT, 1, np.where(hr == GT, 2, 0)).astype(np.uint8)
    v = np.where(vr == UP, 1, np.where(vr == DOWN, 2, 0)).astype(np.uint8)
    return Futoshiki(board, h, v), board


def decode_cells(tokens: np.ndarray) -> np.ndarray:
    """Token rows [B, S] -> cell boards [B, N, N] (0 where the token is no digit)."""
    t = np.asarray(tokens).astype(np.int64)
    n = size_of_seq_len(t.shape[-1])
    cells = t.reshape(*t.shape[:-1], 2 * n - 1, 2 * n - 1)[..., 0::2, 0::2] - BLANK_ID
    return np.where((cells >= 1) & (cells <= n), cells, 0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Text


def parse_futoshiki(text: str) -> Futoshiki:
    """The text form (module docstring) -> a puzzle; PuzzleError naming the line and the fault."""
    if not isinstance(text, str):
        raise PuzzleError(f"a Futoshiki must be text, got {type(text).__name__}")
    lines = [ln.rstrip() for ln in text.replace("|", "\n").replace("\t", " ").split("\n")]
    rows: list[list[int]] = []
    row_cols: list[list[int]] = []       # character column of each cell, per cell line
    hrel: list[list[int]] = []
    vrel: dict[int, list[tuple[int, int]]] = {}   # cell-line index above -> [(char column, code)]
    pending: tuple[int, list[tuple[int, int]]] | None = None
    for ln_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if set(line) <= set(" ^v"):
            if not rows:
                raise PuzzleError(f"line {ln_no}: a '^'/'v' line must come between two rows of cells")
            if pending is not None:
                raise PuzzleError(f"line {ln_no}: two '^'/'v' lines in a row")
            pending = (len(rows) - 1, [(i, 1 if ch == "^" else 2) for i, ch in enumerate(line) if ch != " "])
            continue
        cells: list[int] = []
        cols: list[int] = []
        rels: list[int] = []
        expect_cell, i = True, 0
        for tok_start, tok in _tokens(line):
            if tok in ("<", ">"):
                if expect_cell or not cells:
                    raise PuzzleError(f"line {ln_no}, column {tok_start + 1}: {tok!r} must stand between two cells")
                rels[-1] = 1 if tok == "<" else 2
                expect_cell = True
                continue
            if len(tok) != 1 or not (tok == "." or tok.isdigit()):
                raise PuzzleError(f"line {ln_no}, column {tok_start + 1}: bad token {tok!r}; expected a digit, "
                                  "'.' or '0' for a blank, '<' or '>' between cells, or a line of '^'/'v'")
            cells.append(0 if tok == "." else int(tok))
            cols.append(tok_start)
            rels.append(0)
            expect_cell = False
            i += 1
        if expect_cell and cells:
            raise PuzzleError(f"line {ln_no}: the line ends with an inequality sign")
        if pending is not None:
            vrel[pending[0]] = pending[1]
            pending = None
        rows.append(cells)
        row_cols.append(cols)
        hrel.append(rels[:-1])
    if pending is not None:
        raise PuzzleError("the last line is a '^'/'v' line; it must stand between two rows of cells")
    n = len(rows)
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise PuzzleError(f"found {n} rows of cells; expected N rows of N cells with N in {MIN_SIZE}..{MAX_SIZE}")
    for r, cells in enumerate(rows):
        if len(cells) != n:
            raise PuzzleError(f"row {r + 1} has {len(cells)} cells; a {n}-row Futoshiki needs {n} in every row")
    givens = np.asarray(rows, np.uint8)
    if givens.max() > n:
        r, c = np.argwhere(givens > n)[0]
        raise PuzzleError(f"digit {givens[r, c]} at row {r + 1}, column {c + 1} exceeds {n}")
    v = np.zeros((n - 1, n), np.uint8)
    for r, signs in vrel.items():
        for col, code in signs:
            dist = [abs(col - cc) for cc in row_cols[r]]
            c = int(np.argmin(dist))
            if dist[c] > 1:
                raise PuzzleError(f"the '{'^' if code == 1 else 'v'}' below row {r + 1} at character column "
                                  f"{col + 1} stands under no cell")
            v[r, c] = code
    p = Futoshiki(givens, np.asarray(hrel, np.uint8).reshape(n, n - 1), v)
    _check_givens(p)
    return p


def _tokens(line: str):
    """(start column, token) of the whitespace-separated tokens; '<' and '>' split off as their own."""
    i = 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        if line[i] in "<>":
            yield i, line[i]
            i += 1
            continue
        j = i
        while j < len(line) and line[j] not in " <>":
            j += 1
        yield i, line[i:j]
        i = j


def _check_givens(p: Futoshiki) -> None:
    g = p.givens
    for kind, lines in (("row", g), ("column", g.T)):
        for k, line in enumerate(lines):
            digits = line[line > 0]
            if len(set(digits.tolist())) != len(digits):
                d = next(x for x in digits.tolist() if (digits == x).sum() > 1)
                raise PuzzleError(f"contradictory givens: digit {d} appears twice in {kind} {k + 1}")
    for r, c, r2, c2, rel in _pairs(p):
        a, b = int(g[r, c]), int(g[r2, c2])
        if a and b and not (a < b if rel == 1 else a > b):
            raise PuzzleError(f"contradictory givens: r{r + 1}c{c + 1}={a} and r{r2 + 1}c{c2 + 1}={b} break "
                              f"the {'<' if rel == 1 else '>'} between them")


def _pairs(p: Futoshiki):
    """(r, c, r2, c2, rel) for every inequality: rel 1 means cell(r,c) < cell(r2,c2), 2 means >."""
    for r, c in zip(*np.nonzero(p.h)):
        yield int(r), int(c), int(r), int(c) + 1, int(p.h[r, c])
    for r, c in zip(*np.nonzero(p.v)):
        yield int(r), int(c), int(r) + 1, int(c), int(p.v[r, c])


def format_futoshiki(p: Futoshiki, board: np.ndarray | None = None) -> str:
    """The text form (cells 4 characters apart so the '^'/'v' line can align); parses back."""
    n = p.size
    cells = p.givens if board is None else np.asarray(board).reshape(n, n)
    out = []
    for r in range(n):
        line = ""
        for c in range(n):
            line += "." if cells[r, c] == 0 else str(int(cells[r, c]))
            if c < n - 1:
                line += {0: "   ", 1: " < ", 2: " > "}[int(p.h[r, c])]
        out.append(line)
        if r < n - 1:
            out.append("".join({0: " ", 1: "^", 2: "v"}[int(p.v[r, c])] + "   " for c in range(n)).rstrip())
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# Rules


def check_solution(p: Futoshiki, board: np.ndarray) -> bool:
    """A complete Latin square that keeps the givens and satisfies every inequality."""
    n = p.size
    b = np.asarray(board).astype(np.int64).reshape(n, n)
    want = np.arange(1, n + 1)
    if not ((np.sort(b, axis=1) == want).all() and (np.sort(b, axis=0) == want[:, None]).all()):
        return False
    if ((p.givens > 0) & (b != p.givens)).any():
        return False
    left, right = b[:, :-1], b[:, 1:]
    top, bottom = b[:-1], b[1:]
    ok_h = np.where(p.h == 1, left < right, np.where(p.h == 2, left > right, True))
    ok_v = np.where(p.v == 1, top < bottom, np.where(p.v == 2, top > bottom, True))
    return bool(ok_h.all() and ok_v.all())


def valid_tokens(inputs: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Per row of token arrays [B, S]: is the answer a valid solution of the input puzzle?"""
    inputs, answers = np.atleast_2d(inputs), np.atleast_2d(answers)
    out = np.zeros(len(inputs), bool)
    for i, (x, y) in enumerate(zip(inputs, answers)):
        p, _ = decode(x)
        y = np.asarray(y).astype(np.int64)
        n = p.size
        cells = y.reshape(2 * n - 1, 2 * n - 1)[0::2, 0::2] - BLANK_ID
        out[i] = bool(((cells >= 1) & (cells <= n)).all()) and check_solution(p, cells)
    return out


# ---------------------------------------------------------------------------------------------------
# Exact solver: bitmask domains, propagation (row/column eliminations, hidden singles, inequality
# bounds), then guessing on the cell with the fewest candidates.


@dataclass
class SolveResult:
    num_solutions: int              # up to the limit
    solution: np.ndarray | None     # the first solution found
    nodes: int                      # search nodes visited


class _Geometry:
    _cache: dict[int, "_Geometry"] = {}

    def __init__(self, n: int):
        self.n = n
        self.full = (1 << n) - 1
        self.units = [[r * n + c for c in range(n)] for r in range(n)] + [[r * n + c for r in range(n)]
                                                                           for c in range(n)]
        self.peers = [sorted(({r * n + k for k in range(n)} | {k * n + c for k in range(n)}) - {r * n + c})
                      for r in range(n) for c in range(n)]

    @classmethod
    def of(cls, n: int) -> "_Geometry":
        if n not in cls._cache:
            cls._cache[n] = cls(n)
        return cls._cache[n]


def _less_pairs(p: Futoshiki) -> list[tuple[int, int]]:
    """(a, b) cell indices with value(a) < value(b)."""
    n = p.size
    out = []
    for r, c, r2, c2, rel in _pairs(p):
        a, b = r * n + c, r2 * n + c2
        out.append((a, b) if rel == 1 else (b, a))
    return out


def _propagate(dom: list[int], g: _Geometry, less: list[tuple[int, int]]) -> bool:
    """Narrow the domains in place to a fixpoint; False on a contradiction."""
    n, full = g.n, g.full
    done = [False] * (n * n)
    changed = True
    while changed:
        changed = False
        for i in range(n * n):
            d = dom[i]
            if not d:
                return False
            if not done[i] and d & (d - 1) == 0:
                done[i] = True
                for q in g.peers[i]:
                    if dom[q] & d:
                        dom[q] &= ~d
                        if not dom[q]:
                            return False
                        changed = True
        for a, b in less:
            da, db = dom[a], dom[b]
            na = da & ((1 << (db.bit_length() - 1)) - 1)             # below b's largest value
            nb = db & full & ~((1 << (da & -da).bit_length()) - 1)    # above a's smallest value
            if not na or not nb:
                return False
            if na != da or nb != db:
                dom[a], dom[b] = na, nb
                changed = True
        for unit in g.units:
            for k in range(n):
                bit = 1 << k
                where = [i for i in unit if dom[i] & bit]
                if not where:
                    return False
                if len(where) == 1 and dom[where[0]] != bit:
                    dom[where[0]] = bit
                    changed = True
    return True


def solve(p: Futoshiki, limit: int = 2, rng: np.random.Generator | None = None) -> SolveResult:
    """Count the solutions up to ``limit``; ``rng`` randomises the guesses (the generator's Latin squares)."""
    n = p.size
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise PuzzleError(f"unsupported Futoshiki size {n}: expected {MIN_SIZE}..{MAX_SIZE}")
    g = _Geometry.of(n)
    less = _less_pairs(p)
    dom = [(1 << (int(x) - 1)) if x else g.full for x in p.givens.reshape(-1)]
    found: list[list[int]] = []
    nodes = 0

    def search(dom: list[int]) -> None:
        nonlocal nodes
        nodes += 1
        if not _propagate(dom, g, less):
            return
        best, best_count = -1, n + 1
        for i, d in enumerate(dom):
            k = bin(d).count("1")
            if 1 < k < best_count:
                best, best_count = i, k
        if best < 0:
            found.append(dom)
            return
        values = [k for k in range(n) if dom[best] >> k & 1]
        if rng is not None:
            values = [values[j] for j in rng.permutation(len(values))]
        for k in values:
            child = list(dom)
            child[best] = 1 << k
            search(child)
            if len(found) >= limit:
                return

    search(dom)
    sol = None
    if found:
        sol = np.asarray([d.bit_length() for d in found[0]], np.uint8).reshape(n, n)
    return SolveResult(len(found), sol, nodes)


# ---------------------------------------------------------------------------------------------------
# Generator


def random_latin_square(n: int, rng: np.random.Generator) -> np.ndarray:
    sol = solve(empty_puzzle(n), limit=1, rng=rng).solution
    assert sol is not None   # an empty grid always has a solution
    return sol


def generate(n: int, rng: np.random.Generator, inequality_density: float = 0.35,
             extra_givens: int = 0) -> tuple[Futoshiki, np.ndarray]:
    """(puzzle, its unique solution): a random Latin square, an inequality on each adjacent pair with
    probability ``inequality_density`` (true of the square), then every given removed in a random order
    while the solution stays unique; ``extra_givens`` removed givens are put back (easier puzzles)."""
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise PuzzleError(f"unsupported Futoshiki size {n}: expected {MIN_SIZE}..{MAX_SIZE}")
    sol = random_latin_square(n, rng)
    hmask = rng.random((n, n - 1)) < inequality_density
    vmask = rng.random((n - 1, n)) < inequality_density
    h = np.where(hmask, np.where(sol[:, :-1] < sol[:, 1:], 1, 2), 0).astype(np.uint8)
    v = np.where(vmask, np.where(sol[:-1] < sol[1:], 1, 2), 0).astype(np.uint8)
    givens = sol.copy()
    removed = []
    for idx in rng.permutation(n * n):
        r, c = divmod(int(idx), n)
        keep = givens[r, c]
        givens[r, c] = 0
        if solve(Futoshiki(givens, h, v), limit=2).num_solutions != 1:
            givens[r, c] = keep
        else:
            removed.append((r, c))
    for j in rng.permutation(len(removed))[:extra_givens]:
        r, c = removed[int(j)]
        givens[r, c] = sol[r, c]
    return Futoshiki(givens, h, v), sol


def _generate_one(args: tuple[int, int, int, int, float, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, stream, index, n, density, extra = args
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream, index]))
    p, sol = generate(n, rng, density, extra)
    return encode(p), encode(p, sol)


def generate_many(count: int, seed: int, size: int = 5, *, stream: int = 0, inequality_density: float = 0.35,
                  extra_givens: int = 0, workers: int | None = None, progress: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` puzzles as token rows (inputs [count, S], labels [count, S]); puzzle i depends only on
    (seed, stream, i), so the result is the same for any number of workers."""
    from tqdm import tqdm
    jobs = [(seed, stream, i, size, inequality_density, extra_givens) for i in range(count)]
    workers = 1 if workers is None and count < 200 else (workers or multiprocessing.cpu_count())
    bar = tqdm(total=count, desc="generating Futoshiki", disable=not progress, unit="puzzle", dynamic_ncols=True)
    out = []
    try:
        if workers <= 1:
            for j in jobs:
                out.append(_generate_one(j))
                bar.update(1)
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for r in pool.imap(_generate_one, jobs, chunksize=16):
                    out.append(r)
                    bar.update(1)
    finally:
        bar.close()
    s = seq_len(size)
    inputs = np.asarray([o[0] for o in out], np.uint8).reshape(count, s)
    labels = np.asarray([o[1] for o in out], np.uint8).reshape(count, s)
    return inputs, labels


# ---------------------------------------------------------------------------------------------------
# Augmentation: the 8 symmetries of the square (on the token grid, relation signs turned with it)
# times the digit reversal d -> N+1-d (which flips every inequality): 16 transforms, index 0 identity.

# relation-code maps (NONE, LT, GT, UP, DOWN)
_TRANSPOSE = np.array([NONE, UP, DOWN, LT, GT], np.uint8)
_FLIP_H = np.array([NONE, GT, LT, UP, DOWN], np.uint8)     # mirror left-right
_FLIP_V = np.array([NONE, LT, GT, DOWN, UP], np.uint8)     # mirror top-bottom
_REVERSE = np.array([NONE, GT, LT, DOWN, UP], np.uint8)    # digits d -> N+1-d
NUM_TRANSFORMS = 16


def transform_tokens(tokens: np.ndarray, k: int) -> np.ndarray:
    """Apply transform ``k`` (0..15; bit 0 transpose, bit 1 left-right flip, bit 2 top-bottom flip, bit 3
    digit reversal) to token rows [..., S]; a valid (puzzle, solution) pair stays one."""
    t = np.asarray(tokens)
    n = size_of_seq_len(t.shape[-1])
    side = 2 * n - 1
    g = t.reshape(*t.shape[:-1], side, side).astype(np.int64)
    is_rel = g >= n + 2
    rel = np.where(is_rel, g - (n + 2), 0)
    cell = np.where(is_rel, 0, g)
    if k & 1:
        g_axes = (*range(g.ndim - 2), g.ndim - 1, g.ndim - 2)
        rel, cell, is_rel = rel.transpose(g_axes), cell.transpose(g_axes), is_rel.transpose(g_axes)
        rel = _TRANSPOSE[rel]
    if k & 2:
        rel, cell, is_rel = rel[..., ::-1], cell[..., ::-1], is_rel[..., ::-1]
        rel = _FLIP_H[rel]
    if k & 4:
        rel, cell, is_rel = rel[..., ::-1, :], cell[..., ::-1, :], is_rel[..., ::-1, :]
        rel = _FLIP_V[rel]
    if k & 8:
        rel = _REVERSE[rel]
        digit = (cell >= 2) & (cell <= n + 1)
        cell = np.where(digit, (n + 1) - (cell - 1) + 1, cell)
    out = np.where(is_rel, rel + (n + 2), cell)
    return out.reshape(t.shape).astype(np.uint8)


def transform_puzzle(p: Futoshiki, solution: np.ndarray | None, k: int) -> tuple[Futoshiki, np.ndarray | None]:
    """Transform ``k`` of a puzzle (and its solution board)."""
    q, _ = decode(transform_tokens(encode(p), k))
    if solution is None:
        return q, None
    _, s = decode(transform_tokens(encode(p, solution), k))
    return q, s


# ---------------------------------------------------------------------------------------------------
# Dataset builder


def _puzzle_set(inputs: np.ndarray, labels: np.ndarray, num_aug: int, rng: np.random.Generator) -> PuzzleSet:
    """Group g = base puzzle g: the original then ``num_aug`` transformed versions (distinct while
    num_aug <= 15); one example per puzzle, all with the shared puzzle identifier 0."""
    base, s = inputs.shape
    per = 1 + num_aug
    ins = np.empty((base, per, s), np.uint8)
    outs = np.empty((base, per, s), np.uint8)
    ins[:, 0], outs[:, 0] = inputs, labels
    if num_aug:
        ks = np.stack([np.resize(rng.permutation(NUM_TRANSFORMS - 1) + 1, num_aug) for _ in range(base)])
        for k in range(1, NUM_TRANSFORMS):
            rows, cols = np.nonzero(ks == k)
            if len(rows):
                ins[rows, cols + 1] = transform_tokens(inputs[rows], k)
                outs[rows, cols + 1] = transform_tokens(labels[rows], k)
    n = base * per
    return PuzzleSet(inputs=ins.reshape(n, s), labels=outs.reshape(n, s), puzzle_identifiers=np.zeros(n, np.int32),
                     puzzle_indices=np.arange(n + 1, dtype=np.int32),
                     group_indices=np.arange(0, n + 1, per, dtype=np.int32))


def build_futoshiki_dataset(out_dir: str | Path, *, size: int = 5, train_size: int = 1000, num_aug: int = 15,
                            test_size: int = 500, seed: int = 0, inequality_density: float = 0.35,
                            extra_givens: int = 0, workers: int | None = None, progress: bool = True) -> Path:
    """Build a Futoshiki dataset in the shared on-disk format: train/ holds ``train_size`` groups (a
    generated puzzle and ``num_aug`` transformed versions), test/ ``test_size`` other puzzles (stream 1)."""
    if size not in BUILD_SIZES:
        raise DatasetError(f"Futoshiki size must be one of {BUILD_SIZES}, got {size}")
    if train_size < 1 or num_aug < 0 or test_size < 1 or not 0 <= inequality_density <= 1 or extra_givens < 0:
        raise DatasetError(f"need train_size >= 1, num_aug >= 0, test_size >= 1, 0 <= inequality_density <= 1, "
                           f"extra_givens >= 0; got {train_size}, {num_aug}, {test_size}, {inequality_density}, "
                           f"{extra_givens}")
    s = seq_len(size)
    check_output_dir(out_dir, need_bytes=2 * s * (train_size * (1 + num_aug) + test_size) + (1 << 20))
    options = dict(size=size, train_size=train_size, num_aug=num_aug, test_size=test_size, seed=seed,
                   inequality_density=inequality_density, extra_givens=extra_givens)
    kw: dict[str, Any] = dict(size=size, inequality_density=inequality_density, extra_givens=extra_givens,
                              workers=workers, progress=progress)
    train = generate_many(train_size, seed, stream=0, **kw)
    test = generate_many(test_size, seed, stream=1, **kw)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    train_set = _puzzle_set(*train, num_aug, rng)
    test_set = _puzzle_set(*test, 0, rng)

    def meta(split: str, base: tuple[np.ndarray, np.ndarray], ps: PuzzleSet) -> DatasetMetadata:
        givens = (decode_cells(base[0]) > 0).sum(axis=(1, 2))
        extra = dict(builder=options, split=split, base_puzzles=len(base[0]), examples=ps.num_examples,
                     givens_mean=float(givens.mean()), data_version=1)
        return DatasetMetadata(pad_id=PAD_ID, ignore_label_id=0, blank_identifier_id=0,
                               vocab_size=vocab_size(size), seq_len=s, num_puzzle_identifiers=1,
                               total_groups=ps.num_groups, mean_puzzle_examples=1, task="futoshiki",
                               grid_shape=[2 * size - 1, 2 * size - 1], extra=extra)

    splits = {"train": (meta("train", train, train_set), {"all": train_set}),
              "test": (meta("test", test, test_set), {"all": test_set})}
    return write_dataset(out_dir, splits, ["<blank>"])
