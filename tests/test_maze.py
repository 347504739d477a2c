"""Maze-Hard data module: tokens, parsing, generator, checker, CSV import, builder."""

import csv
import json

import numpy as np
import pytest

from trm.data import dihedral
from trm.tasks.maze import data as M
from trm.data.format import iter_puzzles, load_identifiers, load_set, read_metadata
from trm.errors import ConfigError, DatasetError, PuzzleError

SMALL = dict(size=10, min_path=12)

OPEN5 = "\n".join(["S    ", " ### ", "     ", " ### ", "    G"])


def _put(grid, cells, tok):
    g = grid.copy()
    for rc in cells:
        g[rc] = tok
    return g


@pytest.fixture(scope="module")
def small_mazes():
    return M.generate_many(24, seed=3, workers=1, **SMALL)


# ------------------------------------------------------------------------------------ tokens / parsing

def test_tokens_match_original_charset():
    assert (M.PAD, M.WALL, M.OPEN, M.START, M.GOAL, M.PATH, M.VOCAB_SIZE) == (0, 1, 2, 3, 4, 5, 6)
    assert M.encode("# SGo").tolist() == [1, 2, 3, 4, 5]
    assert M.decode(M.encode("#  S oG")) == "#  S oG"
    with pytest.raises(PuzzleError, match="'x' at position 2"):
        M.encode("# x")


def test_parse_format_round_trip():
    g = M.parse_maze("\n" + OPEN5 + "\n\n", size=5)
    assert g.shape == (5, 5) and g[0, 0] == M.START and g[4, 4] == M.GOAL and g[1, 1] == M.WALL
    assert M.format_maze(g) == OPEN5
    assert M.format_maze(g.ravel()) == OPEN5
    assert np.array_equal(M.parse_maze(M.format_maze(M.solve_maze(g))), M.solve_maze(g))


@pytest.mark.parametrize("text, match", [
    ("S  \n #\n  G", "line 2 has 2 characters"),
    ("S x\n # \n  G", r"'x' at line 1, column 3"),
    ("S  \n # \n  S", "exactly one 'S', found 2"),
    ("S  \n # \n   ", "exactly one 'G', found 0"),
    ("S #\n## \n  G", "no path from S at line 1, column 1 to G at line 3, column 3"),
    ("", "empty"),
])
def test_parse_errors(text, match):
    with pytest.raises(PuzzleError, match=match):
        M.parse_maze(text)


def test_parse_size_and_path_options():
    with pytest.raises(PuzzleError, match="maze is 5x5, expected 6x6"):
        M.parse_maze(OPEN5, size=6)
    with pytest.raises(PuzzleError, match="'o' at line 1"):
        M.parse_maze("So G", allow_path=False)
    assert M.parse_maze("So G")[0, 1] == M.PATH


# ------------------------------------------------------------------------------------------- generator

def test_generator_constraints(small_mazes):
    xs, ys = small_mazes
    assert xs.shape == ys.shape == (24, 10, 10) and xs.dtype == np.uint8
    for x, y in zip(xs, ys):
        assert (x == M.START).sum() == 1 and (x == M.GOAL).sum() == 1 and not (x == M.PATH).any()
        assert set(np.unique(x)) <= {M.WALL, M.OPEN, M.START, M.GOAL}
        d = M.shortest_distance(x)
        assert d > SMALL["min_path"]
        assert (y == M.PATH).sum() == d - 1
        res = M.check_path(x, y, y)
        assert res["valid"] and res["optimal"] and res["exact"], res
        assert np.array_equal(y, M.solve_maze(x))  # the label is canonical: a function of x
    assert len({x.tobytes() for x in xs}) == len(xs)


def test_generator_30x30_min_110():
    x, y = M.generate_maze(np.random.default_rng(7))
    assert x.shape == (30, 30) and M.shortest_distance(x) > 110
    assert M.check_path(x, y)["optimal"]


