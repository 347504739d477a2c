"""Sudoku data module: tokens, parsing, solver and rating, generator, augmentation, CSV import, builder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm.tasks.sudoku import data as sd
from trm.data.format import load_identifiers, load_set, read_metadata
from trm.errors import DatasetError, PuzzleError

# Arto Inkala's "world's hardest Sudoku" (2012) and its unique solution.
INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."
INKALA_SOLUTION = "812753649943682175675491283154237896369845721287169534521974368438526917796318452"
EASY = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
EASY_SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def board(line: str) -> np.ndarray:
    return sd.parse_sudoku(line)


# ------------------------------------------------------------------------------------------- tokens

def test_tokens_round_trip_and_vocab():
    b = board(INKALA)
    t = sd.encode_board(b)
    assert t.shape == (81,) and t.dtype == np.uint8
    assert t[0] == 9 and t[1] == sd.BLANK_ID  # digit 8 -> token 9, blank -> 1
    assert np.array_equal(sd.decode_tokens(t), b)
    assert sd.vocab_size(9) == 11 and sd.vocab_size(4) == 6
    batch = np.stack([b, board(EASY)])
    assert np.array_equal(sd.decode_tokens(sd.encode_board(batch)), batch)
    assert sd.decode_tokens(np.zeros(16, np.uint8), size=4).sum() == 0  # PAD decodes to blank
    with pytest.raises(PuzzleError, match="0..5"):
        sd.decode_tokens(np.full(16, 6), size=4)
    with pytest.raises(PuzzleError, match="values must lie in 0..4"):
        sd.encode_board(np.full((4, 4), 5))


# ------------------------------------------------------------------------------------------- parsing

def test_pretty_format_round_trips():
    b = board(INKALA)
    text = sd.format_sudoku(b)
    assert "|" in text and "+" in text
    assert np.array_equal(sd.parse_sudoku(text), b)
    assert sd.to_line(b) == INKALA
    assert np.array_equal(sd.parse_sudoku(INKALA.replace(".", "0")), b)
    four = sd.parse_sudoku("12.. | 34..\n.... | ....")
    assert four.shape == (4, 4) and four[1, 1] == 4


@pytest.mark.parametrize("text,size,pattern", [
    (INKALA[:-1], None, r"found 80 cells; expected 81 \(9x9\) or 16"),
    (INKALA, 4, r"found 81 cells; expected 16 for a 4x4"),
    (INKALA[:5] + "x" + INKALA[6:], None, r"bad character 'x' at position 5 \(line 1, column 6\)"),
    ("1234\n12a4\n....\n....", None, r"'a' at position 7 \(line 2, column 3\)"),
    ("1.5.............", None, r"digit 5 at row 1, column 3 exceeds 4"),
    ("1..1" + "." * 12, None, r"digit 1 appears twice in row 1 \(columns 1 and 4\)"),
    ("2..." "...." "...." "2...", None, r"digit 2 appears twice in column 1 \(rows 1 and 4\)"),
    ("3..." ".3.." + "." * 8, None, r"digit 3 appears twice in box 1 \(cells r1c1 and r2c2\)"),
    ("." * 72 + "9" + "." * 7 + "9", None, r"digit 9 appears twice in row 9 \(columns 1 and 9\)"),
    ("." * 60 + "7" + "." * 9 + "7" + "." * 10, None, r"digit 7 appears twice in box 9 \(cells r7c7 and r8c8\)"),
])
def test_parse_errors_are_precise(text, size, pattern):
    with pytest.raises(PuzzleError, match=pattern):
        sd.parse_sudoku(text, size=size)


# ------------------------------------------------------------------------------------------- solver

def test_solver_on_known_puzzles():
    hard = sd.solve(INKALA)
    assert hard.num_solutions == 1 and hard.unique
    assert sd.to_line(hard.solution) == INKALA_SOLUTION
    # The rating is deterministic (naked + hidden singles, fewest-candidate cell, digits ascending); a
    # change to the propagation or branching order changes it and must be deliberate.
    assert hard.backtracks == 160
    easy = sd.solve(board(EASY))
    assert sd.to_line(easy.solution) == EASY_SOLUTION and easy.backtracks == 0
    assert sd.rate(EASY) == 0 and sd.rate(INKALA) == hard.backtracks
    assert sd.check_solution(board(INKALA), board(INKALA_SOLUTION))
    assert not sd.check_solution(board(EASY), board(INKALA_SOLUTION))  # breaks givens
    bad = board(INKALA_SOLUTION)
    bad[[0, 1]] = bad[[1, 0]]  # rows 1 and 2 share a band: still a valid grid
    assert sd.check_solution(np.zeros((9, 9), np.uint8), bad)
    bad[0, 0], bad[0, 1] = bad[0, 1], bad[0, 0]  # now columns 0 and 1 repeat digits
    assert not sd.check_solution(np.zeros((9, 9), np.uint8), bad)
    grids = np.stack([board(INKALA_SOLUTION)] * 4).astype(np.int64)
    grids[1, 4, 4] = 0  # incomplete
    grids[2, 0, 0] = -3  # out of range
    grids[3, 0, 0] = 10
    assert list(sd.valid_solutions(np.zeros_like(grids), grids)) == [True, False, False, False]
    latin = (np.add.outer(np.arange(9), np.arange(9)) % 9 + 1).astype(np.uint8)  # rows, columns ok; boxes not
    assert not sd.check_solution(np.zeros((9, 9), np.uint8), latin)
    assert sd.check_solution(np.zeros((9, 9), np.uint8), latin[:, [0, 3, 6, 1, 4, 7, 2, 5, 8]].T)


def _deadly_rectangle(grid: np.ndarray) -> tuple[int, int, int, int]:
    """Rows r1, r2 in one band and columns c1, c2 in different stacks with grid[r1, c1] == grid[r2, c2]
    and grid[r1, c2] == grid[r2, c1]: blanking these four cells leaves exactly two solutions."""
    for r1 in range(9):
        for r2 in range(r1 + 1, (r1 // 3 + 1) * 3):
            for c1 in range(9):
                for c2 in range((c1 // 3 + 1) * 3, 9):
                    if grid[r1, c1] == grid[r2, c2] and grid[r1, c2] == grid[r2, c1]:
                        return r1, r2, c1, c2
    raise AssertionError("no rectangle")


def test_counts_exactly_two_solutions():
    grid = board(INKALA_SOLUTION)
    r1, r2, c1, c2 = _deadly_rectangle(grid)
    puzzle = grid.copy()
    puzzle[[r1, r1, r2, r2], [c1, c2, c1, c2]] = 0
    assert sd.solve(puzzle, limit=10).num_solutions == 2
    assert sd.solve(puzzle, limit=2).num_solutions == 2
    assert sd.solve(puzzle, limit=1).num_solutions == 1
    with pytest.raises(PuzzleError, match="several solutions"):
        sd.rate(puzzle)


def test_no_solution_and_capping():
    assert sd.solve(np.zeros((4, 4), int), limit=2).num_solutions == 2
    assert sd.solve(np.zeros((4, 4), int), limit=1000).num_solutions == 288  # all 4x4 grids
    clash = np.zeros(16, int)
    clash[[0, 1]] = 1
    assert sd.solve(clash).num_solutions == 0 and sd.solve(clash).solution is None
    dead = sd.parse_sudoku("123. .... .... ...4")  # cell r1c4 must be 4, but column 4 has a 4
    assert sd.solve(dead).num_solutions == 0
    with pytest.raises(PuzzleError, match="values must lie in 0..4"):
        sd.solve(np.full((4, 4), 7))


# ------------------------------------------------------------------------------------------- generator

@pytest.mark.parametrize("size,givens", [(4, 6), (4, 4), (9, 32), (9, None)])
def test_generator_unique_with_requested_givens(size, givens):
    puzzle, solution, rating = sd.generate_puzzle(np.random.default_rng(7), size=size, givens=givens)
    res = sd.solve(puzzle)
    assert res.num_solutions == 1 and np.array_equal(res.solution, solution)
    assert res.backtracks == rating
    assert sd.check_solution(puzzle, solution)
    if givens is not None:
        assert int((puzzle > 0).sum()) == givens
    else:  # minimal: every clue is needed
        for r, c in np.argwhere(puzzle > 0):
            fewer = puzzle.copy()
            fewer[r, c] = 0
            assert sd.solve(fewer).num_solutions == 2


def test_generator_rating_filter_and_determinism():
    p, s, rating = sd.generate_puzzle(3, size=9, min_backtracks=2)
    assert rating >= 2 and sd.rate(p) == rating
    p2, _, _ = sd.generate_puzzle(3, size=9, min_backtracks=2)
    assert np.array_equal(p, p2)
    with pytest.raises(PuzzleError, match="after 3 attempts"):
        sd.generate_puzzle(0, size=4, givens=3, max_attempts=3)  # no 3-clue 4x4 puzzle exists


def test_generate_many_is_independent_of_worker_count():
    one = sd.generate_many(12, seed=5, size=4, difficulty="hard", workers=1)
    two = sd.generate_many(12, seed=5, size=4, difficulty="hard", workers=2)
    other = sd.generate_many(12, seed=5, size=4, difficulty="hard", workers=1, stream=1)
    for a, b in zip(one, two):
        assert np.array_equal(a, b)
    assert not np.array_equal(one[0], other[0])
    assert sd.valid_solutions(one[0], one[1]).all()
    assert len({p.tobytes() for p in one[0]}) == 12
    with pytest.raises(PuzzleError, match="unknown Sudoku difficulty"):
        sd.difficulty_preset("impossible")


# ------------------------------------------------------------------------------------------- augmentation

_BASE9 = (board(EASY), board(EASY_SOLUTION))
_BASE4 = sd.generate_puzzle(1, size=4)[:2]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), nine=st.booleans())
def test_augmentation_preserves_validity(seed, nine):
    puzzle, solution = _BASE9 if nine else _BASE4
    rng = np.random.default_rng(seed)
    p, s = sd.augment(puzzle, solution, rng)
    assert p.shape == puzzle.shape and p.dtype == np.uint8
    assert sd.check_solution(p, s)
    assert (p > 0).sum() == (puzzle > 0).sum()
    assert sorted(np.bincount(p.ravel(), minlength=10)[1:]) == sorted(np.bincount(puzzle.ravel(), minlength=10)[1:])
    res = sd.solve(p)
    assert res.num_solutions == 1 and np.array_equal(res.solution, s)


def test_augment_batch_varies_and_covers_transposes():
    p, s = _BASE9
    n = 400
    ap, as_ = sd.augment_batch(np.repeat(p[None], n, 0), np.repeat(s[None], n, 0), np.random.default_rng(0))
    assert sd.valid_solutions(ap, as_).all()
    assert len({x.tobytes() for x in as_}) == n
    # Undo the digit map; a transposed copy then has the original's row multiset in its columns.
    keyed = [tuple(sorted(map(tuple, np.sort(x, axis=1)))) for x in (ap > 0).astype(int)]
    rows_key = tuple(sorted(map(tuple, np.sort((p > 0).astype(int), axis=1))))
    same = np.mean([k == rows_key for k in keyed])
    assert 0.3 < same < 0.9  # ~half keep the row structure of blanks (not transposed)


# ------------------------------------------------------------------------------------------- CSV

def _write_csv(path, rows, header="source,question,answer,rating"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def csv_rows():
    puzzles, solutions, _ = sd.generate_many(12, seed=11, size=9, difficulty="easy", workers=1)
    return [("gen", sd.to_line(p), sd.to_line(s), 3 * i) for i, (p, s) in enumerate(zip(puzzles, solutions))]


def test_csv_round_trip_filter_and_subsample(tmp_path, csv_rows):
    path = _write_csv(tmp_path / "train.csv", csv_rows)
    q, a, r = sd.read_sudoku_csv(path)
    assert q.shape == (12, 9, 9) and q.dtype == np.uint8 and list(r) == [3 * i for i in range(12)]
    assert [sd.to_line(x) for x in q] == [row[1] for row in csv_rows]
    assert [sd.to_line(x) for x in a] == [row[2] for row in csv_rows]
    q, a, r = sd.read_sudoku_csv(path, min_rating=12)
    assert list(r) == [12, 15, 18, 21, 24, 27, 30, 33]
    q1, a1, r1 = sd.read_sudoku_csv(path, min_rating=12, limit=5, seed=3)
    q2, _, r2 = sd.read_sudoku_csv(path, min_rating=12, limit=5, seed=3)
    assert np.array_equal(q1, q2) and np.array_equal(r1, r2)
    idx = np.random.RandomState(3).choice(8, size=5, replace=False)  # the public builder's draw
    assert list(r1) == [12 + 3 * i for i in idx]
    assert np.array_equal(q1, q[idx]) and np.array_equal(a1, a[idx])
    assert len(sd.read_sudoku_csv(path, limit=100, seed=0)[0]) == 12  # limit >= rows: all, in order


@pytest.mark.parametrize("mutate,pattern", [
    (lambda r: (r[0], r[1], r[2]), r"bad.csv:3: 3 fields, expected 4"),
    (lambda r: (r[0], r[1], r[2], "hard"), r"bad.csv:3: rating 'hard' is not an integer"),
    (lambda r: (r[0], r[1][:-1], r[2], r[3]), r"bad.csv:3: question has 80 and answer 81 characters"),
    (lambda r: (r[0], "x" + r[1][1:], r[2], r[3]), r"bad.csv:3: question has 'x' at position 1"),
    (lambda r: (r[0], r[1], r[2][:-1] + ".", r[3]), r"bad.csv:3: answer has '.' at position 81"),
    (lambda r: (r[0], r[1], r[2][1:] + r[2][0], r[3]), r"bad.csv:3: the answer is not a valid 9x9 grid"),
])
def test_csv_malformed_rows_name_the_line(tmp_path, csv_rows, mutate, pattern):
    rows = list(csv_rows[:3])
    rows[1] = mutate(rows[1])
    path = _write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DatasetError, match=pattern):
        sd.read_sudoku_csv(path)


def test_csv_header_and_missing_file(tmp_path, csv_rows):
    with pytest.raises(DatasetError, match="lacks column"):
        sd.read_sudoku_csv(_write_csv(tmp_path / "h.csv", csv_rows[:2], header="a,b,c,d"))
    with pytest.raises(DatasetError, match="no such CSV"):
        sd.read_sudoku_csv(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------------------- builder

PUBLIC_FILES = {
    "all__inputs.npy": np.uint8, "all__labels.npy": np.uint8, "all__puzzle_identifiers.npy": np.int32,
    "all__puzzle_indices.npy": np.int32, "all__group_indices.npy": np.int32,
}
PUBLIC_FIELDS = {"pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                 "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "total_puzzles", "sets"}


def test_builder_generate_counts_and_metadata(tmp_path):
    out = sd.build_sudoku_dataset(tmp_path / "ds", size=4, difficulty="hard", train_size=5, num_aug=3,
                                  test_size=4, seed=1, workers=1, progress=False)
    train, test = load_set(out / "train"), load_set(out / "test")
    assert train.num_groups == 5 and train.num_puzzles == 20 and train.num_examples == 20
    assert list(train.group_indices) == [0, 4, 8, 12, 16, 20] and not train.puzzle_identifiers.any()
    assert test.num_groups == test.num_puzzles == test.num_examples == 4
    meta = read_metadata(out / "train")
    assert (meta.vocab_size, meta.seq_len, meta.pad_id, meta.ignore_label_id) == (6, 16, 0, 0)
    assert meta.num_puzzle_identifiers == 1 and meta.total_puzzles == 20 and meta.mean_puzzle_examples == 1
    assert meta.task == "sudoku" and meta.grid_shape == [4, 4] and meta.extra["builder"]["num_aug"] == 3
    assert load_identifiers(out) == ["<blank>"]
    puzzles, solutions = sd.decode_tokens(train.inputs, 4), sd.decode_tokens(train.labels, 4)
    assert sd.valid_solutions(puzzles, solutions).all() and train.labels.min() >= 2
    base = sd.generate_many(5, seed=1, size=4, difficulty="hard", workers=1)[0]
    assert np.array_equal(puzzles[::4], base)  # originals first in each group
    test_base = sd.generate_many(4, seed=1, size=4, difficulty="hard", workers=1, stream=1)[0]
    assert np.array_equal(sd.decode_tokens(test.inputs, 4), test_base)


def test_builder_uses_public_names_and_dtypes(tmp_path):
    out = sd.build_sudoku_dataset(tmp_path / "ds", size=4, train_size=2, num_aug=1, test_size=2,
                                  workers=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["identifiers.json", "test", "train"]
    for split in ("train", "test"):
        names = {p.name for p in (out / split).iterdir()}
        assert names == set(PUBLIC_FILES) | {"dataset.json"}
        for name, dtype in PUBLIC_FILES.items():
            arr = np.load(out / split / name)
            assert arr.dtype == dtype, name
            assert arr.ndim == (2 if name in ("all__inputs.npy", "all__labels.npy") else 1)
        meta = json.loads((out / split / "dataset.json").read_text())
        assert PUBLIC_FIELDS <= set(meta) and meta["sets"] == ["all"] and meta["blank_identifier_id"] == 0
    assert json.loads((out / "identifiers.json").read_text()) == ["<blank>"]


def test_builder_from_csv(tmp_path, csv_rows):
    train_csv = _write_csv(tmp_path / "train.csv", csv_rows)
    test_csv = _write_csv(tmp_path / "test.csv", csv_rows[:7])
    out = sd.build_sudoku_dataset(tmp_path / "ds", source="csv", csv_train=train_csv, csv_test=test_csv,
                                  train_size=4, num_aug=2, seed=9, min_rating=6, progress=False)
    train, test = load_set(out / "train"), load_set(out / "test")
    assert train.num_groups == 4 and train.num_examples == 12
    assert test.num_examples == 5  # every test row with rating >= 6 (ratings 0, 3 dropped)
    idx = np.random.RandomState(9).choice(10, size=4, replace=False)
    want = [csv_rows[2 + i][1] for i in idx]
    assert [sd.to_line(x) for x in sd.decode_tokens(train.inputs[::3])] == want
    assert read_metadata(out / "train").extra["source"] == "csv"
    with pytest.raises(DatasetError, match="no rows left"):
        sd.build_sudoku_dataset(tmp_path / "ds2", source="csv", csv_train=train_csv, csv_test=test_csv,
                                min_rating=10_000, progress=False)
