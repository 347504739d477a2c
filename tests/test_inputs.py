"""Bad inputs end in one clear error that names the culprit: broken dataset directories, unwritable or full
output locations (checked before any work), broken exported models and checkpoints, and puzzles of the
wrong size for a model. Real files throughout; read-only and full disks are real tmpfs mounts made in a
private mount namespace (``unshare``), since chmod does not stop root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli as _run_cli
from trm.data.format import ARRAY_NAMES, load_identifiers, load_set, read_metadata
from trm.errors import CheckpointError, DatasetError, PuzzleError


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code, _, err = _run_cli(capsys, *argv)
    return code, err


def one_clear_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def load_everything(d: Path) -> None:
    for split in ("train", "test"):
        read_metadata(d / split)
        load_set(d / split)
    load_identifiers(d)


@pytest.fixture
def data(sudoku4_dir, tmp_path) -> Path:
    """A private copy of the small 4x4 Sudoku dataset, free to break."""
    return Path(shutil.copytree(sudoku4_dir, tmp_path / "data"))


# ------------------------------------------------------------------------------ dataset directories

FILES = [f"train/all__{n}.npy" for n in ARRAY_NAMES] + ["test/all__inputs.npy", "train/dataset.json",
                                                         "test/dataset.json", "identifiers.json"]


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_named(data, name):
    (data / name).unlink()
    with pytest.raises(DatasetError, match=f"{data / name}: missing"):
        load_everything(data)


@pytest.mark.parametrize("name", [f"train/all__{n}.npy" for n in ARRAY_NAMES])
def test_a_truncated_array_is_named(data, name):
    path = data / name
    raw = path.read_bytes()
    path.write_bytes(raw[:-1])
    with pytest.raises(DatasetError, match=f"{path}: truncated"):
        load_everything(data)
    path.write_bytes(raw[:60])                          # cut inside the header
    with pytest.raises(DatasetError, match=f"{path}: (not a valid .npy|truncated)"):
        load_everything(data)
    path.write_bytes(raw + b"\0" * 7)
    with pytest.raises(DatasetError, match=f"{path}: trailing bytes"):
        load_everything(data)


def test_a_flipped_byte_is_caught_by_the_checksum(data):
    path = data / "train" / "all__labels.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] = 2 if raw[-1] != 2 else 3                  # still a valid token: only the checksum can tell
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=f"{path}: checksum mismatch"):
        load_set(data / "train")
    assert load_set(data / "train", mmap=True).labels[-1, -1] == raw[-1]   # a memory map is size-checked only


def test_a_pickled_array_is_refused(data):
    path = data / "train" / "all__labels.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=f"{path}: holds Python objects"):
        load_set(data / "train")


@pytest.mark.parametrize("edit,message", [
    ({"seq_len": 17}, r"inputs has shape \(\d+, 16\), expected \[examples, 17\]"),
    ({"vocab_size": 4}, r"inputs hold token ids 1\.\.5, outside \[0, vocab_size 4\)"),
    ({"num_puzzle_identifiers": 0}, "num_puzzle_identifiers must be >= 1"),
    ({"total_groups": 999}, "total_groups is 999, but the arrays of set 'all' hold"),
    ({"total_puzzles": 3}, "total_puzzles is 3"),
    ({"sets": ["other"]}, "has no set 'all'"),
    ({"vocab_size": "6"}, "vocab_size must be an integer, got '6'"),
    ({"seq_len": True}, "seq_len must be an integer"),
    ({"mean_puzzle_examples": "many"}, "mean_puzzle_examples must be a finite number"),
    ({"grid_shape": "4x4"}, "grid_shape must be a list"),
    ({"ignore_label_id": 0.5}, "ignore_label_id must be an integer or null"),
    ({"seq_len": None}, "seq_len must be an integer"),
])
def test_metadata_that_contradicts_the_arrays_is_refused(data, edit, message):
    path = data / "train" / "dataset.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(DatasetError, match=message) as e:
        load_everything(data)
    assert str(data / "train") in str(e.value)


@pytest.mark.parametrize("text,message", [("{", "not valid JSON"), ("[1]", "expected a JSON object"),
                                          ('{"pad_id": 0}', "missing fields"), ("\udcff", "not valid JSON")])
def test_unreadable_metadata_is_refused(data, text, message):
    path = data / "test" / "dataset.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(DatasetError, match=f"{path}: {message}"):
        load_everything(data)


def test_identifiers_must_be_a_list_of_names(data):
    (data / "identifiers.json").write_text('["<blank>", 3]')
    with pytest.raises(DatasetError, match="identifiers.json: expected a JSON list of names"):
        load_identifiers(data)


def test_train_names_the_broken_file_in_one_line(capsys, data, tmp_path):
    path = data / "test" / "all__labels.npy"
    path.write_bytes(path.read_bytes()[:-3])
    code, err = run_cli(capsys, "train", "sudoku-cpu", f"data.path={data}", f"run.out_dir={tmp_path}/runs")
    assert str(path) in one_clear_line(code, err) and "truncated" in err


# ------------------------------------------------------------------------- output directories, disks

def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    return f


HUGE = ["--train-size", "1000000"]       # hours of generation if the check came after it
DATA_COMMANDS = [["sudoku", "--size", "4", *HUGE], ["maze", "--size", "30", *HUGE], ["arc", "--num-aug", "1000"]]


@pytest.mark.parametrize("cmd", DATA_COMMANDS, ids=["sudoku", "maze", "arc"])
def test_data_refuses_an_output_under_a_file_before_any_work(capsys, tmp_path, cmd):
    out = a_file(tmp_path) / "dataset"
    t0 = time.monotonic()
    code, err = run_cli(capsys, "data", cmd[0], "--out", str(out), *cmd[1:])
    assert time.monotonic() - t0 < 20
    assert f"{out}: cannot write the dataset here: {out.parent} is a file" in one_clear_line(code, err)


def test_data_refuses_to_replace_a_directory_that_is_not_a_dataset(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, err = run_cli(capsys, "data", "sudoku", "--out", str(tmp_path), "--size", "4", *HUGE)
    assert "exists and is not a dataset directory" in one_clear_line(code, err)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_train_refuses_an_unwritable_run_directory(capsys, sudoku4_dir, tmp_path):
    blocked = a_file(tmp_path)
    code, err = run_cli(capsys, "train", "sudoku-cpu", f"data.path={sudoku4_dir}", f"run.out_dir={blocked}")
    assert f"cannot write to {blocked}" in one_clear_line(code, err)


def test_train_checks_the_run_directory_before_building_data(capsys, tmp_path):
    blocked, data = a_file(tmp_path), tmp_path / "new-data"
    code, err = run_cli(capsys, "train", "sudoku-cpu", f"data.path={data}", f"run.out_dir={blocked}",
                        "data.build.task=sudoku", "data.build.size=4", "data.build.train_size=10",
                        "data.build.num_aug=0", "data.build.test_size=5", "data.build.workers=1")
    assert "cannot write to" in one_clear_line(code, err)
    assert not data.exists(), "the dataset was built although the run could never be written"


def in_tmpfs(options: str, mount: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run ``argv`` with a fresh tmpfs (``options``) mounted on ``mount`` in a private mount namespace;
    the mount vanishes with the process."""
    mount.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {options} tmpfs "{mount}" && exec "$@"'
    return subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", *argv], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory) -> None:
    probe = tmp_path_factory.mktemp("mnt")
    try:
        ok = in_tmpfs("size=64k,ro", probe, "true").returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        pytest.skip("needs unshare --mount and tmpfs (root on Linux)")


