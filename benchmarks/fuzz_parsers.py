"""Time-boxed random + mutational fuzzer of every input reader: bad input must end in a TRMError.

    nice -n 19 python benchmarks/fuzz_parsers.py --seconds 60 [--targets sudoku,maze,...] [--seed 0]

Targets (each runs ``--seconds`` seconds):

- ``sudoku``      parse_sudoku on mutated/random text (+ oracle: format_sudoku of a parsed board parses back)
- ``maze``        parse_maze on mutated/random text (+ oracle: format_maze round trip)
- ``arc``         arc.validate_task on mutated JSON-like structures; load_conceptarc on mutated JSON files
- ``sudoku_csv``  read_sudoku_csv on mutated Sudoku-Extreme style CSV files
- ``maze_csv``    read_maze_csv on mutated Maze-Hard style CSV files
- ``config``      apply_overrides / config_from_dict / load_config(YAML preset) on random input
- ``dataset``     read_metadata, load_set, load_identifiers on a corrupted dataset directory
- ``checkpoint``  load_checkpoint, read_export and trm.load on corrupted checkpoints and exports

Every input either passes or raises a subclass of ``trm.errors.TRMError`` (one clear message). Anything
else is a *crash*: counted, grouped by exception type and innermost ``trm`` frame, and shown with one
input that triggers it. Prints a table and one JSON object (``--json PATH`` also writes it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import string
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trm.errors import TRMError

ALL_TARGETS = ("sudoku", "maze", "arc", "sudoku_csv", "maze_csv", "config", "dataset", "checkpoint")


# ------------------------------------------------------------------------------------------ mutation

INTERESTING_INTS = [0, 1, -1, 2, 9, 10, 11, 30, 31, 255, 256, -256, 2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 63,
                    10 ** 30, -10 ** 30]
INTERESTING_STRS = ["", " ", "\n", "\r\n", "\x00", ".", "0", "9", "#", "S", "G", "o", "|", "-", "+", ",", '"',
                    "{", "[", "]", "}", ":", "nan", "inf", "-inf", "1e400", "null", "~", "true", "é", "٣",
                    "\u2028", "\ufeff", "|||", "&a", "*a", "!!python/object:os.system", "'", "%", "\t"]


def rand_text(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def mutate_text(rng: random.Random, s: str, alphabet: str) -> str:
    """A few random edits: replace, insert, delete, duplicate, swap lines, truncate, splice junk."""
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        i = rng.randrange(len(s) + 1)
        if op == 0 and s:
            i = min(i, len(s) - 1)
            s = s[:i] + rng.choice(alphabet) + s[i + 1:]
        elif op == 1:
            s = s[:i] + rng.choice(alphabet + rng.choice(INTERESTING_STRS)) + s[i:]
        elif op == 2 and s:
            j = min(len(s), i + rng.randint(1, 8))
            s = s[:i] + s[j:]
        elif op == 3 and s:
            j = min(len(s), i + rng.randint(1, 20))
            s = s[:i] + s[i:j] * rng.randint(2, 4) + s[i:]
        elif op == 4:
            lines = s.split("\n")
            if len(lines) > 1:
                a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
                lines[a], lines[b] = lines[b], lines[a]
            s = "\n".join(lines)
        elif op == 5:
            s = s[:i]
        elif op == 6:
            s = s[:i] + rng.choice(INTERESTING_STRS) + s[i:]
        else:
            s = s[:i] + chr(rng.randrange(0x110000) if rng.random() < 0.1 else rng.randrange(128)) + s[i:]
    return s


def mutate_bytes(rng: random.Random, b: bytes) -> bytes:
    """Bit flips, byte sets, truncation, extension, chunk deletion/duplication, zeroing."""
    a = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(a) + 1)
        if op == 0 and a:
            i = min(i, len(a) - 1)
            a[i] ^= 1 << rng.randrange(8)
        elif op == 1 and a:
            i = min(i, len(a) - 1)
            a[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            del a[i:]
        elif op == 3:
            a[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and a:
            j = min(len(a), i + rng.randint(1, 64))
            del a[i:j]
        elif op == 5 and a:
            j = min(len(a), i + rng.randint(1, 64))
            a[i:i] = a[i:j]
        elif op == 6 and a:
            j = min(len(a), i + rng.randint(1, 64))
            a[i:j] = bytes(j - i)
    return bytes(a)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-like value (plus a few non-JSON Python values the loaders may meet)."""
    k = rng.randrange(11 if depth < 3 else 7)
    if k == 0:
        return rng.choice(INTERESTING_INTS)
    if k == 1:
        return rng.randint(-3, 12)
    if k == 2:
        return rng.choice([0.5, -0.0, 1.0, float("nan"), float("inf"), 1e308, 3.0])
    if k == 3:
        return rng.choice(INTERESTING_STRS + ["train", "test", "input", "output", "model", "abc"])
    if k == 4:
        return rng.choice([None, True, False])
    if k == 5:
        return [[rng.randint(0, 9) for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(0, 4))]
    if k == 6:
        return rng.choice([[], {}, [[]], [[1, 2], [3]], [[True]], [["1"]]])
    if k in (7, 8):
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["train", "test", "input", "output", "model", "data", "x", ""]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def mutate_structure(rng: random.Random, obj: Any) -> Any:
    """Replace, delete or add one random node of a nested list/dict structure (a deep copy)."""
    obj = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        path: list = []
        node = obj
        while isinstance(node, (list, dict)) and node and rng.random() < 0.8:
            key = rng.choice(list(node) if isinstance(node, dict) else range(len(node)))
            path.append((node, key))
            node = node[key]
        if not path:
            return random_json(rng) if rng.random() < 0.3 else obj
        parent, key = path[-1]
        op = rng.randrange(4)
        if op == 0:
            parent[key] = random_json(rng)
        elif op == 1:
            del parent[key]
        elif op == 2 and isinstance(parent, list):
            parent.insert(key, random_json(rng))
        elif op == 2:
            parent[rng.choice(["extra", "input", "output", "train", "test"])] = random_json(rng)
        elif isinstance(node, int) and not isinstance(node, bool):
            parent[key] = rng.choice(INTERESTING_INTS)
        else:
            parent[key] = rng.choice([None, "x", 1.5, [], {}])
    return obj


