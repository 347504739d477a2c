"""The on-disk dataset format shared with the public HRM/TRM code (spec section 6).

A dataset directory holds ``identifiers.json`` (id -> name, index 0 = "<blank>") and, per split
(``train/``, ``test/``), a ``dataset.json`` plus, per set, five arrays::

    {set}__inputs.npy              uint8  [examples, seq_len]
    {set}__labels.npy              uint8  [examples, seq_len]
    {set}__puzzle_identifiers.npy  int32  [puzzles]
    {set}__puzzle_indices.npy      int32  [puzzles + 1]   examples of puzzle i: [pi[i], pi[i+1])
    {set}__group_indices.npy       int32  [groups + 1]    puzzles of group g:   [gi[g], gi[g+1])

A *group* is one base puzzle with all its augmented versions; a *puzzle* is one version (one puzzle
identifier); an *example* is one (input, label) pair.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from trm.errors import DatasetError

ARRAY_NAMES = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")



@dataclass
class DatasetMetadata:
    """Contents of ``dataset.json`` (the field names of the public code, plus a few extras)."""

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    total_puzzles: int = 0
    sets: list[str] = field(default_factory=lambda: ["all"])
    # trm extras (ignored by the public code): task name, grid shape, builder options, data version.
    task: str = ""
    grid_shape: list[int] | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class PuzzleSet:
    """The five arrays of one set of one split."""

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_puzzles(self) -> int:
        return int(self.puzzle_identifiers.shape[0])

    def example_puzzle_ids(self) -> np.ndarray:
        """The puzzle identifier of every example ([num_examples])."""
        return np.repeat(np.asarray(self.puzzle_identifiers), np.diff(np.asarray(self.puzzle_indices)))

    @property
    def num_groups(self) -> int:
        return int(self.group_indices.shape[0] - 1)


class PuzzleSetBuilder:
    """Accumulates groups -> puzzles -> examples and produces a :class:`PuzzleSet`.

    >>> b = PuzzleSetBuilder(seq_len=4)
    >>> b.add_puzzle(puzzle_id=0, inputs=[[1, 2, 3, 4]], labels=[[1, 2, 3, 4]]); b.end_group()
    """

    def __init__(self, seq_len: int):
        self.seq_len = seq_len
        self._inputs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._ids: list[int] = []
        self._pidx = [0]
        self._gidx = [0]
        self._n = 0

    def add_puzzle(self, puzzle_id: int, inputs, labels) -> None:
        inp = np.asarray(inputs, dtype=np.uint8).reshape(-1, self.seq_len)
        lab = np.asarray(labels, dtype=np.uint8).reshape(-1, self.seq_len)
        if inp.shape != lab.shape:
            raise DatasetError(f"inputs {inp.shape} and labels {lab.shape} differ in shape")
        self._inputs.append(inp)
        self._labels.append(lab)
        self._ids.append(int(puzzle_id))
        self._n += inp.shape[0]
        self._pidx.append(self._n)

    def end_group(self) -> None:
        if len(self._ids) == self._gidx[-1]:
            raise DatasetError("a group must hold at least one puzzle")
        self._gidx.append(len(self._ids))

    def build(self) -> PuzzleSet:
        if len(self._gidx) - 1 and self._gidx[-1] != len(self._ids):
            self.end_group()
        empty = np.zeros((0, self.seq_len), np.uint8)
        return PuzzleSet(
            inputs=np.concatenate(self._inputs) if self._inputs else empty,
            labels=np.concatenate(self._labels) if self._labels else empty,
            puzzle_identifiers=np.asarray(self._ids, np.int32),
            puzzle_indices=np.asarray(self._pidx, np.int32),
            group_indices=np.asarray(self._gidx, np.int32),
        )


def is_dataset_dir(path: Path) -> bool:
    """A directory written by :func:`write_dataset` (or the public builders)."""
    return (path / "identifiers.json").is_file() or (path / "train" / "dataset.json").is_file()


def check_output_dir(final: str | Path, need_bytes: int = 16 << 20) -> Path:
    """Fail at once, before any work, when ``final`` cannot become a dataset directory: it exists and is
    not one, its parent cannot be created or written (read-only, a file in the way), or the disk has
    less than ``need_bytes`` free. Builders call this first; :func:`atomic_dir_write` again at the end."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not is_dataset_dir(final))):
        raise DatasetError(f"{final}: exists and is not a dataset directory; refusing to replace it "
                           "(choose another output path or remove it yourself)")
    blocker = next((p for p in final.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DatasetError(f"{final}: cannot write the dataset here: {blocker} is a file, not a directory")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        Path(tempfile.mkdtemp(prefix=f".{final.name}.probe-", dir=final.parent)).rmdir()
    except OSError as e:
        raise DatasetError(f"{final}: cannot write the dataset into {final.parent}: {e.strerror or e}") from None
    free = _free_bytes(final.parent)
    if free < need_bytes:
        raise DatasetError(f"{final}: only {free >> 20} MiB free on this disk, about {-(-need_bytes >> 20)} MiB "
                           "needed")
    return final


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def atomic_dir_write(final: Path, write) -> None:
    """Run ``write(tmpdir)`` then rename tmpdir to ``final`` (replacing it), so a crash leaves no half.

    An OSError (disk full, read-only file system) becomes a DatasetError naming ``final``; the previous
    contents of ``final`` are kept."""
    final = check_output_dir(final, need_bytes=0)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        os.chmod(tmp, 0o755)   # mkdtemp makes 0700; a dataset directory is an ordinary one
        write(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
            try:
                os.rename(tmp, final)
            except BaseException:
                os.rename(old, final)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno != errno.ENOSPC and _free_bytes(final.parent) < 1 << 20:   # numpy reports short writes
            reason = f"No space left on device: {e}"                          # without an errno
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{final}: writing the dataset failed ({reason}); nothing was replaced") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_dataset(
    out_dir: str | Path,
    splits: dict[str, tuple[DatasetMetadata, dict[str, PuzzleSet]]],
    identifiers: list[str],
) -> Path:
    """Write a whole dataset directory atomically.

    ``splits`` maps a split name ("train", "test") to its metadata and its sets (usually {"all": ...}).
    ``identifiers[i]`` names puzzle identifier i; ``identifiers[0]`` must be "<blank>".
    """
    if not identifiers or identifiers[0] != "<blank>":
        raise DatasetError('identifiers[0] must be "<blank>"')

    def write(tmp: Path) -> None:
        for split, (meta, sets) in splits.items():
            d = tmp / split
            d.mkdir()
            meta.sets = list(sets)
            meta.total_puzzles = sum(s.num_puzzles for s in sets.values())
            for set_name, ps in sets.items():
                validate_set(ps, meta, where=f"{split}/{set_name}")
                for name in ARRAY_NAMES:
                    np.save(d / f"{set_name}__{name}.npy", getattr(ps, name))
            meta.extra = {**meta.extra, "checksums": file_checksums(d, list(sets))}
            (d / "dataset.json").write_text(json.dumps(asdict(meta), indent=2))
        (tmp / "identifiers.json").write_text(json.dumps(identifiers))

    atomic_dir_write(Path(out_dir), write)
    return Path(out_dir)


_INT_FIELDS = ("pad_id", "blank_identifier_id", "vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups",
               "total_puzzles")


def _check_metadata(raw: dict, path: Path) -> None:
    """Types and ranges of the ``dataset.json`` fields; DatasetError naming the file and field."""
    def fail(msg: str):
        raise DatasetError(f"{path}: {msg}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for name in _INT_FIELDS:
        if name in raw and not is_int(raw[name]):
            fail(f"{name} must be an integer, got {raw[name]!r}")
    for name in ("vocab_size", "seq_len", "num_puzzle_identifiers"):
        if raw[name] < 1:
            fail(f"{name} must be >= 1, got {raw[name]}")
    for name in ("pad_id", "blank_identifier_id", "total_groups", "total_puzzles"):
        if raw.get(name, 0) < 0:
            fail(f"{name} must be >= 0, got {raw[name]}")
    if raw["ignore_label_id"] is not None and not is_int(raw["ignore_label_id"]):
        fail(f"ignore_label_id must be an integer or null, got {raw['ignore_label_id']!r}")
    mean = raw["mean_puzzle_examples"]
    if not isinstance(mean, (int, float)) or isinstance(mean, bool) or not 0 <= mean < float("inf"):
        fail(f"mean_puzzle_examples must be a finite number >= 0, got {mean!r}")
    sets = raw.get("sets", ["all"])
    if not isinstance(sets, list) or not all(isinstance(x, str) and x for x in sets):
        fail(f"sets must be a list of set names, got {sets!r}")
    if not isinstance(raw.get("task", ""), str):
        fail(f"task must be a string, got {raw['task']!r}")
    shape = raw.get("grid_shape")
    if shape is not None and (not isinstance(shape, list) or not all(is_int(v) and v >= 1 for v in shape)):
        fail(f"grid_shape must be a list of positive integers or null, got {shape!r}")
    extra = raw.get("extra", {})
    if not isinstance(extra, dict):
        fail(f"extra must be an object, got {extra!r}")
    sums = extra.get("checksums", {})
    if not isinstance(sums, dict) or not all(isinstance(v, str) for v in sums.values()):
        fail(f"extra.checksums must map file names to CRC-32 strings, got {sums!r}"[:300])


def _crc32(path: Path) -> str:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def file_checksums(split_dir: Path, set_names: list[str]) -> dict[str, str]:
    """CRC-32 of every array file of ``set_names``, stored as ``extra.checksums`` in ``dataset.json``."""
    return {f"{s}__{n}.npy": _crc32(Path(split_dir) / f"{s}__{n}.npy") for s in set_names for n in ARRAY_NAMES}


def read_metadata(split_dir: str | Path) -> DatasetMetadata:
    path = Path(split_dir) / "dataset.json"
    if not path.is_file():
        raise DatasetError(f"{path}: missing (is {Path(split_dir).parent} a dataset built by `trm data`?)")
    try:
        raw = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:    # JSONDecodeError is a ValueError
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    known = set(DatasetMetadata.__dataclass_fields__)
    required = {n for n, f in DatasetMetadata.__dataclass_fields__.items()
                if f.default is MISSING and f.default_factory is MISSING}
    missing = required - set(raw)
    if missing:
        raise DatasetError(f"{path}: missing fields {sorted(missing)}")
    _check_metadata(raw, path)
    meta = DatasetMetadata(**{k: v for k, v in raw.items() if k in known})
    if not meta.task:               # the official builders do not name the task: tell it from the data
        from trm.tasks import infer_task
        meta.task = infer_task(meta.vocab_size, meta.seq_len)
    return meta


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """np.load with a size check against the header: truncation or trailing bytes are named."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                                     np.lib.format.read_array_header_2_0(f))
            header_end = f.tell()
    except Exception as e:  # noqa: BLE001 - numpy raises many types on a mangled header
        raise DatasetError(f"{path}: not a valid .npy file ({type(e).__name__}: {e})") from None
    if dtype.hasobject:
        raise DatasetError(f"{path}: holds Python objects (dtype {dtype}); only numeric arrays are loaded")
    expected = header_end + math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise DatasetError(f"{path}: {'truncated' if size < expected else 'trailing bytes'}: the file has "
                           f"{size} bytes, its header ({dtype} {shape}) needs {expected}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any failure to read the array is a corrupt file
        raise DatasetError(f"{path}: corrupt or truncated ({type(e).__name__}: {e})") from None


def load_set(split_dir: str | Path, set_name: str = "all", mmap: bool = False) -> PuzzleSet:
    """Load and validate one set; errors name the offending file."""
    split_dir = Path(split_dir)
    meta = read_metadata(split_dir)
    if set_name not in meta.sets:
        raise DatasetError(f"{split_dir / 'dataset.json'}: has no set {set_name!r} (sets: {meta.sets})")
    arrays = {name: _load_array(split_dir / f"{set_name}__{name}.npy", mmap) for name in ARRAY_NAMES}
    sums = meta.extra.get("checksums", {})
    for name in ARRAY_NAMES if not mmap else ():   # a memory map is not read whole; sizes are still checked
        path = split_dir / f"{set_name}__{name}.npy"
        want, got = sums.get(path.name), _crc32(path) if path.name in sums else None
        if want is not None and got != want:
            raise DatasetError(f"{path}: checksum mismatch (CRC-32 {got}, dataset.json says {want}); "
                               "the file is corrupt: rebuild the dataset")
    ps = PuzzleSet(**arrays)
    validate_set(ps, meta, where=str(split_dir / set_name))
    if meta.sets == [set_name]:   # one set: the totals in dataset.json are this set's
        for name, have in (("total_groups", ps.num_groups), ("total_puzzles", ps.num_puzzles)):
            want = getattr(meta, name)
            if name == "total_puzzles" and want == ps.num_groups:
                continue            # the official builders store the group count here (their loader never reads it)
            if want != have and (want or name == "total_groups"):
                raise DatasetError(f"{split_dir / 'dataset.json'}: {name} is {want}, but the arrays of set "
                                   f"{set_name!r} hold {have}")
    return ps


def validate_set(ps: PuzzleSet, meta: DatasetMetadata, where: str = "") -> None:
    """Check arrays against each other and against the metadata; raise DatasetError naming the fault."""
    def fail(msg: str):
        raise DatasetError(f"{where}: {msg}")

    for name in ("inputs", "labels"):
        a = getattr(ps, name)
        if a.ndim != 2 or a.shape[1] != meta.seq_len:
            fail(f"{name} has shape {a.shape}, expected [examples, {meta.seq_len}]")
        if a.dtype.kind not in "iu":
            fail(f"{name} has dtype {a.dtype}, expected an integer type")
    if ps.inputs.shape != ps.labels.shape:
        fail(f"inputs {ps.inputs.shape} and labels {ps.labels.shape} differ")
    for name in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
        a = getattr(ps, name)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            fail(f"{name} must be a 1-D integer array, got {a.dtype} {a.shape}")
    for name in ("inputs", "labels"):
        a = getattr(ps, name)
        if a.size and (int(a.min()) < 0 or int(a.max()) >= meta.vocab_size):
            fail(f"{name} hold token ids {int(a.min())}..{int(a.max())}, outside [0, vocab_size {meta.vocab_size})")
    pi, gi = ps.puzzle_indices.astype(np.int64), ps.group_indices.astype(np.int64)   # no unsigned wrap-around
    if len(pi) != ps.num_puzzles + 1 or pi[0] != 0 or pi[-1] != ps.num_examples or np.any(np.diff(pi) < 1):
        fail("puzzle_indices must rise strictly from 0 to the number of examples, one entry per puzzle + 1")
    if len(gi) < 1 or gi[0] != 0 or gi[-1] != ps.num_puzzles or np.any(np.diff(gi) < 1):
        fail("group_indices must rise strictly from 0 to the number of puzzles")
    ids = ps.puzzle_identifiers
    if ps.num_puzzles and (int(ids.min()) < 0 or int(ids.max()) >= meta.num_puzzle_identifiers):
        fail(f"puzzle_identifiers outside [0, {meta.num_puzzle_identifiers})")


def load_identifiers(data_dir: str | Path) -> list[str]:
    """The puzzle names of a dataset directory (its identifiers.json), or of such a file given directly."""
    path = Path(data_dir) / "identifiers.json" if Path(data_dir).is_dir() else Path(data_dir)
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    try:
        ids = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(ids, list) or not ids or ids[0] != "<blank>" or not all(isinstance(i, str) for i in ids):
        raise DatasetError(f'{path}: expected a JSON list of names starting with "<blank>"')
    return ids


def iter_puzzles(ps: PuzzleSet) -> Iterator[tuple[int, int, slice]]:
    """Yield (group, puzzle identifier, example slice) for every puzzle."""
    for g in range(ps.num_groups):
        for p in range(ps.group_indices[g], ps.group_indices[g + 1]):
            yield g, int(ps.puzzle_identifiers[p]), slice(int(ps.puzzle_indices[p]), int(ps.puzzle_indices[p + 1]))