def test_generator_determinism_across_workers(small_mazes):
    a = M.generate_many(24, seed=3, workers=2, **SMALL)
    assert np.array_equal(a[0], small_mazes[0]) and np.array_equal(a[1], small_mazes[1])
    b = M.generate_many(5, seed=3, workers=1, **SMALL)  # maze i depends only on (seed, stream, i)
    assert np.array_equal(b[0], small_mazes[0][:5])
    c = M.generate_many(5, seed=4, workers=1, **SMALL)
    d = M.generate_many(5, seed=3, workers=1, stream=1, **SMALL)
    assert not np.array_equal(c[0], b[0]) and not np.array_equal(d[0], b[0])


def test_generator_rectangular_and_bad_options():
    x, y = M.generate_maze(np.random.default_rng(0), size=(6, 12), min_path=10)
    assert x.shape == (6, 12) and M.check_path(x, y)["optimal"]
    with pytest.raises(ConfigError, match="impossible"):
        M.generate_maze(np.random.default_rng(0), size=4, min_path=20)
    with pytest.raises(ConfigError, match="no 5x5 maze"):
        M.generate_maze(np.random.default_rng(0), size=5, min_path=20, max_tries=50)
    with pytest.raises(ConfigError, match="wall_density"):
        M.generate_maze(np.random.default_rng(0), size=5, wall_density=1.0, min_path=3)


# --------------------------------------------------------------------------------------------- checker

def _cases():
    x = M.parse_maze(OPEN5)
    label = M.solve_maze(x)  # canonical: up the right column then along the top row
    top_right = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 4), (2, 4), (3, 4)]
    left_bottom = [(1, 0), (2, 0), (3, 0), (4, 0), (4, 1), (4, 2), (4, 3)]
    long_way = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 4), (2, 4), (2, 3), (2, 2), (2, 1), (2, 0),
                (3, 0), (4, 0), (4, 1), (4, 2), (4, 3)]
    assert np.array_equal(label, _put(x, top_right, M.PATH))
    return x, label, {  # name -> (prediction, valid, optimal)
        "label": (label, True, True),
        "other_shortest": (_put(x, left_bottom, M.PATH), True, True),
        "longer": (_put(x, long_way, M.PATH), True, False),
        "broken": (_put(label, [(0, 3)], M.OPEN), False, False),
        "branching": (_put(label, [(1, 0)], M.PATH), False, False),
        "through_wall": (_put(x, [(1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (3, 3)], M.PATH), False, False),
        "changed_wall": (_put(label, [(3, 2)], M.OPEN), False, False),
        "stray": (_put(label, [(2, 0)], M.PATH), False, False),
        "moved_goal": (_put(_put(label, [(4, 4)], M.OPEN), [(3, 4)], M.GOAL), False, False),
        "pad": (_put(label, [(4, 0)], M.PAD), False, False),
        "empty": (x, False, False),
    }


def test_check_path_cases():
    x, label, cases = _cases()
    for name, (pred, valid, optimal) in cases.items():
        res = M.check_path(x, pred, label)
        assert (res["valid"], res["optimal"]) == (valid, optimal), (name, res)
        assert res["exact"] == (name == "label")
        assert res["shortest"] == 8
        assert (res["reason"] == "") == optimal, (name, res)
    assert M.check_path(x, cases["longer"][0])["length"] == 16
    assert "changed from '#'" in M.check_path(x, cases["through_wall"][0])["reason"]
    assert "stray" in M.check_path(x, cases["stray"][0])["reason"]


def test_score_mazes_matches_check_path():
    x, label, cases = _cases()
    names = list(cases)
    preds = np.stack([cases[n][0] for n in names]).reshape(len(names), -1)
    inputs = np.repeat(x.reshape(1, -1), len(names), 0)
    out = M.score_mazes(inputs, preds, np.repeat(label.reshape(1, -1), len(names), 0))
    assert out["exact"].tolist() == [n == "label" for n in names]
    assert out["valid_shortest"].tolist() == [cases[n][2] for n in names]


def test_score_mazes_rejects_detached_cycle_and_spur():
    x = M.parse_maze("S    G\n" + "      \n" * 5)
    pred = _put(x, [(0, 1), (0, 2), (0, 3), (0, 4)], M.PATH)
    assert M.check_path(x, pred)["optimal"]
    cyc = _put(pred, [(3, 1), (3, 2), (4, 1), (4, 2)], M.PATH)  # every cycle cell has 2 path neighbours
    assert not M.check_path(x, cyc)["valid"]
    # broken path whose 'o' count still equals the shortest distance - 1: a gap plus a dead-end spur
    spur = _put(_put(pred, [(0, 2)], M.OPEN), [(1, 3)], M.PATH)
    assert not M.check_path(x, spur)["valid"]
    out = M.score_mazes(np.repeat(x[None], 3, 0), np.stack([pred, cyc, spur]))
    assert out["valid_shortest"].tolist() == [True, False, False]


def test_score_mazes_random_corruptions(small_mazes):
    xs, ys = small_mazes
    rng = np.random.default_rng(0)
    preds = ys.copy()
    for p in preds[1:]:  # flip 1-2 random cells to a random token; keep the first untouched
        for _ in range(rng.integers(1, 3)):
            p[tuple(rng.integers(0, 10, 2))] = rng.integers(0, M.VOCAB_SIZE)
    out = M.score_mazes(xs, preds, ys)
    want = [M.check_path(x, p)["optimal"] for x, p in zip(xs, preds)]
    assert out["valid_shortest"].tolist() == want and want[0] and not all(want)
    assert out["exact"].tolist() == [np.array_equal(p, y) for p, y in zip(preds, ys)]
    assert M.batch_shortest_distance(xs).tolist() == [M.shortest_distance(x) for x in xs]


def test_dihedral_versions_stay_valid(small_mazes):
    x, y = small_mazes[0][0], small_mazes[1][0]
    for t in range(dihedral.NUM_TRANSFORMS):
        res = M.check_path(dihedral.transform(x, t), dihedral.transform(y, t))
        assert res["optimal"], (t, res)


# ------------------------------------------------------------------------------------------ CSV import

def _write_csv(path, xs, ys, bad_row=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "question", "answer", "rating"])
        for i, (x, y) in enumerate(zip(xs, ys)):
            w.writerow(bad_row if i == 1 and bad_row else ["gen", M.decode(x), M.decode(y), 0])


