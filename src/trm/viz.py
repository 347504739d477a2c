"""Pictures shared by every task: files, fonts, bands, argument checks, a plain token grid, refinement
strips and GIFs over supervision steps, training curves. Each task draws its own boards with these
(``trm.tasks.<name>.pictures``).

Grids are drawn with Pillow (its bundled default font, no font files), curves with matplotlib's Agg
canvas (no pyplot global state). Every file is written atomically: temp name, then os.replace.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trm.errors import PuzzleError
from trm.io import atomic_write_bytes

RGB = tuple[int, int, int]

WHITE: RGB = (255, 255, 255)
BLACK: RGB = (0, 0, 0)
INK: RGB = (33, 37, 41)            # text, thick lines
GIVEN: RGB = (20, 20, 20)          # Sudoku clues
FILLED: RGB = (22, 96, 214)        # model-filled digits
WRONG: RGB = (214, 39, 40)         # digits that differ from the truth
CHANGED: RGB = (255, 244, 163)     # light yellow: changed since the previous supervision step
THIN_LINE: RGB = (170, 170, 170)


# ----------------------------------------------------------------------------------------------
# Files


def save_png(img: Image.Image, path: str | os.PathLike) -> Path:
    """Save a PIL image as PNG, atomically."""
    if not isinstance(img, Image.Image):
        raise TypeError(f"save_png needs a PIL image, got {type(img).__name__}")
    return atomic_write_bytes(path, lambda tmp: img.save(tmp, format="PNG"))


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
    left, t, r, b = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke, align="center")
    x = (box[0] + box[2]) / 2 - (left + r) / 2
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
# A plain token grid (the default picture of a task that draws nothing of its own)


def draw_token_grid(grid: np.ndarray, *, truth: np.ndarray | None = None, title: str | None = None,
                    cell: int = 28) -> Image.Image:
    """An HxW grid of token ids, each cell tinted by its id and labelled with it; cells that differ from
    ``truth`` are outlined red."""
    g = _board(grid, "grid")
    tru = None if truth is None else _board(truth, "truth")
    _same_shape(tru, g, "truth")
    h, w = g.shape
    img = Image.new("RGB", (w * cell + 2, h * cell + 2), WHITE)
    draw = ImageDraw.Draw(img)
    font = _font(int(cell * 0.5))
    for r in range(h):
        for c in range(w):
            tok = int(g[r, c])
            shade = 255 - (37 * tok) % 160
            x0, y0 = 1 + c * cell, 1 + r * cell
            draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), fill=(shade, shade, 255), outline=THIN_LINE)
            _text_centered(draw, (x0, y0, x0 + cell, y0 + cell), str(tok), font, INK)
            if tru is not None and tok != int(tru[r, c]):
                draw.rectangle((x0, y0, x0 + cell - 1, y0 + cell - 1), outline=WRONG, width=max(2, cell // 10))
    return _add_band(img, title, above=True, size=_title_size(cell))


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
    return atomic_write_bytes(path, lambda tmp: canvas[0].save(
        tmp, format="GIF", save_all=True, append_images=canvas[1:], duration=int(duration_ms), loop=0))


def step_strip(draw: Callable[..., Image.Image], steps: Sequence[np.ndarray], halt_probs: Sequence[float] | None,
               truth: np.ndarray | None = None, *, start: Image.Image | None = None, start_caption: str = "input",
               max_cols: int = 8, title: str | None = None) -> Image.Image:
    """A task's answer after each supervision step: ``draw(board, truth=, changed=)`` per step (cells changed
    since the previous step marked), captioned "step k  halt p=0.93" plus the wrong cells against ``truth``;
    ``start`` (the puzzle's own picture) first."""
    if not steps:
        raise ValueError("refinement: empty trace")
    wrong = None if truth is None else [int(np.sum(b != truth)) for b in steps]
    frames = [draw(b, truth=truth, changed=m) for b, m in zip(steps, _changes(list(steps)))]
    caps = _step_captions(len(steps), halt_probs, wrong)
    if start is not None:
        frames.insert(0, start)
        caps.insert(0, start_caption + ("\n" if wrong is not None else ""))
    return refinement_strip(frames, caps, max_cols=max_cols, title=title)


def step_frames(draw: Callable[..., Image.Image], steps: Sequence[np.ndarray], halt_probs: Sequence[float],
                truth: np.ndarray | None = None) -> list[Image.Image]:
    """One titled picture per supervision step (changed cells marked): the frames of a refinement GIF."""
    return [draw(b, truth=truth, changed=m, title=f"step {k + 1}  halt p={float(p):.2f}")
            for k, (b, m, p) in enumerate(zip(steps, _changes(list(steps)), halt_probs))]


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


# ----------------------------------------------------------------------------------------------
# Curves (matplotlib, Agg canvas, no pyplot)


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure  # Figure.savefig uses the Agg canvas; no global backend switch
    return Figure(figsize=figsize, dpi=100, layout="constrained")


def _save_fig(fig: Any, out_png: str | os.PathLike) -> Path:
    return atomic_write_bytes(out_png, lambda tmp: fig.savefig(tmp, format="png"))


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
    names = [str(label) for label in labels]
    long = max(len(n) for n in names) > 8
    ax.set_xticks(range(len(vals)), names, rotation=30 if long else 0, ha="right" if long else "center")
    ax.set_ylabel(ylabel)
    ax.margins(y=0.12)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return _save_fig(fig, out_png)
