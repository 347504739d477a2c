"""No run lost: checkpoint/manifest pairs that survive a kill at any moment, a locked run directory,
resume checks before anything is written, a full disk, signals in every phase. Real subprocesses,
real files, real signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trm.errors import CheckpointError
from trm.io import load_checkpoint, remove_stale_temporaries, save_checkpoint

ARGS = ["model.hidden_size=32", "model.puzzle_emb_dim=32", "model.num_heads=2", "model.mixer=mlp", "model.T=2",
        "model.n=2", "model.N_sup=4", "model.forward_dtype=float32", "train.global_batch_size=16", "train.lr=1e-3",
        "train.lr_warmup_steps=2", "train.eval_interval=0", "train.log_every=1", "eval.report_puzzles=0",
        "eval.max_examples=16"]


def trm(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "trm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def finish(p: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = p.communicate(timeout=timeout)
    return out


# ------------------------------------------------------------------------------ checkpoint pairs

def _state(step: int, n: int = 1000) -> dict:
    return {"engine": {"step": step, "w": torch.full((n,), float(step))}, "config": {}}


def test_a_kill_between_the_manifest_and_the_file_rename_still_loads(tmp_path, monkeypatch):
    """The manifest is replaced first and accepts the file it replaces: the old file still loads."""
    import trm.io as ck
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1))
    real_replace = os.replace

    def dies_at_the_checkpoint_rename(src, dst):
        if Path(dst) == path:
            raise KeyboardInterrupt("killed")            # the process dies here
        real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", dies_at_the_checkpoint_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _state(2))
    monkeypatch.setattr(ck.os, "replace", real_replace)
    assert json.loads(path.with_name("last.pt.json").read_text())["step"] == 2   # the new manifest
    assert load_checkpoint(path)["engine"]["step"] == 1                          # the old file loads
    save_checkpoint(path, _state(3))                                             # and the next save works
    assert load_checkpoint(path)["engine"]["step"] == 3
    manifest = json.loads(path.with_name("last.pt.json").read_text())
    assert manifest["previous"]["step"] == 1


def test_a_corrupt_file_is_still_refused(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1))
    save_checkpoint(path, _state(2))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".last.pt.json.xyz.tmp").write_text("{")
    (tmp_path / "keep.txt").write_text("mine")
    assert len(remove_stale_temporaries(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_full_disk_is_one_clear_error_and_the_previous_checkpoint_survives(tmp_path):
    """A real size limit (RLIMIT_FSIZE: writes past it fail with EFBIG) while the checkpoint is saved."""
    code = f"""
import resource, sys, torch
from trm.errors import CheckpointError
from trm.io import save_checkpoint, load_checkpoint
p = {str(tmp_path / 'last.pt')!r}
save_checkpoint(p, {{"engine": {{"step": 1, "w": torch.zeros(10)}}}})
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    save_checkpoint(p, {{"engine": {{"step": 2, "w": torch.zeros(1_000_000)}}}})
except CheckpointError as e:
    print("ERROR", e)