def test_csv_round_trip(tmp_path, small_mazes):
    xs, ys = small_mazes
    _write_csv(tmp_path / "m.csv", xs, ys)
    x2, y2 = M.read_maze_csv(tmp_path / "m.csv")
    assert np.array_equal(x2, xs) and np.array_equal(y2, ys)
    x3, _ = M.read_maze_csv(tmp_path / "m.csv", limit=5)
    assert np.array_equal(x3, xs[:5])
    x4, _ = M.read_maze_csv(tmp_path / "m.csv", limit=5, seed=1)
    x5, _ = M.read_maze_csv(tmp_path / "m.csv", limit=5, seed=1)
    assert np.array_equal(x4, x5) and not np.array_equal(x4, x3)
    assert all(any(np.array_equal(a, b) for b in xs) for a in x4)


@pytest.mark.parametrize("bad, match", [
    (["gen", "S" + " " * 98 + "G", "S" + " " * 98, 0], "100/99 characters"),
    (["gen", "S" + " " * 97 + "xG", "S" + " " * 97 + "xG", 0], "bad character 'x'"),
    (["gen", "S" + " " * 99, "S" + " " * 99, 0], "exactly one 'G'"),
    (["gen", "S" + " " * 98 + "G", "S" + "#" * 98 + "G", 0], "differs from question"),
    (["gen", "S" * 5], "2 fields"),
    (["gen", "S" + " " * 40 + "G", "S" + " " * 40 + "G", 0], "not a square"),
])
def test_csv_malformed_row_names_line(tmp_path, small_mazes, bad, match):
    _write_csv(tmp_path / "bad.csv", *small_mazes, bad_row=bad)
    with pytest.raises(DatasetError, match=rf"bad\.csv:3: .*{match}"):
        M.read_maze_csv(tmp_path / "bad.csv")


def test_csv_bad_header_and_missing(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="question"):
        M.read_maze_csv(tmp_path / "h.csv")
    with pytest.raises(DatasetError, match="missing"):
        M.read_maze_csv(tmp_path / "nope.csv")


# --------------------------------------------------------------------------------------------- builder

