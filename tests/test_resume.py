"""Interrupted runs: SIGKILL at a random step then --resume gives bitwise the same final weights as an
uninterrupted run; SIGTERM saves a checkpoint and exits cleanly. Real subprocesses, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

ARGS = ["model.hidden_size=32", "model.puzzle_emb_dim=32", "model.num_heads=2", "model.mixer=mlp", "model.T=2",
        "model.n=2",
        "model.N_sup=4", "model.forward_dtype=float32", "train.global_batch_size=16", "train.lr=1e-3",
        "train.lr_warmup_steps=2", "train.eval_interval=0", "train.log_every=1", "train.max_steps=14",
        "train.checkpoint_every=2", "eval.report_puzzles=1", "eval.max_examples=16"]


def trm(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "trm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


def run_ok(*args: str) -> str:
    p = trm(*args)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    return out


def checkpoint_step(run: Path) -> int:
    manifest = run / "checkpoints" / "last.pt.json"
    if not manifest.is_file():
        return -1
    try:
        return json.loads(manifest.read_text())["step"]
    except (json.JSONDecodeError, KeyError):
        return -1


def weights(run: Path) -> dict:
    return load_file(run / "model" / "model.safetensors")


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(sudoku4_dir, tmp_path):
    common = [f"data.path={sudoku4_dir}", f"run.out_dir={tmp_path}", *ARGS]
    run_ok("train", "--quiet", *common, "run.name=straight")

    victim = trm("train", "--quiet", *common, "run.name=killed")
    run = tmp_path / "killed"
    target = 2 * int.from_bytes(os.urandom(1), "little") % 5 + 2    # a random checkpoint: 2..10
    deadline = time.time() + 240
    while checkpoint_step(run) < target and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert not (run / "model").exists(), "the run finished before it could be killed"
    killed_at = checkpoint_step(run)
    assert killed_at >= 2

    out = run_ok("train", "--quiet", "--resume", "--run-dir", str(run), *common, "run.name=killed")
    assert f"resumed {run} at step {killed_at}" in out
    a, b = weights(tmp_path / "straight"), weights(run)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a), "resumed weights differ from the uninterrupted run"


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(sudoku4_dir, tmp_path):
    common = [f"data.path={sudoku4_dir}", f"run.out_dir={tmp_path}", "run.name=term", *ARGS[:-4],
              "train.max_steps=100000", "train.checkpoint_every=0", "train.log_every=1"]
    p = trm("train", "--quiet", *common)
    metrics = tmp_path / "term" / "metrics.jsonl"
    deadline = time.time() + 240
    while (not (metrics.is_file() and metrics.read_text().count("\n") >= 3) and p.poll() is None
           and time.time() < deadline):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    assert "SIGTERM received" in out and "resume with --resume" in out
    assert checkpoint_step(tmp_path / "term") >= 3
