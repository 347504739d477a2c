"""Futoshiki, the fourth task (written only against the plug-in API): solver, generator, symmetries,
text form, the dataset builder and the CLI end to end (data, train, eval, solve)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from trm.errors import PuzzleError
from trm.tasks.futoshiki import data as fd

KNOWN = """\
.   . < .   .
    ^   v
. < .   .   .
v   v
.   .   .   .
        v
2   . > .   .
"""
KNOWN_SOLUTION = np.array([[4, 1, 3, 2], [3, 4, 2, 1], [1, 2, 4, 3], [2, 3, 1, 4]])


def test_solver_finds_the_unique_solution_and_counts_ambiguity():
    p = fd.parse_futoshiki(KNOWN)
    res = fd.solve(p, limit=2)
    assert res.num_solutions == 1 and (res.solution == KNOWN_SOLUTION).all()
    assert fd.check_solution(p, res.solution)
    assert fd.solve(fd.empty_puzzle(4), limit=2).num_solutions == 2          # no clues: many
    loose = p._replace(givens=np.zeros((4, 4), np.uint8))                      # signs without the given 2
    assert fd.solve(loose, limit=2).num_solutions == 2
    bad = KNOWN_SOLUTION.copy()
    bad[0, [0, 1]] = bad[0, [1, 0]]
    assert not fd.check_solution(p, bad)


@pytest.mark.parametrize("n", [4, 5, 6])
def test_generated_puzzles_are_unique_and_deterministic(n):
    for i in range(3):
        p, sol = fd.generate(n, np.random.default_rng(i))
        q, sol2 = fd.generate(n, np.random.default_rng(i))
        assert all((a == b).all() for a, b in zip(p, q)) and (sol == sol2).all()
        assert fd.check_solution(p, sol)
        res = fd.solve(p, limit=2)
        assert res.num_solutions == 1 and (res.solution == sol).all()
    a = fd.generate_many(4, seed=7, size=4, workers=1)
    b = fd.generate_many(4, seed=7, size=4, workers=1)
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all() and fd.valid_tokens(*a).all()


def test_every_augmentation_keeps_solutions_valid_and_tokens_round_trip():
    p, sol = fd.generate(5, np.random.default_rng(1))
    x, y = fd.encode(p), fd.encode(p, sol)
    assert x.shape == (81,) and x.max() < fd.vocab_size(5) and y.max() < fd.vocab_size(5)
    q, cells = fd.decode(x)
    assert all((a == b).all() for a, b in zip(p, q)) and (cells == p.givens).all()
    assert (fd.decode(y)[1] == sol).all()
    seen = set()
    for k in range(fd.NUM_TRANSFORMS):
        xt, yt = fd.transform_tokens(x, k), fd.transform_tokens(y, k)
        assert fd.valid_tokens(xt[None], yt[None])[0], k
        pt, st = fd.transform_puzzle(p, sol, k)
        assert fd.check_solution(pt, st) and fd.solve(pt).num_solutions == 1
        assert ((xt == yt) | (xt == fd.BLANK_ID)).all()              # relations copied, givens kept
        seen.add(xt.tobytes())
    assert len(seen) == fd.NUM_TRANSFORMS                             # 16 distinct versions
    assert (fd.transform_tokens(fd.transform_tokens(x, 8), 8) == x).all()


def test_text_round_trip_and_one_line_form():
    p = fd.parse_futoshiki(KNOWN)
    assert p.size == 4 and p.h[0, 1] == 1 and p.h[3, 1] == 2 and p.v[0, 1] == 1 and p.v[0, 2] == 2
    q = fd.parse_futoshiki(fd.format_futoshiki(p))
    assert all((a == b).all() for a, b in zip(p, q))
    one_line = fd.parse_futoshiki("1 . . < .|^|. . . .||. . . .||. . . .")
    assert one_line.givens[0, 0] == 1 and one_line.h[0, 2] == 1 and one_line.v[0, 0] == 1
    filled = fd.format_futoshiki(p, KNOWN_SOLUTION)
    assert (fd.parse_futoshiki(filled).givens == KNOWN_SOLUTION).all()


@pytest.mark.parametrize("text,message", [
    ("1 . .\n. . .", "found 2 rows"),
    ("1 . . .\n. . .\n. . . .\n. . . .", "row 2 has 3 cells"),
    ("1 . x .\n. . . .\n. . . .\n. . . .", "bad token 'x'"),
    ("5 . . .\n. . . .\n. . . .\n. . . .", "exceeds 4"),
    ("1 1 . .\n. . . .\n. . . .\n. . . .", "appears twice in row 1"),
    ("2 > 3 . .\n. . . .\n. . . .\n. . . .", "break"),
    ("< 1 . .\n. . . .\n. . . .\n. . . .", "between two cells"),
    ("^\n1 . . .\n. . . .\n. . . .\n. . . .", "between two rows"),
    ("1 . . .\n          v\n. . . .\n. . . .\n. . . .", "under no cell"),
])
def test_malformed_text_gives_a_clear_puzzle_error(text, message):
    with pytest.raises(PuzzleError, match=message):
        fd.parse_futoshiki(text)


def test_registry_dims_and_recognition_do_not_collide():
    from trm.tasks import REGISTRY, get, infer_task
    task = get("futoshiki")
    assert task.dims({"size": 5}) == (12, 81) and task.dims({"size": 4}) == (11, 49)
    for vocab, seq in ((11, 49), (12, 81), (13, 121)):
        assert infer_task(vocab, seq) == "futoshiki"
    for vocab, seq in ((11, 81), (6, 16), (12, 900), (6, 900), (6, 49)):
        assert not task.recognises(vocab, seq)
        assert infer_task(vocab, seq) != "futoshiki"
    assert sum(t.recognises(12, 81) for t in REGISTRY.values()) == 1


def test_pictures_draw():
    p = fd.parse_futoshiki(KNOWN)
    task = __import__("trm.tasks", fromlist=["get"]).get("futoshiki")
    x, y = fd.encode(p), fd.encode(p, KNOWN_SOLUTION)
    wrong = y.copy()
    wrong[2] = 5
    img = task.draw_example(x, wrong, y, title="t")
    assert img.width > 100 and img.height > 100
    strip, frames = task.refinement(x, np.stack([x, wrong, y]), np.array([0.1, 0.5, 0.9]), y, None, "r")
    assert len(frames) == 3 and strip.width > img.width


@pytest.fixture(scope="module")
def futo_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("futo") / "data"
    return out


def test_cli_data_train_eval_solve(capsys, futo_data, tmp_path):
    from trm.data.format import load_set, read_metadata
    code, out, err = run_cli(capsys, "data", "futoshiki", "--out", str(futo_data), "--size", "4",
                             "--train-size", "40", "--num-aug", "3", "--test-size", "16", "--workers", "1")
    assert code == 0, err
    train = load_set(futo_data / "train")
    meta = read_metadata(futo_data / "train")
    assert meta.task == "futoshiki" and (meta.vocab_size, meta.seq_len) == (11, 49)
    assert train.num_examples == 160 and train.num_groups == 40
    assert fd.valid_tokens(train.inputs, train.labels).all()
    test = load_set(futo_data / "test")
    assert test.num_examples == 16 and fd.valid_tokens(test.inputs, test.labels).all()
    raw = json.loads((futo_data / "test" / "dataset.json").read_text())
    raw["task"] = ""
    from trm.tasks import infer_task
    assert infer_task(raw["vocab_size"], raw["seq_len"]) == "futoshiki"

    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "train", "futoshiki-cpu", f"data.path={futo_data}", f"run.out_dir={runs}",
                             "run.name=run", "model.hidden_size=32", "model.puzzle_emb_dim=32", "model.num_heads=2",
                             "model.N_sup=2", "train.max_steps=3", "train.eval_interval=0", "train.log_every=1",
                             "eval.report_puzzles=1", "model.forward_dtype=float32")
    assert code == 0, err
    run = runs / "run"
    assert (run / "model" / "model.safetensors").is_file() and (run / "solved.png").is_file()
    last = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "eval/exact" in x][-1]
    assert any(k.endswith("valid_solution") for k in last)

    code, out, err = run_cli(capsys, "solve", "futoshiki", KNOWN, "--checkpoint", str(run))
    assert code in (0, 3), err
    assert ("valid solution" in out) and len(out.strip().splitlines()) >= 7
    grid = out.splitlines()[:7]                                                 # the printed 4x4 grid
    assert [len(line.replace("<", " ").replace(">", " ").split()) for line in grid[::2]] == [4] * 4
    assert "valid solution" in out.splitlines()[7]

    code, out, err = run_cli(capsys, "solve", "futoshiki", "1 1 . .\n. . . .\n. . . .\n. . . .",
                             "--checkpoint", str(run))
    assert code == 2 and "appears twice" in err

    code, out, err = run_cli(capsys, "eval", str(run), "--max-examples", "8")
    assert code == 0, err
    assert "valid_solution" in json.loads(out[out.index("{"):])