# ------------------------------------------------------------------------------------------ the runner

@dataclass
class Crash:
    kind: str
    where: str
    count: int = 0
    example: str = ""
    trace: str = ""


@dataclass
class Stats:
    target: str
    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: dict[tuple[str, str], Crash] = field(default_factory=dict)
    slowest_s: float = 0.0
    seconds: float = 0.0

    @property
    def crash_count(self) -> int:
        return sum(c.count for c in self.crashes.values())

    def summary(self) -> dict:
        return {"target": self.target, "inputs": self.inputs, "accepted": self.accepted,
                "rejected_with_trm_error": self.rejected, "crashes": self.crash_count,
                "distinct_crashes": len(self.crashes), "slowest_input_s": round(self.slowest_s, 4),
                "seconds": round(self.seconds, 1),
                "crash_kinds": [{"kind": c.kind, "where": c.where, "count": c.count, "example": c.example,
                                 "trace": c.trace} for c in self.crashes.values()]}


def innermost_trm_frame(tb) -> str:
    frames = [f for f in traceback.extract_tb(tb) if f"{os.sep}trm{os.sep}" in f.filename]
    f = frames[-1] if frames else traceback.extract_tb(tb)[-1]
    return f"{Path(f.filename).name}:{f.lineno} ({f.name})"


