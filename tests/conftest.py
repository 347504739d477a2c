"""Shared fixtures: small real datasets built once per test session."""

from __future__ import annotations

import os

import pytest
import torch

if "OMP_NUM_THREADS" not in os.environ:      # an explicit thread count (e.g. 1 for a slow-machine run) wins
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def sudoku4_dir(tmp_path_factory):
    """4x4 Sudoku: 200 base puzzles x (1 + 4) versions for training, 100 held-out puzzles."""
    from trm.tasks.sudoku.data import build_sudoku_dataset
    out = tmp_path_factory.mktemp("data") / "sudoku4"
    return build_sudoku_dataset(out, size=4, difficulty="medium", train_size=200, num_aug=4, test_size=100,
                                seed=0, workers=1, progress=False)


def tiny_config(data_dir, tmp_path=None, *extra: str):
    """A small TRM on 4x4 Sudoku that runs a step in milliseconds."""
    from trm.config import load_config
    overrides = [f"data.path={data_dir}", "model.hidden_size=32", "model.num_heads=2", "model.mixer=mlp",
                 "model.T=2", "model.n=2", "model.N_sup=4", "model.forward_dtype=float32",
                 "train.global_batch_size=16", "train.lr=1e-3", "train.lr_warmup_steps=2",
                 "train.eval_interval=0", "train.log_every=1", "eval.report_puzzles=2"]
    if tmp_path is not None:
        overrides += [f"run.out_dir={tmp_path}", "run.name=run"]
    overrides += list(extra)
    return load_config(None, overrides)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``trm ARGV`` in-process; returns (exit status, stdout, stderr)."""
    from trm.cli import main
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err