def _check_split(d, n_groups, per_group, shape):
    meta = read_metadata(d)
    ps = load_set(d)
    assert (meta.pad_id, meta.ignore_label_id, meta.blank_identifier_id, meta.vocab_size) == (0, 0, 0, 6)
    assert meta.seq_len == shape[0] * shape[1] and meta.grid_shape == list(shape) and meta.task == "maze"
    assert meta.num_puzzle_identifiers == 1 and meta.mean_puzzle_examples == 1
    assert meta.total_groups == ps.num_groups == n_groups
    assert ps.num_puzzles == ps.num_examples == n_groups * per_group == meta.total_puzzles
    assert np.all(ps.puzzle_identifiers == 0) and np.all(np.diff(ps.group_indices) == per_group)
    out = M.score_mazes(ps.inputs, ps.labels, ps.labels, shape=shape)
    assert out["exact"].all() and out["valid_shortest"].all()
    return meta, ps


def test_builder_generate_round_trip(tmp_path):
    out = M.build_maze_dataset(tmp_path / "m", size=8, min_path=10, train_size=6, test_size=4,
                               seed=5, workers=1, progress=False)
    assert load_identifiers(out) == ["<blank>"]
    meta, ps = _check_split(out / "train", 6, 1, (8, 8))
    assert meta.extra["aug"] is False and meta.extra["aug_transforms"] == 1 and meta.extra["min_path"] == 10
    assert meta.extra["path_length"]["min"] > 10
    x, _ = M.generate_many(6, seed=5, workers=1, size=8, min_path=10, stream=0)
    assert np.array_equal(ps.inputs, x.reshape(6, -1))
    _check_split(out / "test", 4, 1, (8, 8))
    assert json.loads((out / "test" / "dataset.json").read_text())["extra"]["test_size"] == 4


def test_builder_aug_groups_hold_8_dihedral_versions(tmp_path):
    out = M.build_maze_dataset(tmp_path / "m", size=8, min_path=10, train_size=3, test_size=2, aug=True,
                               seed=5, workers=1, progress=False)
    meta, ps = _check_split(out / "train", 3, 8, (8, 8))
    assert meta.extra["aug"] is True and meta.extra["aug_transforms"] == 8
    base = M.build_maze_dataset(tmp_path / "b", size=8, min_path=10, train_size=3, test_size=2,
                                seed=5, workers=1, progress=False)
    base_in = load_set(base / "train").inputs.reshape(-1, 8, 8)
    for g, pid, sl in iter_puzzles(ps):
        t = int(sl.start - ps.puzzle_indices[ps.group_indices[g]])
        assert np.array_equal(ps.inputs[sl].reshape(8, 8), dihedral.transform(base_in[g], t))
    tmeta, _ = _check_split(out / "test", 2, 1, (8, 8))  # the test split is never augmented
    assert tmeta.extra["aug"] is False and tmeta.extra["aug_requested"] is True


def test_builder_csv_round_trip(tmp_path, small_mazes):
    xs, ys = small_mazes
    _write_csv(tmp_path / "train.csv", xs[:16], ys[:16])
    _write_csv(tmp_path / "test.csv", xs[16:], ys[16:])
    out = M.build_maze_dataset(tmp_path / "d", source="csv", csv_train=tmp_path / "train.csv",
                               csv_test=tmp_path / "test.csv", train_size=None, test_size=None,
                               progress=False)
    _, ps = _check_split(out / "train", 16, 1, (10, 10))
    assert np.array_equal(ps.labels, ys[:16].reshape(16, -1))
    _check_split(out / "test", 8, 1, (10, 10))
    with pytest.raises(DatasetError, match="expected size"):
        M.build_maze_dataset(tmp_path / "e", source="csv", csv_train=tmp_path / "train.csv",
                             csv_test=tmp_path / "test.csv", size=30, progress=False)
    with pytest.raises(ConfigError, match="csv_test"):
        M.build_maze_dataset(tmp_path / "e", source="csv", csv_train=tmp_path / "train.csv")
    assert not (tmp_path / "e").exists()


def test_builder_rejects_aug_on_rectangles(tmp_path):
    with pytest.raises(ConfigError, match="square"):
        M.build_maze_dataset(tmp_path / "r", size=(6, 8), min_path=8, train_size=1, test_size=1, aug=True,
                             workers=1, progress=False)
