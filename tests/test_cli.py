"""The command line: presets and counts, and bad input ending in one clear message and exit status 2."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest

from conftest import run_cli


@pytest.mark.parametrize("preset,params", [("sudoku-extreme-att", 6_828_034), ("sudoku-extreme-mlp", 5_028_866)])
def test_info_prints_exact_params_and_total_steps(capsys, preset, params):
    code, out, _ = run_cli(capsys, "info", preset)
    info = json.loads(out)
    assert code == 0 and info["params"] == params and info["total_steps"] == 65_104
    assert info["config"]["model"]["T"] == 3 and info["config"]["train"]["lr"] == 1e-4


def test_info_list_names_the_presets(capsys):
    code, out, _ = run_cli(capsys, "info", "--list")
    presets = json.loads(out)
    assert {"sudoku-cpu", "sudoku-extreme-att", "sudoku-extreme-mlp"} <= set(presets)


@pytest.mark.parametrize("argv,message", [
    (("info", "no-such-preset"), "unknown preset 'no-such-preset'"),
    (("info", "sudoku-cpu", "model.nope=3"), "unknown key 'model.nope'"),
    (("info", "sudoku-cpu", "model.n=three"), "model.n: expected int"),
    (("info", "sudoku-cpu", "model.mixer=conv"), "model.mixer='conv' is not one of"),
    (("info", "sudoku-cpu", "train.global_batch_size=0"), "global_batch_size must be >= 1"),
    (("train", "sudoku-cpu", "data.path=/nonexistent/x", "data.build={}"), "no dataset here"),
    (("eval", "/nonexistent/run"), "no such checkpoint"),
])
def test_bad_input_gives_one_clear_message(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def trained_run(sudoku4_dir, tmp_path_factory):
    from conftest import tiny_config
    from trm.pipeline import train
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(sudoku4_dir, out, "train.max_steps=3", "eval.max_examples=8")
    return train(cfg, progress=False)


def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "report.md", "solved.png",
                 "checkpoints/last.pt", "model/model.safetensors", "model/config.json"):
        assert (trained_run / name).is_file(), name
    assert any((trained_run / "tb").iterdir())
    lines = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/exact" in x for x in lines) and any("train/lm_loss" in x for x in lines)


def test_eval_prints_metrics_after_every_step(capsys, trained_run, tmp_path):
    code, out, err = run_cli(capsys, "eval", str(trained_run), "--max-examples", "20")
    metrics = json.loads(out[out.index("{"):])
    assert code == 0 and metrics["examples"] == 20 and len(metrics["exact_by_step"]) == 4
    # An ARC submission from a Sudoku split is refused before any work, and nothing is written.
    code, _, err = run_cli(capsys, "eval", str(trained_run), "--submission", str(tmp_path / "sub.json"))
    assert code == 2 and "--submission is for tasks with a submission format (arc)" in err
    assert not (tmp_path / "sub.json").exists()


@pytest.mark.parametrize("puzzle,message", [
    ("12", "found 2 cells"),
    ("1234" * 3 + "x234", "'x'"),
    ("11..............", "row 1"),
])
def test_solve_rejects_malformed_puzzles(capsys, trained_run, puzzle, message):
    code, out, err = run_cli(capsys, "solve", "sudoku", puzzle, "--checkpoint", str(trained_run))
    assert code == 2 and message in err, err


def test_solve_says_when_the_puzzle_has_the_wrong_size(capsys, trained_run):
    code, _, err = run_cli(capsys, "solve", "sudoku", "." * 81, "--checkpoint", str(trained_run))
    assert code == 2 and "4x4" in err and "81" in err


def test_solve_prints_a_grid_and_the_steps(capsys, trained_run):
    code, out, err = run_cli(capsys, "solve", "sudoku", "1.3..4...2..4.1.", "--checkpoint", str(trained_run),
                             "--halting", "fixed")
    assert "supervision step" in out and code in (0, 3)


def test_corrupt_checkpoint_is_named(capsys, trained_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained_run, broken)
    ckpt = broken / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    code, _, err = run_cli(capsys, "train", "--resume", "--run-dir", str(broken),
                           f"data.path={trained_run}/nonexistent")
    assert code == 2 and "last.pt" in err


def test_resume_refuses_a_different_model_config(capsys, trained_run):
    code, _, err = run_cli(capsys, "train", "--resume", "--run-dir", str(trained_run), "model.n=3")
    assert code == 2 and "differs from the checkpoint" in err, err


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/trm-pwned",))


def test_a_malicious_pickle_is_refused(tmp_path):
    import os

    from trm.errors import CheckpointError
    from trm.io import load_checkpoint
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"engine": _Evil()}))
    if os.path.exists("/tmp/trm-pwned"):
        os.remove("/tmp/trm-pwned")
    with pytest.raises(CheckpointError, match="refused|corrupt"):
        load_checkpoint(path)
    assert not os.path.exists("/tmp/trm-pwned")


def test_every_option_of_every_command_is_described():
    """`trm <command> --help` (and `trm data <kind> --help`) describes each option, choices listed."""
    import argparse

    from trm.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, f"{path} {name}")
            elif action.dest != "help":
                yield path, action

    undescribed = [f"{path} {(a.option_strings or [a.dest])[-1]}" for path, a in walk(build_parser(), "trm")
                   if not a.help]
    assert undescribed == []
    maze = next(c for p, c in walk(build_parser(), "trm") if p == "trm data maze" and c.dest == "wall_density")
    from trm.tasks.maze.data import DEFAULT_WALL_DENSITY
    assert f"(default {DEFAULT_WALL_DENSITY})" in maze.help


@pytest.mark.parametrize("preset", ["sudoku-cpu", "maze-cpu", "arc-cpu", "futoshiki-cpu"])
def test_info_counts_parameters_before_the_dataset_exists(capsys, tmp_path, preset):
    """The task's dims (from data.build) give the model's shape; the count equals the built model's."""
    import torch

    from trm.config import load_config
    from trm.model.recursive import RecursiveReasoner
    from trm.tasks import dims_from_build
    code, out, err = run_cli(capsys, "info", preset, f"data.path={tmp_path / 'none'}")
    assert code == 0, err
    info = json.loads(out)
    cfg = load_config(preset, [f"data.path={tmp_path / 'none'}"])
    assert dims_from_build(cfg)
    with torch.device("meta"):
        assert info["params"] == RecursiveReasoner(cfg.model).num_params() > 0


@pytest.mark.parametrize("argv", [["solve", "sudoku", "bad"], ["eval", "RUN", "--batch-size", "0"], ["--help"],
                                  ["data", "maze", "--help"]])
def test_help_and_early_errors_do_not_import_torch(argv):
    """A bad puzzle or option is refused in a fraction of a second: torch (over 1 s to import) is not loaded."""
    import subprocess
    import sys
    code = ("import sys\nfrom trm.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)" % argv)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