TRM = [sys.executable, "-m", "trm"]


@pytest.mark.parametrize("cmd", DATA_COMMANDS[:2], ids=["sudoku", "maze"])
def test_data_on_a_read_only_file_system(can_mount, tmp_path, cmd):
    mnt = tmp_path / "ro"
    p = in_tmpfs("size=1m,ro", mnt, *TRM, "data", cmd[0], "--out", str(mnt / "d"), *cmd[1:])
    assert p.returncode == 2, p.stderr
    assert f"cannot write the dataset into {mnt}: Read-only file system" in p.stderr and "Traceback" not in p.stderr


def test_data_on_a_nearly_full_disk_fails_before_generating(can_mount, tmp_path):
    mnt = tmp_path / "small"
    t0 = time.monotonic()
    p = in_tmpfs("size=1m", mnt, *TRM, "data", "sudoku", "--out", str(mnt / "d"), "--size", "4", *HUGE)
    assert p.returncode == 2 and time.monotonic() - t0 < 60, p.stderr
    assert f"{mnt / 'd'}: only 1 MiB free on this disk" in p.stderr and "Traceback" not in p.stderr


WRITE_BIG = """
import os, sys, numpy as np
from trm.data.format import DatasetMetadata, PuzzleSet, write_dataset
from trm.errors import DatasetError
n, L = 4096, 64
ps = PuzzleSet(np.ones((n, L), np.uint8), np.ones((n, L), np.uint8), np.zeros(n, np.int32),
               np.arange(n + 1, dtype=np.int32), np.array([0, n], np.int32))
meta = DatasetMetadata(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=4, seq_len=L,
                       num_puzzle_identifiers=1, total_groups=1, mean_puzzle_examples=1.0)
out = sys.argv[1]
try:
    write_dataset(out, {"train": (meta, {"all": ps})}, ["<blank>"])
except DatasetError as e:
    print("DatasetError:", e)
print("left:", sorted(os.listdir(os.path.dirname(out))))
"""