def run_target(name: str, make: Callable[[Path, random.Random], tuple[Callable, Callable]], seconds: float,
               seed: int, work: Path) -> Stats:
    """``make(workdir, rng) -> (gen, run)``: ``gen(rng)`` draws an input, ``run(input)`` feeds it."""
    rng = random.Random(seed)
    d = work / name
    d.mkdir()
    gen, run = make(d, rng)
    st = Stats(name)
    t_end = time.monotonic() + seconds
    t0 = time.monotonic()
    while time.monotonic() < t_end:
        x = gen(rng)
        t1 = time.perf_counter()
        try:
            run(x)
            st.accepted += 1
        except TRMError:
            st.rejected += 1
        except Exception as e:  # noqa: BLE001 - this is what we count
            key = (type(e).__name__, innermost_trm_frame(e.__traceback__))
            c = st.crashes.setdefault(key, Crash(*key))
            c.count += 1
            if not c.example:
                c.example = repr(x)[:400]
                c.trace = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-3:])[-1200:]
        st.slowest_s = max(st.slowest_s, time.perf_counter() - t1)
        st.inputs += 1
    st.seconds = time.monotonic() - t0
    return st


# ------------------------------------------------------------------------------------------ targets

def target_sudoku(work: Path, rng: random.Random):
    from trm.tasks.sudoku.data import format_sudoku, generate_puzzle, parse_sudoku, to_line
    seeds = []
    for size in (4, 9):
        p, s, _ = generate_puzzle(rng.randrange(1 << 30), size=size)
        seeds += [format_sudoku(p), to_line(p), to_line(s), format_sudoku(s)]
    alphabet = "0123456789.|-+ \n\tx"

    def gen(r: random.Random):
        size = r.choice([None, None, 4, 9])
        if r.random() < 0.15:
            return rand_text(r, alphabet, r.choice([16, 81, r.randrange(200)])), size
        return mutate_text(r, r.choice(seeds), alphabet), size

    def run(x):
        text, size = x
        board = parse_sudoku(text, size)
        again = parse_sudoku(format_sudoku(board))
        if not np.array_equal(board, again):
            raise AssertionError("format_sudoku/parse_sudoku round trip changed the board")

    return gen, run


def target_maze(work: Path, rng: random.Random):
    from trm.tasks.maze.data import format_maze, generate_maze, parse_maze
    seeds = []
    for size in (4, 6, (5, 8)):
        x, y = generate_maze(np.random.default_rng(rng.randrange(1 << 30)), size=size, min_path=2)
        seeds += [format_maze(x), format_maze(y), format_maze(x) + "\n\n"]
    alphabet = "# SGo\n"

    def gen(r: random.Random):
        size = r.choice([None, None, None, 4, 6, (5, 8)])
        allow = r.random() < 0.5
        if r.random() < 0.15:
            return rand_text(r, alphabet + "x\r", r.randrange(120)), size, allow
        return mutate_text(r, r.choice(seeds), alphabet), size, allow

    def run(x):
        text, size, allow = x
        grid = parse_maze(text, size=size, allow_path=allow)
        if not np.array_equal(parse_maze(format_maze(grid)), grid):
            raise AssertionError("format_maze/parse_maze round trip changed the grid")

    return gen, run


def _arc_seed_tasks(rng: random.Random) -> list[dict]:
    def grid() -> list[list[int]]:
        h, w = rng.randint(1, 6), rng.randint(1, 6)
        return [[rng.randint(0, 9) for _ in range(w)] for _ in range(h)]
    return [{"train": [{"input": grid(), "output": grid()} for _ in range(rng.randint(1, 3))],
             "test": [{"input": grid(), "output": grid()}]} for _ in range(6)]


def target_arc(work: Path, rng: random.Random):
    from trm.tasks.arc.data import load_conceptarc, validate_task
    seeds = _arc_seed_tasks(rng)
    path = work / "tasks.json"

    def gen(r: random.Random):
        k = r.random()
        if k < 0.6:
            return "struct", r.choice(["a", "0", "", "x|||y", 3, None]) if r.random() < 0.1 else "t1", \
                mutate_structure(r, r.choice(seeds))
        if k < 0.9:
            text = mutate_text(r, json.dumps({"t1": r.choice(seeds)}), "[]{},:0123456789\"")
            return "json", None, text
        return "random", "t1", random_json(r)

    def run(x):
        kind, task_id, obj = x
        if kind == "json":      # a task file as `--conceptarc FILE` or `--extra-train FILE` reads it
            path.write_text(obj, encoding="utf-8", errors="surrogatepass")
            load_conceptarc(path)
        else:
            validate_task(task_id, obj, "fuzz")

    return gen, run