print("STEP", load_checkpoint(p)["engine"]["step"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERROR cannot save the checkpoint" in out.stdout and "MiB free" in out.stdout
    assert "the previous checkpoint is intact" in out.stdout and "STEP 1" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------------------ whole runs

@pytest.mark.slow
def test_kills_at_many_moments_then_resume_equal_an_uninterrupted_run(sudoku4_dir, tmp_path):
    """SIGKILL a run that checkpoints every step at random moments (often inside a save), resume each
    time with no manual step, until it finishes: the final weights equal an uninterrupted run's."""
    common = [f"data.path={sudoku4_dir}", f"run.out_dir={tmp_path}", *ARGS, "train.max_steps=12",
              "train.checkpoint_every=1"]
    straight = trm("train", "--quiet", *common, "run.name=straight")
    assert straight.wait(300) == 0, finish(straight)
    run = tmp_path / "killed"
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    kills = 0
    p = trm("train", "--quiet", *common, "run.name=killed")
    for _ in range(12):
        ckpt = run / "checkpoints" / "last.pt"
        deadline = time.time() + 120
        while not ckpt.exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        if p.poll() is not None:
            break
        p.send_signal(signal.SIGKILL)
        p.communicate()
        kills += 1
        p = trm("train", "--quiet", "--resume", "--run-dir", str(run), *common, "run.name=killed")
    out = finish(p)
    assert p.returncode == 0, out
    assert kills >= 1
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(run / "model" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a), f"resumed weights differ after {kills} kills"
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"train/' in x]
    assert steps == sorted(set(steps)), "a step was logged twice"
    assert not list((run / "checkpoints").glob(".*.tmp"))


@pytest.mark.slow
def test_a_second_process_in_the_same_run_directory_is_refused(sudoku4_dir, tmp_path):
    common = [f"data.path={sudoku4_dir}", f"run.out_dir={tmp_path}", *ARGS, "train.max_steps=100000",
              "run.name=busy"]
    first = trm("train", "--quiet", *common)
    metrics = tmp_path / "busy" / "metrics.jsonl"
    deadline = time.time() + 120
    while not metrics.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second = trm("train", "--quiet", *common)
    out = finish(second)
    first.send_signal(signal.SIGTERM)
    finish(first)
    assert second.returncode == 2 and f"is in use by process {first.pid}" in out and "Traceback" not in out


@pytest.fixture(scope="module")
def trained_run(sudoku4_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished 2-step run (trained in this process) and the overrides that made it."""
    from trm.config import load_config
    from trm.pipeline import train
    out = tmp_path_factory.mktemp("runs")
    common = [f"data.path={sudoku4_dir}", f"run.out_dir={out}", *ARGS, "train.max_steps=2", "run.name=r"]
    return train(load_config(None, common), progress=False), common


@pytest.mark.parametrize("change, message", [
    ("train.global_batch_size=8", "train.global_batch_size=8 but the checkpoint was trained with 16"),
    ("data.path=/nonexistent/other", "data.path='/nonexistent/other' but the checkpoint"),
    ("model.n=3", "the model config differs from the checkpoint's (n)"),
])
def test_an_incompatible_resume_is_refused_before_anything_is_written(trained_run, tmp_path, capsys, change,
                                                                     message):
    import shutil

    from conftest import run_cli
    src, common = trained_run
    run = tmp_path / "r"
    shutil.copytree(src, run)
    common = [c for c in common if not c.startswith("run.out_dir")] + [f"run.out_dir={tmp_path}"]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, out, err = run_cli(capsys, "train", "--quiet", "--resume", "--run-dir", str(run), *common,
                             "train.max_steps=4", change)
    assert code == 2 and message in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    if change.startswith("train.global_batch_size"):                  # the run still resumes
        code, out, err = run_cli(capsys, "train", "--quiet", "--resume", "--run-dir", str(run), "train.max_steps=3")
        assert code == 0 and "resumed" in out, err


@pytest.mark.slow
def test_sigterm_during_the_final_evaluation_keeps_the_training(sudoku4_dir, tmp_path):
    """A signal after the last step: a clear message, exit 0, and --resume evaluates and exports."""
    common = [f"data.path={sudoku4_dir}", f"run.out_dir={tmp_path}", *ARGS[:-1], "train.max_steps=3",
              "eval.batch_size=1", "eval.max_examples=0", "run.name=late"]
    p = trm("train", "--quiet", *common)
    manifest = tmp_path / "late" / "checkpoints" / "last.pt.json"
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        try:
            if json.loads(manifest.read_text())["step"] == 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    out = finish(p)
    if "done:" in out:
        pytest.skip("the evaluation finished before the signal arrived")
    assert p.returncode == 0, out
    assert "during the final evaluation and export" in out and "--resume" in out
    assert not (tmp_path / "late" / "model" / "model.safetensors").exists()
    p = trm("train", "--quiet", "--resume", "--run-dir", str(tmp_path / "late"))
    out = finish(p)
    assert p.returncode == 0 and "done:" in out, out
    assert (tmp_path / "late" / "model" / "model.safetensors").is_file()


def test_sigint_during_the_data_build_leaves_no_run_directory(tmp_path):
    data = tmp_path / "data"
    p = trm("train", "sudoku-cpu", f"data.path={data}", "data.build.train_size=3000", "data.build.num_aug=2",
            "data.build.workers=1", f"run.out_dir={tmp_path / 'runs'}", "run.name=early")
    deadline = time.time() + 120
    while not (tmp_path / "runs" / "early").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out = finish(p, timeout=120)
    assert p.returncode == 130 and "interrupted" in out and "Traceback" not in out, out
    assert not (tmp_path / "runs" / "early").exists()


# ------------------------------------------------------------------------------ one error boundary

PUZZLE = "...3.82...9..4718.8.5....374592.6318128.9.476..7....52.31.65..4..243..61.7..2.593"


@pytest.mark.parametrize("argv, message", [
    (("solve", "sudoku", "nonexistent.txt"), "nonexistent.txt: no such file"),
    (("solve", "sudoku", "BINARY"), "not a text file (not UTF-8)"),
    (("solve", "sudoku", "DIR"), "is a directory"),
    (("solve", "maze", "BINARY"), "not a text file (not UTF-8)"),
    (("solve", "maze", "nonexistent.txt"), "nonexistent.txt: no such file"),
    (("solve", "sudoku", PUZZLE, "--rollouts", "0"), "rollouts must be an integer >= 1"),
    (("solve", "sudoku", PUZZLE, "--noise", "-1"), "noise must be >= 0"),
    (("solve", "sudoku", PUZZLE, "--max-steps", "0"), "max_steps must be a positive integer"),
    (("train", "nonexistent.yaml"), "nonexistent.yaml: no such file"),
    (("train", "train.lr"), "looks like an override without a value: write train.lr=VALUE"),
    (("eval", "ASSET", "--batch-size", "0", "--data", "DATA"), "batch size must be an integer >= 1"),
    (("eval", "ASSET", "--max-examples", "-1", "--data", "DATA"), "max_examples must be >= 0"),
    (("eval", "RANDOM_PT"), "not a checkpoint (not a PyTorch archive)"),
])
def test_expected_errors_are_one_line_without_a_traceback(argv, message, tmp_path, sudoku4_dir):
    from importlib import resources
    binary, random_pt = tmp_path / "puzzle.bin", tmp_path / "random.pt"
    binary.write_bytes(b"\xff\xfe\x00\x81" * 30)
    random_pt.write_bytes(os.urandom(4096))
    subs = {"BINARY": str(binary), "DIR": str(tmp_path), "RANDOM_PT": str(random_pt), "DATA": str(sudoku4_dir),
            "ASSET": str(resources.files("trm") / "assets" / "sudoku-cpu")}
    argv = [subs.get(a, a) for a in argv]
    out = subprocess.run([sys.executable, "-m", "trm", *argv], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and message in out.stderr, out.stderr
    assert "weights_only=False" not in out.stderr
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("error:")] == out.stderr.strip().splitlines()[-1:]


def test_solve_reads_standard_input():
    out = subprocess.run([sys.executable, "-m", "trm", "solve", "sudoku", "-"], input=PUZZLE, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0 and "valid solution" in out.stdout, out.stderr


def test_a_sudoku_csv_with_a_byte_order_mark_is_read(tmp_path):
    from trm.tasks.sudoku.data import read_sudoku_csv
    csv = tmp_path / "train.csv"
    solution = "716358249293647185845912637459276318128593476367184952931765824582439761674821593"
    row = f"src,{PUZZLE},{solution},0\n"
    csv.write_text("source,question,answer,rating\n" + row, encoding="utf-8-sig")
    assert csv.read_bytes()[:3] == b"\xef\xbb\xbf"
    puzzles, solutions, ratings = read_sudoku_csv(csv)
    assert len(puzzles) == 1 and "".join(map(str, solutions[0].ravel())) == solution


def test_max_steps_zero_is_refused_and_null_means_the_epoch_formula():
    from trm.config import load_config
    from trm.errors import ConfigError
    with pytest.raises(ConfigError, match="train.max_steps must be >= 1, got 0"):
        load_config("sudoku-cpu", ["train.max_steps=0"])
    assert load_config("sudoku-cpu", ["train.max_steps=null"]).train.max_steps is None
    assert load_config("sudoku-extreme-mlp").train.max_steps is None


@pytest.mark.parametrize("target, message", [("DIR", "is a directory"), ("FILE/x.png", "does not exist"),
                                             ("NOWHERE/x.png", "does not exist")])
def test_picture_paths_are_checked_before_the_work(tmp_path, target, message):
    (tmp_path / "file").write_text("x")
    path = target.replace("DIR", str(tmp_path)).replace("FILE", str(tmp_path / "file")) \
                 .replace("NOWHERE", str(tmp_path / "nowhere"))
    out = subprocess.run([sys.executable, "-m", "trm", "solve", "sudoku", PUZZLE, "--png", path],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 2 and message in out.stderr and out.stdout == "", out.stdout + out.stderr


def test_data_source_csv_accepts_the_two_word_form(tmp_path, capsys):
    from conftest import run_cli
    solution = "716358249293647185845912637459276318128593476367184952931765824582439761674821593"
    for name in ("train.csv", "test.csv"):
        (tmp_path / name).write_text(f"source,question,answer,rating\nsrc,{PUZZLE},{solution},0\n")
    code, out, err = run_cli(capsys, "data", "sudoku", "--out", str(tmp_path / "ds"), "--source", "csv",
                             str(tmp_path), "--num-aug", "0")
    assert code == 0, err
    assert (tmp_path / "ds" / "train" / "dataset.json").is_file()


def test_data_refuses_to_replace_a_different_dataset_without_force(tmp_path, capsys):
    from conftest import run_cli
    args = ["data", "sudoku", "--out", str(tmp_path / "ds"), "--size", "4", "--train-size", "20", "--num-aug", "1",
            "--test-size", "8", "--workers", "1"]
    assert run_cli(capsys, *args)[0] == 0
    stamp = (tmp_path / "ds" / "train" / "dataset.json").stat().st_mtime_ns
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "up to date" in out
    code, _, err = run_cli(capsys, *args[:-4], "--seed", "5", *args[-4:])
    assert code == 2 and "built with other settings (seed: 0 -> 5)" in err and "--force" in err
    assert (tmp_path / "ds" / "train" / "dataset.json").stat().st_mtime_ns == stamp
    assert run_cli(capsys, *args[:-4], "--seed", "5", *args[-4:], "--force")[0] == 0


def test_an_official_style_dataset_loads_and_its_task_is_inferred(sudoku4_dir, tmp_path):
    """The official builders write no "task" and store the group count in total_puzzles."""
    import shutil

    from trm.data.format import load_set, read_metadata
    ds = tmp_path / "official"
    shutil.copytree(sudoku4_dir, ds)
    for split in ("train", "test"):
        meta_path = ds / split / "dataset.json"
        raw = json.loads(meta_path.read_text())
        raw.pop("task", None)
        raw["total_puzzles"] = raw["total_groups"]
        meta_path.write_text(json.dumps(raw))
        assert read_metadata(ds / split).task == "sudoku"
        load_set(ds / split)