def test_a_full_disk_while_writing_is_named_and_leaves_nothing(can_mount, tmp_path):
    mnt = tmp_path / "full"
    p = in_tmpfs("size=256k", mnt, sys.executable, "-c", WRITE_BIG, str(mnt / "d"))
    assert p.returncode == 0, p.stderr
    assert f"DatasetError: {mnt / 'd'}: writing the dataset failed (No space left on device" in p.stdout
    assert "left: []" in p.stdout


def test_train_on_a_read_only_file_system(can_mount, sudoku4_dir, tmp_path):
    mnt = tmp_path / "ro"
    p = in_tmpfs("size=1m,ro", mnt, *TRM, "train", "sudoku-cpu", f"data.path={sudoku4_dir}", f"run.out_dir={mnt}")
    assert p.returncode == 2, p.stderr
    assert "Read-only file system" in p.stderr and "Traceback" not in p.stderr


def test_train_on_a_nearly_full_disk(can_mount, sudoku4_dir, tmp_path):
    mnt = tmp_path / "small"
    p = in_tmpfs("size=1m", mnt, *TRM, "train", "sudoku-cpu", f"data.path={sudoku4_dir}", f"run.out_dir={mnt}")
    assert p.returncode == 2, p.stderr
    assert "MiB free on this disk" in p.stderr and "Traceback" not in p.stderr


# --------------------------------------------------------------------------- exported models, checkpoints

@pytest.fixture(scope="module")
def model_files(sudoku4_dir, tmp_path_factory) -> Path:
    """An exported model (model/) and a full-state checkpoint (checkpoints/last.pt) of a tiny 4x4 model."""
    from conftest import tiny_config
    from trm.io import export_weights, save_checkpoint
    from trm.train.engine import Engine
    from trm.train.run import build_model, export_config, fill_model_dims
    cfg = tiny_config(sudoku4_dir)
    meta = read_metadata(sudoku4_dir / "train")
    fill_model_dims(cfg, meta)
    engine = Engine(cfg, build_model(cfg), load_set(sudoku4_dir / "train"), meta.ignore_label_id,
                    torch.device("cpu"), 10)
    root = tmp_path_factory.mktemp("model")
    export_weights(root / "model", engine.model.state_dict(), export_config(cfg, meta))
    save_checkpoint(root / "checkpoints" / "last.pt", {"engine": engine.state_dict(), "config": cfg.to_dict()})
    return root


@pytest.fixture
def export_dir(model_files, tmp_path) -> Path:
    return Path(shutil.copytree(model_files / "model", tmp_path / "model"))


@pytest.fixture
def ckpt(model_files, tmp_path) -> Path:
    d = Path(shutil.copytree(model_files / "checkpoints", tmp_path / "checkpoints"))
    return d / "last.pt"


def test_the_untouched_files_load(model_files):
    from trm.solve import load
    for path in (model_files / "model", model_files / "checkpoints" / "last.pt", model_files):
        assert load(path, device="cpu").seq_len == 16


def edit_config(export_dir: Path, fn) -> None:
    path = export_dir / "config.json"
    cfg = json.loads(path.read_text())
    fn(cfg)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["config"]["model"].update(hidden_size=64), r"\S+ has shape \(\d+, 32\), the config expects"),
    (lambda c: c["config"]["model"].update(num_layers=3), "weights do not match the model config"),
    (lambda c: c["config"]["model"].update(mixer="conv"), "its saved config is invalid .*model.mixer='conv'"),
    (lambda c: c["config"]["train"].update(lr="fast"), "its saved config is invalid .*train.lr: expected float"),
    (lambda c: c["config"].update(nonsense={}), "its saved config is invalid .*unknown section 'nonsense'"),
    (lambda c: c.pop("config"), "config.json lacks the 'config' section"),
    (lambda c: c.update(config=[1, 2]), "its saved config is invalid .*must be a mapping"),
    (lambda c: c["data"].update(grid_shape="4x4"), "config.json's 'data' must be an object"),
])
def test_an_export_with_a_wrong_config_is_refused(export_dir, edit, message):
    from trm.solve import load
    edit_config(export_dir, edit)
    with pytest.raises(CheckpointError, match=f"^{export_dir}: {message}"):
        load(export_dir, device="cpu")


