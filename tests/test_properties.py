"""Property-based tests (hypothesis): parsers round-trip and reject bad input only with the project's own
errors; the on-disk format round-trips and validate_set catches every inconsistency; every augmentation
has an inverse or preserves validity."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trm.config import Config, apply_overrides, config_from_dict
from trm.data import dihedral
from trm.tasks.arc import data as arc
from trm.tasks.maze import data as maze
from trm.tasks.sudoku import data as sudoku
from trm.data.format import (DatasetMetadata, PuzzleSet, PuzzleSetBuilder, load_identifiers, load_set,
                             read_metadata, validate_set, write_dataset)
from trm.errors import ConfigError, DatasetError, PuzzleError

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------------ Sudoku

@st.composite
def solved_grids(draw, sizes=(4, 9)) -> np.ndarray:
    """A complete valid grid: the canonical pattern with random digit, band, row, stack and column shuffles."""
    n = draw(st.sampled_from(sizes))
    b = math.isqrt(n)
    r, c = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    grid = (b * (r % b) + r // b + c) % n
    digits = np.array(draw(st.permutations(range(1, n + 1))))

    def lines() -> np.ndarray:
        bands = draw(st.permutations(range(b)))
        return np.array([band * b + i for band in bands for i in draw(st.permutations(range(b)))])

    grid = digits[grid][lines()][:, lines()]
    if draw(st.booleans()):
        grid = grid.T
    return np.ascontiguousarray(grid).astype(np.uint8)


@st.composite
def puzzles(draw) -> tuple[np.ndarray, np.ndarray]:
    """(puzzle, solution): a solved grid with a random subset of cells blanked."""
    solution = draw(solved_grids())
    mask = np.array(draw(st.lists(st.booleans(), min_size=solution.size, max_size=solution.size)))
    return np.where(mask.reshape(solution.shape), 0, solution).astype(np.uint8), solution


def unit_ok(grid: np.ndarray) -> bool:
    return bool(sudoku.valid_solutions(np.zeros_like(grid)[None], grid[None])[0])


@FAST
@given(puzzles())
def test_sudoku_format_and_line_parse_back(pair):
    board, solution = pair
    assert unit_ok(solution)
    assert np.array_equal(sudoku.parse_sudoku(sudoku.format_sudoku(board)), board)
    assert np.array_equal(sudoku.parse_sudoku(sudoku.to_line(board)), board)
    assert np.array_equal(sudoku.decode_tokens(sudoku.encode_board(board), board.shape[0]), board)


@FAST
@given(st.one_of(st.text(), st.text(alphabet="0123456789.|-+ \n\tx", min_size=10, max_size=100)),
       st.sampled_from([None, 4, 9]))
def test_sudoku_parser_raises_only_puzzle_error(text, size):
    try:
        board = sudoku.parse_sudoku(text, size)
    except PuzzleError:
        return
    assert board.shape in ((4, 4), (9, 9)) and board.max() <= board.shape[0]
    assert np.array_equal(sudoku.parse_sudoku(sudoku.format_sudoku(board)), board)


@FAST
@given(puzzles(), st.integers(0, 2 ** 32 - 1))
def test_sudoku_augmentation_preserves_validity(pair, seed):
    puzzle, solution = pair
    p, s = sudoku.augment(puzzle, solution, np.random.default_rng(seed))
    assert p.shape == puzzle.shape and unit_ok(s)
    assert sudoku.check_solution(p, s)                          # givens kept, solution valid
    assert (p == 0).sum() == (puzzle == 0).sum()
    assert sorted(np.bincount(s.ravel(), minlength=10)) == sorted(np.bincount(solution.ravel(), minlength=10))


@FEW
@given(st.lists(puzzles(), min_size=1, max_size=4).filter(lambda ps: len({p[0].shape for p in ps}) == 1),
       st.integers(0, 2 ** 32 - 1))
def test_sudoku_batch_augmentation_is_valid_row_by_row(pairs, seed):
    ps, ss = np.stack([p for p, _ in pairs]), np.stack([s for _, s in pairs])
    ap, as_ = sudoku.augment_batch(ps.reshape(len(ps), -1), ss.reshape(len(ss), -1), np.random.default_rng(seed))
    n = ps.shape[1]
    assert sudoku.valid_solutions(ap.reshape(-1, n, n), as_.reshape(-1, n, n)).all()


# -------------------------------------------------------------------------------------------------- mazes

@st.composite
def maze_grids(draw) -> np.ndarray:
    """An HxW grid of walls/open cells with one S and one G (possibly unreachable)."""
    h, w = draw(st.integers(2, 8)), draw(st.integers(2, 8))
    cells = draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
    g = np.where(np.array(cells).reshape(h, w), maze.OPEN, maze.WALL).astype(np.uint8)
    s, t = draw(st.lists(st.integers(0, h * w - 1), min_size=2, max_size=2, unique=True))
    g.flat[s], g.flat[t] = maze.START, maze.GOAL
    return g


@FAST
@given(maze_grids())
def test_maze_format_parse_round_trip_or_no_path(grid):
    text = maze.format_maze(grid)
    if maze.shortest_distance(grid) < 0:
        with pytest.raises(PuzzleError, match="no path"):
            maze.parse_maze(text)
        return
    assert np.array_equal(maze.parse_maze(text, size=grid.shape), grid)
    y = maze.solve_maze(grid)
    assert np.array_equal(maze.parse_maze(maze.format_maze(y)), y)


@FAST
@given(st.one_of(st.text(), st.text(alphabet="# SGo\n", max_size=80)), st.booleans())
def test_maze_parser_raises_only_puzzle_error(text, allow_path):
    try:
        grid = maze.parse_maze(text, allow_path=allow_path)
    except PuzzleError:
        return
    assert np.array_equal(maze.parse_maze(maze.format_maze(grid)), grid)


@FAST
@given(maze_grids(), st.integers(0, 7))
def test_maze_dihedral_keeps_a_shortest_path_and_inverts(grid, t):
    if grid.shape[0] != grid.shape[1]:
        grid = grid[:min(grid.shape), :min(grid.shape)]
    assume((grid == maze.START).sum() == 1 and (grid == maze.GOAL).sum() == 1)
    assume(maze.shortest_distance(grid) >= 0)
    y = maze.solve_maze(grid)
    tx, ty = dihedral.transform(grid, t), dihedral.transform(y, t)
    verdict = maze.check_path(tx, ty)
    assert verdict["valid"] and verdict["optimal"], verdict
    assert maze.shortest_distance(tx) == maze.shortest_distance(grid)
    assert np.array_equal(dihedral.inverse_transform(ty, t), y)


# ------------------------------------------------------------------------------------------ dihedral, ARC

arrays = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda s: st.lists(st.integers(0, 255), min_size=s[0] * s[1] * s[2], max_size=s[0] * s[1] * s[2]).map(
        lambda v: np.array(v, np.uint8).reshape(s)))


@FAST
@given(arrays, st.integers(0, 7))
def test_dihedral_inverse_undoes_every_transform(batch, t):
    assert np.array_equal(dihedral.inverse_transform(dihedral.transform(batch, t), t), batch)
    assert np.array_equal(dihedral.transform(dihedral.inverse_transform(batch, t), t), batch)
    single = batch[0]
    assert np.array_equal(dihedral.transform(batch, t)[0], dihedral.transform(single, t))


def test_the_eight_transforms_are_distinct():
    g = np.arange(9).reshape(3, 3)
    assert len({dihedral.transform(g, t).tobytes() for t in range(8)}) == 8
    with pytest.raises(ValueError):
        dihedral.transform(g, 8)


arc_grids = st.tuples(st.integers(1, 8), st.integers(1, 8)).flatmap(
    lambda s: st.lists(st.lists(st.integers(0, 9), min_size=s[1], max_size=s[1]), min_size=s[0], max_size=s[0]))


@FAST
@given(arc_grids, st.integers(0, 7), st.permutations(range(1, 10)), st.text(min_size=1, max_size=8))
def test_arc_augmentation_inverts_through_its_name(grid, t, perm, task_id):
    assume(arc.SEP not in task_id)
    perm = np.array([0, *perm], np.uint8)
    g = arc.grid_array(grid)
    name = arc.version_name(task_id, t, perm)
    tid, t2, p2 = arc.parse_version_name(name)
    assert (tid, t2) == (task_id, t) and np.array_equal(p2, perm)
    aug = arc.augment_grid(g, t, perm)
    assert np.array_equal(arc.invert_augmentation(aug, name), g)
    assert (aug == 0).sum() == (g == 0).sum()                   # colour 0 is fixed


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.sampled_from(["train", "test", "input", "output", "x"]), kids,
                                           max_size=4)), max_leaves=30)
pairs = st.fixed_dictionaries({"input": st.one_of(arc_grids, json_values), "output": st.one_of(arc_grids, json_values)})
tasks_like = st.one_of(json_values, st.fixed_dictionaries({
    "train": st.one_of(st.lists(pairs, max_size=3), json_values),
    "test": st.one_of(st.lists(pairs, max_size=2), json_values)}))


@FAST
@given(st.one_of(st.text(max_size=6), st.integers(), st.none()), tasks_like)
def test_arc_task_validation_raises_only_puzzle_error(task_id, task):
    try:
        arc.validate_task(task_id, task, "prop")
    except PuzzleError:
        return
    for split in ("train", "test"):
        for pair in task[split]:
            assert arc.grid_array(pair["input"]).max() <= 9


@FAST
@given(st.fixed_dictionaries({"train": st.lists(st.fixed_dictionaries({"input": arc_grids, "output": arc_grids}),
                                                min_size=1, max_size=3),
                              "test": st.lists(st.fixed_dictionaries({"input": arc_grids, "output": arc_grids}),
                                               min_size=1, max_size=2)}))
def test_well_formed_arc_tasks_pass(task):
    arc.validate_task("t", task)


# ------------------------------------------------------------------------------------------------- config

SECTIONS = {s.name: [f.name for f in dataclasses.fields(getattr(Config(), s.name))]
            for s in dataclasses.fields(Config) if s.name != "preset"}
KEYS = [f"{s}.{k}" for s, ks in SECTIONS.items() for k in ks]


@FAST
@given(st.lists(st.tuples(st.one_of(st.sampled_from(KEYS + ["data.build.x", "nope.x", "model"]), st.text(max_size=12)),
                          st.one_of(st.text(max_size=12),
                                    st.sampled_from(["nan", "inf", "-1", "0", "1e400", "[1, 2]", "{a: 1}", "[",
                                                     "true", "null", "3.5", "2", "mlp"]))),
                min_size=1, max_size=4))
def test_config_overrides_raise_only_config_error(kvs):
    try:
        cfg = apply_overrides(Config(), [f"{k}={v}" for k, v in kvs])
    except ConfigError:
        return
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()   # what validated reloads the same


@FAST
@given(st.sampled_from(["model.n", "model.T", "model.num_layers", "train.epochs", "train.seed", "eval.batch_size"]),
       st.integers(-3, 50))
def test_integer_overrides_are_applied_or_refused(key, value):
    try:
        cfg = apply_overrides(Config(), [f"{key}={value}"])
    except ConfigError as e:
        assert value < 1 or "must" in str(e)
        return
    sec, name = key.split(".")
    assert getattr(getattr(cfg, sec), name) == value


@FAST
@given(json_values)
def test_config_from_dict_raises_only_config_error(d):
    try:
        config_from_dict(d)
    except ConfigError:
        pass


# --------------------------------------------------------------------------------------- on-disk format

@st.composite
def puzzle_sets(draw) -> tuple[PuzzleSet, DatasetMetadata]:
    seq_len, vocab = draw(st.integers(1, 6)), draw(st.integers(2, 12))
    n_ids = draw(st.integers(1, 5))
    b = PuzzleSetBuilder(seq_len)
    for _ in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(1, 3))):
            k = draw(st.integers(1, 3))
            tok = st.lists(st.integers(0, vocab - 1), min_size=k * seq_len, max_size=k * seq_len)
            b.add_puzzle(draw(st.integers(0, n_ids - 1)), draw(tok), draw(tok))
        b.end_group()
    ps = b.build()
    meta = DatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab, seq_len=seq_len,
                           num_puzzle_identifiers=n_ids, total_groups=ps.num_groups, mean_puzzle_examples=1.0)
    return ps, meta


@FEW
@given(puzzle_sets())
def test_dataset_write_load_round_trip(ps_meta):
    ps, meta = ps_meta
    ids = ["<blank>"] + [f"p{i}" for i in range(1, meta.num_puzzle_identifiers)]
    with tempfile.TemporaryDirectory() as tmp:
        out = write_dataset(Path(tmp) / "d", {"train": (meta, {"all": ps})}, ids)
        from trm.tasks import infer_task
        inferred = meta.task or infer_task(meta.vocab_size, meta.seq_len)   # a dataset.json without a task
        assert read_metadata(out / "train") == dataclasses.replace(meta, task=inferred)
        assert load_identifiers(out) == ids
        for mmap in (False, True):
            back = load_set(out / "train", mmap=mmap)
            for f in dataclasses.fields(PuzzleSet):
                a, b = getattr(back, f.name), getattr(ps, f.name)
                assert a.dtype == b.dtype and np.array_equal(a, b), f.name


def _corrupt(ps: PuzzleSet, meta: DatasetMetadata, kind: str, data) -> tuple[PuzzleSet, DatasetMetadata]:
    """One inconsistency of the given kind (every kind breaks a documented rule)."""
    a = {f.name: getattr(ps, f.name).copy() for f in dataclasses.fields(PuzzleSet)}
    m = dataclasses.replace(meta)
    if kind == "float_inputs":
        a["inputs"] = a["inputs"].astype(np.float32)
    elif kind == "float_offsets":
        a["puzzle_indices"] = a["puzzle_indices"].astype(np.float64)
    elif kind == "token_over_vocab":
        name = data.draw(st.sampled_from(["inputs", "labels"]))
        a[name].flat[data.draw(st.integers(0, a[name].size - 1))] = meta.vocab_size
    elif kind == "negative_token":
        name = data.draw(st.sampled_from(["inputs", "labels"]))
        a[name] = a[name].astype(np.int16)
        a[name].flat[data.draw(st.integers(0, a[name].size - 1))] = -1
    elif kind == "puzzle_offsets_not_rising":
        pi = a["puzzle_indices"]
        assume(len(pi) >= 3)
        i = data.draw(st.integers(1, len(pi) - 2))
        pi[i] = pi[i + 1] if data.draw(st.booleans()) else pi[i - 1]
    elif kind == "unsigned_offsets_falling":
        pi = a["puzzle_indices"].astype(np.uint32)
        assume(len(pi) >= 3)
        i = data.draw(st.integers(1, len(pi) - 2))
        pi[i] = pi[-1] + 1
        a["puzzle_indices"] = pi
    elif kind == "group_offsets_wrong_end":
        a["group_indices"][-1] += data.draw(st.sampled_from([-1, 1]))
        assume(a["group_indices"][-1] != ps.num_puzzles)
    elif kind == "id_out_of_range":
        a["puzzle_identifiers"][data.draw(st.integers(0, ps.num_puzzles - 1))] = \
            data.draw(st.sampled_from([-1, meta.num_puzzle_identifiers, 10 ** 6]))
    elif kind == "labels_shorter":
        a["labels"] = a["labels"][:-1]
    elif kind == "wrong_seq_len":
        m.seq_len += 1
    elif kind == "inputs_3d":
        a["inputs"] = a["inputs"][:, :, None]
    elif kind == "offsets_2d":
        a["group_indices"] = a["group_indices"][None]
    return PuzzleSet(**a), m


CORRUPTIONS = ["float_inputs", "float_offsets", "token_over_vocab", "negative_token", "puzzle_offsets_not_rising",
               "unsigned_offsets_falling", "group_offsets_wrong_end", "id_out_of_range", "labels_shorter",
               "wrong_seq_len", "inputs_3d", "offsets_2d"]


@FAST
@given(puzzle_sets(), st.sampled_from(CORRUPTIONS), st.data())
def test_validate_set_catches_every_inconsistency(ps_meta, kind, data):
    ps, meta = ps_meta
    validate_set(ps, meta, where="ok")
    bad, m = _corrupt(ps, meta, kind, data)
    with pytest.raises(DatasetError, match="^here: "):
        validate_set(bad, m, where="here")


@FEW
@given(puzzle_sets(), st.sampled_from(CORRUPTIONS[:-3]), st.data())
def test_an_inconsistent_array_on_disk_is_refused_naming_it(ps_meta, kind, data):
    ps, meta = ps_meta
    bad, _ = _corrupt(ps, meta, kind, data)
    with tempfile.TemporaryDirectory() as tmp:
        out = write_dataset(Path(tmp) / "d", {"train": (meta, {"all": ps})}, ["<blank>"] + ["x"] * 9)
        for f in dataclasses.fields(PuzzleSet):
            np.save(out / "train" / f"all__{f.name}.npy", getattr(bad, f.name))
        with pytest.raises(DatasetError, match=f"{out / 'train'}.*checksum mismatch"):
            load_set(out / "train")
        with pytest.raises(DatasetError, match=f"^{out / 'train' / 'all'}: "):   # the validation itself
            load_set(out / "train", mmap=True)


@FEW
@given(st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(DatasetMetadata)]), json_values))
def test_read_metadata_raises_only_dataset_error(fields_):
    import json
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        good = dict(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=6, seq_len=16,
                    num_puzzle_identifiers=1, total_groups=1, mean_puzzle_examples=1.0)
        (d / "dataset.json").write_text(json.dumps({**good, **fields_}))
        try:
            meta = read_metadata(d)
        except DatasetError as e:
            assert "dataset.json" in str(e)
            return
        assert isinstance(meta.vocab_size, int) and meta.vocab_size >= 1 and isinstance(meta.seq_len, int)