def _csv_target(work: Path, rng: random.Random, text: str, read: Callable[[Path, random.Random], Any]):
    path = work / "in.csv"
    raw = text.encode()

    def gen(r: random.Random):
        if r.random() < 0.5:
            b = mutate_bytes(r, raw)
        else:
            b = mutate_text(r, text, ",.\n\"0123456789# SGo").encode("utf-8", "surrogatepass")
        return b, r.randrange(1 << 30)

    def run(x):
        b, s = x
        path.write_bytes(b)
        read(path, random.Random(s))

    return gen, run


def target_sudoku_csv(work: Path, rng: random.Random):
    from trm.tasks.sudoku.data import generate_puzzle, read_sudoku_csv, to_line
    rows = ["source,question,answer,rating"]
    for size in (9, 9, 4):
        p, s, rating = generate_puzzle(rng.randrange(1 << 30), size=size)
        rows.append(f"fuzz,{to_line(p)},{to_line(s)},{rating}")
    text = "\n".join(rows) + "\n"

    def read(path, r):
        read_sudoku_csv(path, min_rating=r.choice([None, 0, 1]), limit=r.choice([None, 1, 2, 5]),
                        seed=r.choice([None, 0]), size=r.choice([None, 4, 9]))
    return _csv_target(work, rng, text, read)


def target_maze_csv(work: Path, rng: random.Random):
    from trm.tasks.maze.data import decode, generate_maze, read_maze_csv
    rows = ["source,question,answer,rating"]
    for _ in range(3):
        x, y = generate_maze(np.random.default_rng(rng.randrange(1 << 30)), size=5, min_path=3)
        rows.append(f"fuzz,{decode(x)},{decode(y)},0")
    text = "\n".join(rows) + "\n"

    def read(path, r):
        read_maze_csv(path, limit=r.choice([None, 1, 2, 5]), seed=r.choice([None, 0]))
    return _csv_target(work, rng, text, read)


def target_config(work: Path, rng: random.Random):
    import dataclasses

    from trm.config import Config, apply_overrides, config_from_dict, load_config
    cfg = Config()
    keys = [f"{s.name}.{f.name}" for s in dataclasses.fields(Config) if s.name != "preset"
            for f in dataclasses.fields(getattr(cfg, s.name))]
    keys += ["preset", "model", "nope.x", "model.nope", "data.build.train_size", "data.build.", "__class__.x",
             "model.__dict__", ".", "", "model..n", "train.betas.0"]
    values = ["1", "0", "-1", "3", "1.5", "nan", "inf", "-inf", "1e400", "true", "false", "null", "~", "",
              "[1, 2]", "[0.9]", "[a, b]", "{a: 1}", "{}", "[", "{", "'", "abc", "attention", "mlp",
              "2**40", str(2 ** 70), "0x10", "1_000", ":", "- a", "!!python/object:os.system", "&a 1", "*a",
              "bfloat16", "cuda", "cuda:9", "cpu", "a=b", "\x00", "é"]
    preset_text = (Path(__file__).resolve().parents[1] / "src/trm/presets/sudoku-cpu.yaml").read_text()
    preset_path = work / "fuzz.yaml"

    def gen(r: random.Random):
        k = r.random()
        if k < 0.55:
            ovs = []
            for _ in range(r.randint(1, 4)):
                key, value = r.choice(keys), r.choice(values)
                if r.random() < 0.3:
                    value = mutate_text(r, value, string.printable)
                if r.random() < 0.1:
                    key = mutate_text(r, key, string.ascii_lowercase + "._=")
                ovs.append(f"{key}={value}" if r.random() < 0.95 else key)
            return "overrides", ovs
        if k < 0.8:
            base = cfg.to_dict()
            return "dict", mutate_structure(r, base) if r.random() < 0.9 else random_json(r)
        return "yaml", mutate_text(r, preset_text, string.printable)

    def run(x):
        kind, obj = x
        if kind == "overrides":
            apply_overrides(Config(), obj)
        elif kind == "dict":
            config_from_dict(obj)
        else:
            preset_path.write_text(obj, encoding="utf-8", errors="surrogatepass")
            load_config(str(preset_path))

    return gen, run


