"""Real learning: a tiny TRM trained from scratch solves held-out 4x4 Sudoku puzzles it never saw."""

from __future__ import annotations

import json

import pytest

from trm.config import load_config
from trm.tasks.sudoku.data import build_sudoku_dataset
from trm.pipeline import train


@pytest.mark.slow
def test_tiny_trm_learns_4x4_sudoku(tmp_path):
    data = build_sudoku_dataset(tmp_path / "s4", size=4, difficulty="medium", train_size=500, num_aug=20,
                                test_size=200, seed=0, workers=1, progress=False)
    cfg = load_config(None, [
        f"data.path={data}", "model.hidden_size=64", "model.num_heads=2", "model.mixer=mlp", "model.T=2",
        "model.n=2", "model.N_sup=4", "model.zero_init_residual=true", "train.global_batch_size=64",
        "train.lr=3e-3", "train.lr_warmup_steps=20", "train.weight_decay=0.1", "train.ema_warmup=true",
        "train.puzzle_emb_lr=1e-2", "train.eval_interval=0", "train.max_steps=250", "eval.report_puzzles=2",
        f"run.out_dir={tmp_path}", "run.name=learn"])
    run = train(cfg, progress=False)
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "eval/exact" in x]
    final = evals[-1]
    # held-out puzzles, EMA weights, all N_sup steps; the untrained model is at ~0
    assert final["eval/exact"] >= 0.9, final
    assert final["eval/valid_solution"] >= 0.9
