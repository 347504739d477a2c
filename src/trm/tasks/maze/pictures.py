"""Maze pictures: a grid of token ids (0 PAD, 1 wall '#', 2 open ' ', 3 start 'S', 4 goal 'G', 5 path
'o'), mistakes outlined orange, and its refinement over supervision steps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from trm.viz import (CHANGED, INK, RGB, WHITE, _add_band, _board, _font, _in_range, _mask, _same_shape,
                     _text_centered, _title_size, step_frames, step_strip)

MAZE_COLORS: dict[int, RGB] = {
    0: (222, 222, 222),   # PAD
    1: (40, 44, 52),      # wall '#'
    2: WHITE,             # open ' '
    3: (40, 167, 69),     # start 'S'
    4: (220, 53, 69),     # goal 'G'
    5: (0, 116, 217),     # path 'o'
}


MAZE_WRONG: RGB = (255, 133, 27)   # orange outline


MAZE_GRIDLINE: RGB = (228, 228, 228)


def draw_maze(grid_tokens: np.ndarray, *, truth: np.ndarray | None = None, changed: np.ndarray | None = None,
              title: str | None = None, cell: int = 16) -> Image.Image:
    """A maze from its HxW token ids (0 PAD, 1 wall, 2 open, 3 S, 4 G, 5 path 'o').

    Walls dark, open cells white, S green, G red, path blue. Cells where grid_tokens != truth are
    outlined in orange; cells in `changed` get a light yellow background with their content inset.
    Without a title the image is W*cell + 2*margin by H*cell + 2*margin, margin = max(3, cell // 4).
    """
    g = _board(grid_tokens, "grid_tokens", square=True)
    _in_range(g, 0, 5, "grid_tokens")
    tru = None if truth is None else _board(truth, "truth", square=True)
    _same_shape(tru, g, "truth")
    if tru is not None:
        _in_range(tru, 0, 5, "truth")
    chg = _mask(changed, g, "changed")

    h, w = g.shape
    margin = max(3, cell // 4)
    img = Image.new("RGB", (w * cell + 2 * margin, h * cell + 2 * margin), WHITE)
    draw = ImageDraw.Draw(img)
    inset = max(2, cell // 6)
    for r in range(h):
        for c in range(w):
            x0, y0 = margin + c * cell, margin + r * cell
            x1, y1 = x0 + cell - 1, y0 + cell - 1
            tok = int(g[r, c])
            if chg is not None and chg[r, c]:
                draw.rectangle((x0, y0, x1, y1), fill=CHANGED)
                if tok != 2:
                    draw.rectangle((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=MAZE_COLORS[tok])
            else:
                draw.rectangle((x0, y0, x1, y1), fill=MAZE_COLORS[tok])
    # Faint lines between neighbouring open cells, so corridors can be counted; walls stay solid.
    white = g == 2
    for r, c in zip(*np.nonzero(white[:, :-1] & white[:, 1:])):
        x, y0 = margin + (c + 1) * cell, margin + r * cell
        draw.line((x, y0, x, y0 + cell - 1), fill=MAZE_GRIDLINE)
    for r, c in zip(*np.nonzero(white[:-1, :] & white[1:, :])):
        x0, y = margin + c * cell, margin + (r + 1) * cell
        draw.line((x0, y, x0 + cell - 1, y), fill=MAZE_GRIDLINE)
    if cell >= 12:
        font = _font(int(cell * 0.7))
        for r, c in zip(*np.nonzero(np.isin(g, (3, 4)))):
            x0, y0 = margin + c * cell, margin + r * cell
            _text_centered(draw, (x0, y0, x0 + cell, y0 + cell), "S" if g[r, c] == 3 else "G", font, WHITE)
    if tru is not None:
        width = max(2, cell // 7)
        for r, c in zip(*np.nonzero(g != tru)):
            x0, y0 = margin + c * cell, margin + r * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), outline=MAZE_WRONG, width=width)
    draw.rectangle((margin - 1, margin - 1, margin + w * cell, margin + h * cell), outline=INK, width=1)
    return _add_band(img, title, above=True, size=_title_size(max(cell, 28)))


def maze_refinement(maze: np.ndarray, trace: Sequence[np.ndarray], halt_probs: Sequence[float] | None,
                    truth: np.ndarray | None = None, *, cell: int = 10, max_cols: int = 6,
                    show_input: bool = True, title: str | None = None) -> Image.Image:
    """Like sudoku_refinement for mazes: maze is the input token grid, trace the predicted token grid
    after each supervision step; changed cells in yellow, cells differing from truth outlined orange."""
    m = _board(maze, "maze", square=True)
    grids = [_board(t, f"trace[{k}]", square=True) for k, t in enumerate(trace)]
    tru = None if truth is None else _board(truth, "truth", square=True)
    return step_strip(lambda g, **kw: draw_maze(g, cell=cell, **kw), grids, halt_probs, tru,
                      start=draw_maze(m, cell=cell) if show_input else None, start_caption="maze",
                      max_cols=max_cols, title=title)


def refinement_frames(grids: Sequence[np.ndarray], halt_probs: Sequence[float], truth: np.ndarray | None = None,
                      cell: int = 16) -> list[Image.Image]:
    """One titled maze per supervision step (changed cells yellow): the frames of a refinement GIF."""
    return step_frames(lambda g, **kw: draw_maze(g, cell=cell, **kw), grids, halt_probs, truth)