def _tiny_dataset(path: Path) -> Path:
    from trm.tasks.sudoku.data import build_sudoku_dataset
    return build_sudoku_dataset(path, size=4, train_size=4, num_aug=2, test_size=2, seed=0, workers=1,
                                progress=False)


def _random_array(r: random.Random) -> np.ndarray:
    dtype = r.choice([np.uint8, np.int32, np.int64, np.uint32, np.int8, np.float32, np.bool_, np.uint16])
    shape = r.choice([(0,), (3,), (5,), (2, 16), (4, 16), (3, 3), (0, 16), (2, 2, 2), ()])
    return (np.random.default_rng(r.randrange(1 << 30)).integers(-3, 20, shape)).astype(dtype)


def target_dataset(work: Path, rng: random.Random):
    from trm.data.format import ARRAY_NAMES, load_identifiers, load_set, read_metadata
    base = _tiny_dataset(work / "base")
    live = work / "live"
    files = [p.relative_to(base) for p in sorted(base.rglob("*")) if p.is_file()]
    originals = {f: (base / f).read_bytes() for f in files}
    metas = {f: json.loads(originals[f]) for f in files if f.name == "dataset.json"}
    shutil.copytree(base, live)

    def gen(r: random.Random):
        f = r.choice(files)
        k = r.random()
        if f.name == "dataset.json" and k < 0.6:
            return f, "json", json.dumps(mutate_structure(r, metas[f])).encode()
        if f.suffix == ".npy" and k < 0.4:
            buf = io.BytesIO()
            a = np.load(io.BytesIO(originals[f]))
            a = _random_array(r) if r.random() < 0.5 else _perturb_array(r, a)
            np.save(buf, a)
            return f, "array", buf.getvalue()
        if k > 0.97:
            return f, "delete", b""
        return f, "bytes", mutate_bytes(r, originals[f])

    def run(x):
        f, kind, data = x
        target = live / f
        try:
            if kind == "delete":
                target.unlink()
            else:
                target.write_bytes(data)
            for split in ("train", "test"):
                read_metadata(live / split)
                for mmap in (False, True):
                    ps = load_set(live / split, "all", mmap=mmap)
                    assert all(getattr(ps, n) is not None for n in ARRAY_NAMES)
            load_identifiers(live)
        finally:
            target.write_bytes(originals[f])

    return gen, run


def _perturb_array(r: random.Random, a: np.ndarray) -> np.ndarray:
    a = a.copy()
    if a.size:
        flat = a.reshape(-1)
        i = r.randrange(flat.size)
        info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else None
        choices = [0, 1, 11, 12, 255, -1] if info is None else [info.min, info.max, 0, 1, 6, 7, 100]
        v = r.choice(choices)
        flat[i] = v if info is None or info.min <= v <= info.max else 0
    if r.random() < 0.3 and a.ndim:
        a = a[: max(0, a.shape[0] - 1)]
    if r.random() < 0.2:
        a = a.astype(r.choice([np.int64, np.uint32, np.int8, np.float64]))
    return a


