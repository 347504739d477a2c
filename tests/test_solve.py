"""Inference: trm.load / save_pretrained round trip, fixed and adaptive halting, rollouts and their
selection, ARC test-time adaptation and voting, the `trm solve` command, reports, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import trm
from conftest import run_cli
from trm.errors import CheckpointError, PuzzleError
from trm.solve import Solver, _perturb, _select, load


def sudoku_solver(data_dir, *extra: str, seed: int = 0) -> Solver:
    """A small untrained 4x4 Sudoku model whose halting head gives varied probabilities."""
    from conftest import tiny_config
    from trm.data.format import read_metadata
    from trm.model.recursive import RecursiveReasoner
    from trm.train.run import fill_model_dims
    cfg = tiny_config(data_dir, None, *extra)
    meta = read_metadata(data_dir / "train")
    fill_model_dims(cfg, meta)
    torch.manual_seed(seed)
    model = RecursiveReasoner(cfg.model)
    with torch.no_grad():                   # the trained head is zero-initialised: give it some spread
        model.halt_head.weight.normal_(0, 0.5)
        model.halt_head.bias.zero_()
    return Solver(model, cfg, {"task": "sudoku", "grid_shape": [4, 4], "ignore_label_id": 0}, torch.device("cpu"))


@pytest.fixture(scope="module")
def solver(sudoku4_dir) -> Solver:
    return sudoku_solver(sudoku4_dir)


@pytest.fixture(scope="module")
def test_inputs(sudoku4_dir) -> np.ndarray:
    from trm.data.format import load_set
    return np.asarray(load_set(sudoku4_dir / "test").inputs[:16])


PUZZLE = "1.3..4...2..4.1."


# ---------------------------------------------------------------------------------------------------
# Export and load


def test_save_pretrained_round_trip_gives_identical_outputs(solver, test_inputs, tmp_path):
    out = solver.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["task"] == "sudoku" and cfg["config"]["model"]["hidden_size"] == 32
    loaded = trm.load(out, device="cpu")
    assert isinstance(loaded, Solver) and loaded.task == "sudoku"
    for name, t in solver.model.state_dict().items():
        assert torch.equal(t, loaded.model.state_dict()[name]), name
    ids = torch.zeros(len(test_inputs), dtype=torch.int32)
    x = torch.from_numpy(test_inputs.astype(np.int32))
    with torch.no_grad():
        a = solver.model(x, ids, *solver.model.initial_state(len(x)))
        b = loaded.model(x, ids, *loaded.model.initial_state(len(x)))
    assert torch.equal(a.logits, b.logits) and torch.equal(a.q_halt, b.q_halt)
    r1, r2 = solver.solve_tokens(test_inputs), Solver.from_pretrained(out, device="cpu").solve_tokens(test_inputs)
    assert np.array_equal(r1.tokens, r2.tokens) and np.array_equal(r1.halt_probs, r2.halt_probs)


def test_load_refuses_broken_exports(solver, tmp_path):
    out = solver.save_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load(tmp_path / "missing")
    (out / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load(out)
    out = solver.save_pretrained(tmp_path / "m2")
    cfg = json.loads((out / "config.json").read_text())
    cfg["config"]["model"]["hidden_size"] = 48
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        load(out)


# ---------------------------------------------------------------------------------------------------
# Halting


def test_one_puzzle_or_a_batch(solver):
    one = solver.solve(PUZZLE)
    assert one.tokens.shape == (1, 16) and one.answers[0].shape == (4, 4)
    assert one.steps[0] == solver.model.cfg.N_sup and 0 < one.halt_probs[0] < 1
    board = np.array([[1, 0, 3, 0], [0, 4, 0, 0], [0, 2, 0, 0], [4, 0, 1, 0]])
    batch = solver.solve([PUZZLE, board, board.tolist()])
    assert batch.tokens.shape == (3, 16)
    assert np.array_equal(batch.tokens[0], one.tokens[0]) and np.array_equal(batch.tokens[1], one.tokens[0])
    assert np.array_equal(solver.solve(np.stack([board, board])).tokens[1], one.tokens[0])


def test_adaptive_answers_equal_the_fixed_trace_at_the_halting_step(solver, test_inputs):
    fixed = solver.solve_tokens(test_inputs, halting="fixed", trace=True)
    thr = float(np.median(fixed.trace_halt[:, 0]))
    ada = solver.solve_tokens(test_inputs, halting="adaptive", halt_threshold=thr, trace=True)
    assert 1 <= ada.steps.min() and ada.steps.max() <= solver.model.cfg.N_sup
    assert (ada.steps == 1).sum() == (fixed.trace_halt[:, 0] > thr).sum() > 0
    for i, k in enumerate(ada.steps):
        assert np.array_equal(ada.tokens[i], fixed.trace[i, k - 1])
        assert np.isclose(ada.halt_probs[i], fixed.trace_halt[i, k - 1], atol=1e-5)
        assert np.array_equal(ada.trace[i, :k], fixed.trace[i, :k])


def test_halted_rows_stop_costing_compute(sudoku4_dir, test_inputs):
    s = sudoku_solver(sudoku4_dir)
    rows: list[int] = []
    real = s.model.deep_recursion

    def counting(x, y, z):
        rows.append(x.shape[0])
        return real(x, y, z)

    s.model.deep_recursion = counting
    fixed = s.solve_tokens(test_inputs, halting="fixed", trace=True)
    assert rows == [len(test_inputs)] * s.model.cfg.N_sup
    rows.clear()
    thr = float(np.median(fixed.trace_halt[:, 0]))
    ada = s.solve_tokens(test_inputs, halting="adaptive", halt_threshold=thr)
    assert sum(rows) == ada.steps.sum() < fixed.steps.sum()
    assert rows[1] == (ada.steps > 1).sum()
    rows.clear()
    s.solve_tokens(test_inputs, halting="adaptive", halt_threshold=0.0)     # p > 0 always: one step each
    assert rows == [len(test_inputs)]


def test_max_steps_caps_the_supervision_steps(solver, test_inputs):
    res = solver.solve_tokens(test_inputs[:4], halting="fixed", max_steps=2, trace=True)
    assert (res.steps == 2).all() and res.trace.shape == (4, 2, 16)


# ---------------------------------------------------------------------------------------------------
# Rollouts


def test_one_rollout_or_zero_noise_is_the_plain_run(solver, test_inputs):
    plain = solver.solve_tokens(test_inputs)
    same = solver.solve_tokens(test_inputs, rollouts=4, noise=0.0, select="vote")
    assert np.array_equal(plain.tokens, same.tokens) and (same.agreement == 1).all()
    assert (same.compute_steps == 4 * solver.model.cfg.N_sup).all()
    one = solver.solve_tokens(test_inputs, rollouts=1, noise=1.0)      # rollout 0 never gets noise
    assert np.array_equal(plain.tokens, one.tokens)


def test_noisy_rollouts_differ_and_are_reproducible(solver, test_inputs):
    a = solver.solve_tokens(test_inputs, rollouts=4, noise=1.0, select="halt", seed=3)
    b = solver.solve_tokens(test_inputs, rollouts=4, noise=1.0, select="halt", seed=3)
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.rollout, b.rollout)
    assert (a.agreement < 1).any() and (a.rollout > 0).any()
    plain = solver.solve_tokens(test_inputs)
    assert (a.halt_probs >= plain.halt_probs - 1e-6).all()      # halt selection never does worse than rollout 0


def test_rollouts_in_several_chunks(solver, test_inputs):
    from trm.solve import first_rollouts, select_rollouts
    rows = solver.run_rollouts(test_inputs[:6], rollouts=4, noise=0.5, noise_at="start", batch_size=8, seed=1)
    assert rows["tokens"].shape == (24, 16) and rows["valid"].shape == (24,)
    plain = solver.solve_tokens(test_inputs[:6])
    assert np.array_equal(rows["tokens"][::4], plain.tokens)            # rollout 0 of each puzzle: no noise
    assert not np.allclose(rows["halt_probs"][1::4], rows["halt_probs"][::4])
    res = select_rollouts(rows, 4, "vote")
    assert res.tokens.shape == (6, 16) and (res.compute_steps == 4 * solver.model.cfg.N_sup).all()
    assert np.array_equal(select_rollouts(first_rollouts(rows, 4, 1), 1).tokens, plain.tokens)


class ParityRule(Solver):
    """The same solver with a different answer rule (first cell even), so answers pass and fail it."""

    def check(self, inputs, answers):
        return np.asarray(answers)[:, 0] % 2 == 0


def parity_solver(data_dir) -> ParityRule:
    s = sudoku_solver(data_dir, "model.N_sup=6", seed=1)
    return ParityRule(s.model, s.config, s.data, s.device)


def test_require_valid_keeps_refining_rule_breakers(sudoku4_dir, test_inputs):
    s = parity_solver(sudoku4_dir)
    cap = s.model.cfg.N_sup
    plain = s.solve_tokens(test_inputs, halting="adaptive", halt_threshold=0.0)
    assert (plain.steps == 1).all() and not plain.valid.all()
    res = s.solve_tokens(test_inputs, halting="adaptive", halt_threshold=0.0, require_valid=True, trace=True)
    assert (res.valid | (res.steps == cap)).all()                     # stopped early only on a passing answer
    assert (res.steps[~plain.valid] > 1).all() and (res.steps[plain.valid] == 1).all()
    for i, k in enumerate(res.steps):                                 # it stopped at the first passing step
        first_ok = [j for j in range(k) if res.trace[i, j, 0] % 2 == 0]
        assert k == (first_ok[0] + 1 if first_ok else cap)


def test_stop_on_valid_stops_all_rollouts_of_a_solved_puzzle(sudoku4_dir, test_inputs):
    s = parity_solver(sudoku4_dir)
    K, cap = 4, s.model.cfg.N_sup
    rows = s.run_rollouts(test_inputs, halting="adaptive", halt_threshold=0.0, rollouts=K, noise=1.0, noise_at="start",
                          require_valid=True, stop_on_valid=True, seed=2)
    steps = rows["steps"].reshape(-1, K)
    valid = rows["valid"].reshape(-1, K)
    assert (steps == steps[:, :1]).all()                              # a puzzle's rollouts stop together
    solved = valid.any(1)
    assert (steps[~solved] == cap).all() and (steps[solved] < cap).any()
    alone = s.run_rollouts(test_inputs, halting="adaptive", halt_threshold=0.0, rollouts=K, noise=1.0, noise_at="start",
                           require_valid=True, seed=2)
    first = alone["steps"].reshape(-1, K).min(1)                     # each puzzle's first passing rollout
    assert np.array_equal(steps[solved, 0], first[solved])


def test_perturb_scales_with_the_rms_and_spares_masked_rows():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(4, 50, 64) * 3
    mask = torch.tensor([False, True, True, False])
    out = _perturb(t, 0.5, mask, g)
    assert torch.equal(out[0], t[0]) and torch.equal(out[3], t[3])
    rel = (out[1] - t[1]).pow(2).mean().sqrt() / t[1].pow(2).mean().sqrt()
    assert 0.45 < float(rel) < 0.55


def _rows(answers, probs, valid):
    answers = np.asarray(answers, np.uint8)
    return {"tokens": answers, "steps": np.full(len(answers), 3, np.int32), "halt_probs": np.asarray(probs, np.float32),
            "trace": None, "trace_halt": None, "valid": None if valid is None else np.asarray(valid)}


def test_selection_rules():
    a, b, c = [2, 3], [3, 2], [4, 4]
    r = _rows([a, b, b, c], [0.9, 0.2, 0.3, 0.95], None)
    assert _select(r, 4, "halt", True, False)["rollout"][0] == 3                    # highest halting prob
    vote = _select(r, 4, "vote", True, False)
    assert vote["rollout"][0] == 2 and vote["agreement"][0] == 0.5                  # majority, best member
    r = _rows([a, b, b, c], [0.9, 0.2, 0.3, 0.95], [True, False, False, False])
    assert _select(r, 4, "halt", True, False)["rollout"][0] == 0                    # rule breakers rejected
    assert _select(r, 4, "vote", True, False)["rollout"][0] == 0
    assert _select(r, 4, "halt", False, False)["rollout"][0] == 3                   # unless asked not to
    r = _rows([a, b, c, c, a, a], [0.1, 0.2, 0.9, 0.8, 0.3, 0.2], None)             # two puzzles, K = 3
    s = _select(r, 3, "vote", True, False)
    assert list(s["rollout"]) == [2, 1] and list(s["compute_steps"]) == [9, 9]      # tie -> mean halt prob


# ---------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("puzzle,message", [
    ("1..4", "found 4 cells"),
    ("1.x4............", "bad character 'x'"),
    ("11..............", "digit 1 appears twice in row 1"),
    ("." * 81, "this model solves 4x4 Sudoku (16 cells); the puzzle is 9x9"),
    (np.zeros((9, 9), int), "this model solves 4x4 Sudoku"),
    (np.full((4, 4), 7), "0..4"),
    (np.zeros((4, 4)), "integers"),
    ([], "no puzzles given"),
    (3.5, "cannot read a puzzle"),
])
def test_malformed_puzzles_get_one_clear_message(solver, puzzle, message):
    with pytest.raises(PuzzleError, match=None) as e:
        solver.solve(puzzle)
    assert message in str(e.value)


def test_the_bad_puzzle_of_a_batch_is_named(solver):
    with pytest.raises(PuzzleError, match="puzzle 1 of the batch"):
        solver.solve([PUZZLE, "1..4"])


@pytest.mark.parametrize("kw", [dict(halting="sometimes"), dict(rollouts=0), dict(noise=-1.0), dict(select="best"),
                                dict(noise_on="x"), dict(halt_threshold=1.0), dict(max_steps=0)])
def test_bad_options_are_refused(solver, kw):
    with pytest.raises(ValueError):
        solver.solve(PUZZLE, **kw)


def test_token_rows_are_checked(solver):
    with pytest.raises(PuzzleError, match=r"shape \[B, 16\]"):
        solver.solve_tokens(np.zeros((2, 81), np.uint8))
    with pytest.raises(PuzzleError, match="tokens must lie in 0..5"):
        solver.solve_tokens(np.full((2, 16), 9, np.uint8))


# ---------------------------------------------------------------------------------------------------
# Command line (Sudoku)


def test_cli_sudoku_with_rollouts_and_pictures(capsys, solver, tmp_path):
    ckpt = solver.save_pretrained(tmp_path / "m")
    png, gif = tmp_path / "r.png", tmp_path / "r.gif"
    code, out, err = run_cli(capsys, "solve", "sudoku", PUZZLE, "--checkpoint", str(ckpt), "--rollouts", "4",
                             "--noise", "0.5", "--select", "vote", "--png", str(png), "--gif", str(gif),
                             "--halting", "fixed")
    assert code in (0, 3), err
    assert "supervision step" in out and "rollout" in out and "of 4 chosen" in out
    from PIL import Image
    assert Image.open(png).size[0] > 100 and Image.open(gif).n_frames == solver.model.cfg.N_sup


# ---------------------------------------------------------------------------------------------------
# ARC: test-time adaptation and voting


def arc_solver(seed: int = 0) -> Solver:
    from trm.config import Config, ModelConfig
    from trm.model.recursive import RecursiveReasoner
    cfg = Config(model=ModelConfig(hidden_size=32, num_heads=2, T=1, n=1, N_sup=2, puzzle_emb_dim=32,
                                   forward_dtype="float32", vocab_size=12, seq_len=900, num_puzzle_ids=5))
    cfg.train.puzzle_emb_lr = 1e-2
    cfg.train.puzzle_emb_weight_decay = 0.1
    torch.manual_seed(seed)
    return Solver(RecursiveReasoner(cfg.model), cfg, {"task": "arc", "grid_shape": [30, 30]}, torch.device("cpu"))


TASK = {"train": [{"input": [[1, 0], [0, 2]], "output": [[2, 0], [0, 1]]},
                  {"input": [[3, 3], [0, 1]], "output": [[1, 3], [0, 3]]}],
        "test": [{"input": [[0, 4], [5, 0]], "output": [[0, 5], [4, 0]]}, {"input": [[6, 1, 1]]}]}


def test_adaptation_fits_only_the_new_rows():
    from trm.tasks.arc.solve import adapt, parse_task
    s = arc_solver()
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    table = s.model.puzzle_emb
    ad = adapt(s, parse_task(TASK, "t1"), versions=2, steps=8, batch_size=4, optimizer="adam", lr=0.05)
    assert ad.source == "fitted" and ad.weight.shape == (2, 32) and len(ad.losses) == 8
    assert ad.weight.abs().sum() > 0 and ad.names[0] == "t1"
    assert np.mean(ad.losses[-2:]) < np.mean(ad.losses[:2])
    assert s.model.puzzle_emb is table
    for k, v in s.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in s.model.parameters())


def test_arc_solve_votes_over_versions(tmp_path):
    s = arc_solver()
    res = s.solve(TASK, versions=3, adapt_steps=2, adapt_batch_size=4, trace=True)
    ex = res.extra
    assert len(res.answers) == 2 and ex["test_index"] == [0, 1] and ex["versions"] == [3, 3]
    assert ex["rank"][1] is None and (ex["rank"][0] is None or ex["rank"][0] >= -1)
    assert all(len(a) <= 2 for a in ex["attempts"]) and all(sum(v) <= 3 for v in ex["votes"])
    assert res.trace.shape[:2] == (2, 2) and res.compute_steps[0] == 3 * 2
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"a": TASK, "b": TASK}))
    both = s.solve(str(path), versions=2, adapt_steps=1)
    assert both.extra["task_id"] == ["a", "a", "b", "b"]


@pytest.mark.parametrize("task,message", [
    ({"train": []}, "missing key 'test'"),
    ({"train": [], "test": [{"input": [[1]]}]}, "'train' must be a non-empty list"),
    ({"train": [{"input": [[1]]}], "test": [{"input": [[1]]}]}, "train pair 0: missing key 'output'"),
    ({"train": [{"input": [[1]], "output": None}], "test": [{"input": [[1]]}]}, "train pair 0: 'output' is null"),
    ({"train": [{"input": [[1], [2, 3]], "output": [[1]]}], "test": [{"input": [[1]]}]}, "ragged rows"),
    ({"train": [{"input": [[1]], "output": [[12]]}], "test": [{"input": [[1]]}]}, "outside 0..9"),
    ({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"output": [[1]]}]}, "test pair 0: expected"),
    ({"train": [{"input": [[1] * 31], "output": [[1]]}], "test": [{"input": [[1]]}]}, "larger than the 30x30"),
    ([], "no ARC tasks given"),
])
def test_malformed_arc_tasks_are_named(task, message):
    from trm.tasks.arc.solve import read_tasks
    with pytest.raises(PuzzleError) as e:
        read_tasks(task)
    assert message in str(e.value)


def test_arc_model_checks(solver, tmp_path):
    from trm.tasks.arc.solve import solve_tasks
    with pytest.raises(CheckpointError, match="not an ARC model"):
        solve_tasks(solver, TASK)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PuzzleError, match="not valid JSON"):
        arc_solver().solve(str(bad))


def test_cli_arc_prints_attempts_and_draws_the_task(capsys, tmp_path):
    ckpt = arc_solver().save_pretrained(tmp_path / "arc")
    task = tmp_path / "mytask.json"
    task.write_text(json.dumps(TASK))
    png, gif = tmp_path / "t.png", tmp_path / "t.gif"
    code, out, err = run_cli(capsys, "solve", "arc", str(task), "--checkpoint", str(ckpt), "--versions", "2",
                             "--adapt-steps", "2", "--png", str(png), "--gif", str(gif), "--halting", "fixed")
    assert code in (0, 3), err
    assert "task mytask: fitted 2 task embeddings" in out and "test 2:" in out and "attempt 1" in out
    assert "correct answer" in out
    from PIL import Image
    assert Image.open(png).size[1] > 100 and Image.open(gif).n_frames == 2


# ---------------------------------------------------------------------------------------------------
# Report


def test_report_draws_missing_pictures_and_writes_md_and_html(sudoku4_dir, tmp_path):
    from conftest import tiny_config
    from trm.report import write_report
    from trm.pipeline import train
    run = train(tiny_config(sudoku4_dir, tmp_path, "train.max_steps=2", "eval.max_examples=8"), progress=False)
    for name in ("solved.png", "refinement.png", "refinement.gif", "report.md", "report.html"):
        assert (run / name).is_file(), name
        if name != "report.md":
            (run / name).unlink()
    md = write_report(run).read_text()
    assert "![curves](curves.png)" in md and "solved.png" in md and "Resolved config" in md
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "exact" in html
    assert (run / "refinement.gif").is_file()
    with pytest.raises(trm.errors.TRMError, match="not a run directory"):
        write_report(tmp_path)
