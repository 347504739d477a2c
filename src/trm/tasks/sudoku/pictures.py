"""Sudoku pictures: a board (givens black, the model's digits blue, wrong ones red, changed cells
yellow) and its refinement over supervision steps. Boards are NxN ints, 0 = blank, 1..N digits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from trm.errors import PuzzleError
from trm.viz import (BLACK, CHANGED, FILLED, GIVEN, INK, RGB, THIN_LINE, WHITE, WRONG, _add_band, _board, _font,
                     _in_range, _mask, _same_shape, _text_centered, _title_size, step_frames, step_strip)


def draw_sudoku(puzzle: np.ndarray, solution: np.ndarray | None = None, *, truth: np.ndarray | None = None,
                changed: np.ndarray | None = None, title: str | None = None, cell: int = 40) -> Image.Image:
    """An NxN Sudoku board (N a square: 4, 9, ...; 0 = blank).

    Givens are black and bold; digits the model filled (solution) blue, or red where they differ from
    truth (also a clue the model overwrote); cells in the bool mask `changed` get a light yellow
    background. Thick lines bound the sqrt(N) x sqrt(N) boxes. Without a title the image is
    N*cell + 2*margin pixels square, with margin = max(4, cell // 4).
    """
    p = _board(puzzle, "puzzle", square=True)
    n = p.shape[0]
    box = math.isqrt(n)
    if p.shape[1] != n or box * box != n:
        raise PuzzleError(f"puzzle: Sudoku board must be NxN with N a square (4, 9, ...), got {p.shape}")
    _in_range(p, 0, n, "puzzle")
    sol = None if solution is None else _board(solution, "solution", square=True)
    tru = None if truth is None else _board(truth, "truth", square=True)
    for arr, name in ((sol, "solution"), (tru, "truth")):
        _same_shape(arr, p, name)
        if arr is not None:
            _in_range(arr, 0, n, name)
    chg = _mask(changed, p, "changed")

    margin = max(4, cell // 4)
    size = n * cell + 2 * margin
    img = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(img)
    if chg is not None:
        for r, c in zip(*np.nonzero(chg)):
            x0, y0 = margin + c * cell, margin + r * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=CHANGED)

    font = _font(int(cell * (0.62 if n <= 9 else 0.45)))
    bold = max(1, cell // 40)
    for r in range(n):
        for c in range(n):
            digit, color, stroke = _sudoku_cell(p, sol, tru, r, c)
            if digit:
                x0, y0 = margin + c * cell, margin + r * cell
                _text_centered(draw, (x0, y0, x0 + cell, y0 + cell), str(digit), font, color, stroke * bold)

    thick = max(2, cell // 14)
    end = margin + n * cell
    for i in range(n + 1):
        pos = margin + i * cell
        if i % box:
            draw.line((margin, pos, end, pos), fill=THIN_LINE, width=1)
            draw.line((pos, margin, pos, end), fill=THIN_LINE, width=1)
    for i in range(0, n + 1, box):
        pos = margin + i * cell
        lo, hi = pos - thick // 2, pos + (thick - 1) // 2
        draw.rectangle((margin - thick // 2, lo, end + (thick - 1) // 2, hi), fill=INK)
        draw.rectangle((lo, margin - thick // 2, hi, end + (thick - 1) // 2), fill=INK)
    return _add_band(img, title, above=True, size=_title_size(cell))


def _sudoku_cell(p: np.ndarray, sol: np.ndarray | None, tru: np.ndarray | None,
                 r: int, c: int) -> tuple[int, RGB, int]:
    """(digit, colour, stroke) for one cell; digit 0 = draw nothing."""
    given = int(p[r, c])
    ans = 0 if sol is None else int(sol[r, c])
    if given:
        if ans and ans != given:
            return ans, WRONG, 0
        return given, GIVEN, 1
    if not ans:
        return 0, BLACK, 0
    wrong = tru is not None and ans != int(tru[r, c])
    return ans, (WRONG if wrong else FILLED), 0


def sudoku_refinement(puzzle: np.ndarray, trace: Sequence[np.ndarray], halt_probs: Sequence[float] | None,
                      truth: np.ndarray | None = None, *, cell: int = 32, max_cols: int = 8,
                      show_input: bool = True, title: str | None = None) -> Image.Image:
    """The answer after each supervision step (trace, digit boards), cells changed since the previous
    step in yellow, captioned "step k  halt p=0.93" (plus the number of wrong cells when truth is given)."""
    p = _board(puzzle, "puzzle", square=True)
    boards = [_board(t, f"trace[{k}]", square=True) for k, t in enumerate(trace)]
    tru = None if truth is None else _board(truth, "truth", square=True)
    return step_strip(lambda b, **kw: draw_sudoku(p, b, cell=cell, **kw), boards, halt_probs, tru,
                      start=draw_sudoku(p, cell=cell) if show_input else None, start_caption="puzzle",
                      max_cols=max_cols, title=title)


def refinement_frames(puzzle: np.ndarray, boards: Sequence[np.ndarray], halt_probs: Sequence[float],
                      truth: np.ndarray | None = None) -> list[Image.Image]:
    """One titled board per supervision step (changed cells yellow): the frames of a refinement GIF."""
    return step_frames(lambda b, **kw: draw_sudoku(puzzle, b, **kw), boards, halt_probs, truth)