def target_checkpoint(work: Path, rng: random.Random):
    import torch

    from trm.config import load_config
    from trm.data.format import load_set, read_metadata
    from trm.solve import load
    from trm.io import export_weights, load_checkpoint, read_export, save_checkpoint
    from trm.train.engine import Engine
    from trm.train.run import build_model, export_config, fill_model_dims

    torch.set_num_threads(1)
    data = _tiny_dataset(work / "data")
    cfg = load_config(None, [f"data.path={data}", "model.hidden_size=16", "model.num_heads=2", "model.mixer=mlp",
                             "model.T=1", "model.n=1", "model.N_sup=2", "model.puzzle_emb_len=2",
                             "model.puzzle_emb_dim=16", "model.forward_dtype=float32", "train.global_batch_size=4"])
    meta = read_metadata(data / "train")
    fill_model_dims(cfg, meta)
    engine = Engine(cfg, build_model(cfg), load_set(data / "train"), meta.ignore_label_id, torch.device("cpu"), 2)
    engine.train_step()
    run = work / "run"
    save_checkpoint(run / "checkpoints" / "last.pt", {"engine": engine.state_dict(), "config": cfg.to_dict(),
                                                      "elapsed": 1.0})
    export_weights(run / "model", engine.model.state_dict(), export_config(cfg, meta))
    files = {"pt": run / "checkpoints" / "last.pt", "manifest": run / "checkpoints" / "last.pt.json",
             "weights": run / "model" / "model.safetensors", "config": run / "model" / "config.json"}
    originals = {k: p.read_bytes() for k, p in files.items()}
    export_cfg = json.loads(originals["config"])

    def gen(r: random.Random):
        which = r.choice(["pt", "pt", "manifest", "weights", "weights", "config", "config"])
        drop_manifest = which == "pt" and r.random() < 0.7       # else the checksum catches every change
        if which == "config" and r.random() < 0.7:
            return which, drop_manifest, json.dumps(mutate_structure(r, export_cfg)).encode()
        return which, drop_manifest, mutate_bytes(r, originals[which])

    def run_one(x):
        which, drop_manifest, data_ = x
        try:
            files[which].write_bytes(data_)
            if drop_manifest:
                files["manifest"].unlink()
            if which in ("pt", "manifest"):
                load_checkpoint(files["pt"])
                load(files["pt"], device="cpu")
            else:
                read_export(run / "model")
                load(run / "model", device="cpu")
        finally:
            for k, p in files.items():
                p.write_bytes(originals[k])

    return gen, run_one


TARGETS: dict[str, Callable] = {"sudoku": target_sudoku, "maze": target_maze, "arc": target_arc,
                                "sudoku_csv": target_sudoku_csv, "maze_csv": target_maze_csv,
                                "config": target_config, "dataset": target_dataset,
                                "checkpoint": target_checkpoint}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget per target")
    ap.add_argument("--targets", default=",".join(ALL_TARGETS), help=f"comma-separated subset of {ALL_TARGETS}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the JSON summary here")
    ap.add_argument("--mem-limit-gb", type=float, default=8.0, help="address-space limit (a huge allocation "
                    "from a corrupt header shows up as a MemoryError crash instead of swapping)")
    args = ap.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        ap.error(f"unknown targets {sorted(unknown)}; choose from {ALL_TARGETS}")
    if args.mem_limit_gb > 0:
        limit = int(args.mem_limit_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    results = []
    with tempfile.TemporaryDirectory(prefix="trm-fuzz-") as tmp:
        for i, name in enumerate(targets):
            st = run_target(name, TARGETS[name], args.seconds, args.seed * 1000 + i, Path(tmp))
            results.append(st)
            print(f"{name:11s} {st.inputs:9,d} inputs  {st.accepted:8,d} accepted  {st.rejected:9,d} TRMError  "
                  f"{st.crash_count:6,d} crashes ({len(st.crashes)} distinct)  slowest {st.slowest_s * 1e3:.1f} ms",
                  file=sys.stderr, flush=True)
            for c in st.crashes.values():
                print(f"    CRASH {c.kind} at {c.where} x{c.count}\n      input: {c.example[:200]}", file=sys.stderr)
    total = {"inputs": sum(s.inputs for s in results), "crashes": sum(s.crash_count for s in results),
             "distinct_crashes": sum(len(s.crashes) for s in results)}
    out = {"command": "python benchmarks/fuzz_parsers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "seed": args.seed, "seconds_per_target": args.seconds, "total": total,
           "targets": [s.summary() for s in results]}
    print(f"TOTAL {total['inputs']:,} inputs, {total['crashes']:,} crashes ({total['distinct_crashes']} distinct)",
          file=sys.stderr)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 1 if total["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
