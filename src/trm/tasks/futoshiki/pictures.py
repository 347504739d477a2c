"""Futoshiki pictures: the NxN grid with its inequality signs in the gaps between cells; givens black
and bold, the model's digits blue, wrong ones red, changed cells yellow; and the refinement over
supervision steps. Boards are NxN ints (0 blank, 1..N digits); the puzzle a :class:`~.data.Futoshiki`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from trm.tasks.futoshiki.data import Futoshiki
from trm.viz import (BLACK, CHANGED, FILLED, GIVEN, INK, THIN_LINE, WHITE, WRONG, _add_band, _font, _text_centered,
                     _title_size, step_frames, step_strip)


def draw_futoshiki(p: Futoshiki, solution: np.ndarray | None = None, *, truth: np.ndarray | None = None,
                   changed: np.ndarray | None = None, title: str | None = None, cell: int = 36) -> Image.Image:
    """The puzzle (and an answer): cells are boxes ``cell`` pixels wide with a gap of ``cell // 2``
    holding the sign between neighbours (< > left-right, ^ v top-bottom)."""
    n = p.size
    sol = None if solution is None else np.asarray(solution).reshape(n, n)
    tru = None if truth is None else np.asarray(truth).reshape(n, n)
    gap = max(8, cell // 2)
    margin = max(4, cell // 4)
    step = cell + gap
    size = 2 * margin + n * cell + (n - 1) * gap
    img = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(img)
    font = _font(int(cell * 0.6))
    sign_font = _font(int(gap * 1.1))
    for r in range(n):
        for c in range(n):
            x0, y0 = margin + c * step, margin + r * step
            fill = CHANGED if changed is not None and bool(np.asarray(changed).reshape(n, n)[r, c]) else WHITE
            draw.rectangle((x0, y0, x0 + cell, y0 + cell), fill=fill, outline=INK, width=max(1, cell // 20))
            given = int(p.givens[r, c])
            ans = 0 if sol is None else int(sol[r, c])
            if given:
                digit, color, stroke = (ans, WRONG, 0) if ans and ans != given else (given, GIVEN, 1)
            elif ans:
                digit, color, stroke = ans, (WRONG if tru is not None and ans != int(tru[r, c]) else FILLED), 0
            else:
                continue
            _text_centered(draw, (x0, y0, x0 + cell, y0 + cell), str(digit), font, color,
                           stroke * max(1, cell // 40))
    for r in range(n):
        for c in range(n - 1):
            if p.h[r, c]:
                x0, y0 = margin + c * step + cell, margin + r * step
                _text_centered(draw, (x0, y0, x0 + gap, y0 + cell), "<" if p.h[r, c] == 1 else ">", sign_font, BLACK)
    for r in range(n - 1):
        for c in range(n):
            if p.v[r, c]:
                x0, y0 = margin + c * step, margin + r * step + cell
                _text_centered(draw, (x0, y0, x0 + cell, y0 + gap), "^" if p.v[r, c] == 1 else "v", sign_font,
                               BLACK)
    draw.rectangle((0, 0, size - 1, size - 1), outline=THIN_LINE)
    return _add_band(img, title, above=True, size=_title_size(cell))


def futoshiki_refinement(p: Futoshiki, trace: Sequence[np.ndarray], halt_probs: Sequence[float] | None,
                         truth: np.ndarray | None = None, *, cell: int = 30, max_cols: int = 8,
                         show_input: bool = True, title: str | None = None) -> Image.Image:
    """The answer after each supervision step, changed cells yellow, captioned with the halting
    probability (and the number of wrong cells when ``truth`` is given)."""
    boards = [np.asarray(b).reshape(p.size, p.size) for b in trace]
    tru = None if truth is None else np.asarray(truth).reshape(p.size, p.size)
    return step_strip(lambda b, **kw: draw_futoshiki(p, b, cell=cell, **kw), boards, halt_probs, tru,
                      start=draw_futoshiki(p, cell=cell) if show_input else None, start_caption="puzzle",
                      max_cols=max_cols, title=title)


def refinement_frames(p: Futoshiki, boards: Sequence[np.ndarray], halt_probs: Sequence[float],
                      truth: np.ndarray | None = None) -> list[Image.Image]:
    """One titled picture per supervision step: the frames of a refinement GIF."""
    boards = [np.asarray(b).reshape(p.size, p.size) for b in boards]
    return step_frames(lambda b, **kw: draw_futoshiki(p, b, **kw), boards, halt_probs, truth)