@pytest.mark.parametrize("name,content,message", [
    ("config.json", b"{", "config.json: not valid JSON"),
    ("config.json", b"[1]", "config.json: expected a JSON object"),
    ("model.safetensors", None, "model.safetensors: corrupt or truncated safetensors file"),
    ("model.safetensors", b"", "model.safetensors: corrupt or truncated safetensors file"),
])
def test_a_corrupt_export_names_the_file(export_dir, name, content, message):
    from trm.solve import load
    path = export_dir / name
    path.write_bytes(path.read_bytes()[:-100] if content is None else content)
    with pytest.raises(CheckpointError, match=message):
        load(export_dir, device="cpu")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_missing_export_file_is_named(export_dir, name):
    from trm.solve import load
    (export_dir / name).unlink()
    with pytest.raises(CheckpointError, match=f"{export_dir / name}: missing"):
        load(export_dir, device="cpu")


def test_solve_with_a_broken_export_is_one_line(capsys, export_dir):
    edit_config(export_dir, lambda c: c["config"]["model"].update(hidden_size=48))
    code, err = run_cli(capsys, "solve", "sudoku", "1.3..4...2..4.1.", "--checkpoint", str(export_dir))
    assert str(export_dir) in one_clear_line(code, err) and "config expects" in err


def resave(ckpt: Path, fn) -> None:
    from trm.io import load_checkpoint, save_checkpoint
    state = load_checkpoint(ckpt)
    fn(state)
    save_checkpoint(ckpt, state)


@pytest.mark.parametrize("edit,message", [
    (lambda s: s["config"]["model"].update(hidden_size=64), "the config expects"),
    (lambda s: s["config"]["model"].update(T=0), "its saved config is invalid .*model.T must be >= 1"),
    (lambda s: s.pop("config"), "not a trm training checkpoint"),
    (lambda s: s["engine"].update(model=[1]), "not a trm training checkpoint"),
    (lambda s: [d.update({next(iter(d)): 1.5}) for d in (s["engine"]["model"], s["engine"]["ema"]["shadow"])],
     "is a float, not a tensor"),
    (lambda s: s["engine"].update(ema={"decay": 0.9}), "holds no 'shadow' weights"),
])
def test_a_checkpoint_that_contradicts_its_config_is_refused(ckpt, edit, message):
    from trm.solve import load
    resave(ckpt, edit)
    with pytest.raises(CheckpointError, match=message):
        load(ckpt, device="cpu")


def test_checkpoint_corruption_is_caught_by_the_manifest(ckpt):
    from trm.io import load_checkpoint
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    ckpt.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=f"{ckpt}: checksum mismatch"):
        load_checkpoint(ckpt)
    ckpt.write_bytes(bytes(raw[:-10]))
    with pytest.raises(CheckpointError, match=f"{ckpt}: size .* manifest says"):
        load_checkpoint(ckpt)
    manifest = ckpt.with_name("last.pt.json")
    manifest.write_bytes(b"\xff[")
    with pytest.raises(CheckpointError, match="last.pt.json: corrupt manifest"):
        load_checkpoint(ckpt)
    manifest.unlink()                                   # no manifest: torch itself must notice
    with pytest.raises(CheckpointError, match=f"{ckpt}: corrupt or truncated checkpoint"):
        load_checkpoint(ckpt)


# ----------------------------------------------------------------------------- puzzles for a model

@pytest.fixture(scope="module")
def solver(model_files):
    from trm.solve import load
    return load(model_files / "model", device="cpu")


@pytest.mark.parametrize("puzzle,message", [
    ("." * 81, "this model solves 4x4 Sudoku"),
    (np.zeros((9, 9), np.int64), "this model solves 4x4 Sudoku"),
    (np.zeros((4, 5), np.int64), "NxN array"),
    (np.full((4, 4), 7), "values must lie in 0..4"),
    ("#S G", "bad character '#'"),
    (["1.3..4...2..4.1.", "1" * 17], "puzzle 1 of the batch: found 17 cells"),
    ([], "no puzzles given"),
])
def test_a_puzzle_that_does_not_fit_the_model_is_refused(solver, puzzle, message):
    with pytest.raises(PuzzleError, match=message):
        solver.solve(puzzle)


def test_token_rows_of_the_wrong_shape_or_range_are_refused(solver):
    with pytest.raises(PuzzleError, match=r"shape \[B, 16\]"):
        solver.solve_tokens(np.ones((1, 81), np.uint8))
    with pytest.raises(PuzzleError, match="tokens must lie in 0..5"):
        solver.solve_tokens(np.full((1, 16), 6, np.uint8))
