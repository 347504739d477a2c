"""Files: atomic writes, checkpoints (full training state) and exported weights (safetensors + config.json).

- Atomic writes (:func:`atomic_write_bytes`, :func:`atomic_write_text`): a temporary file beside the
  target, fsync, rename; every file trm writes goes through them.

- Full state: one ``torch.save`` file written to a temporary name and renamed, with a JSON manifest
  (size, sha256, step, and the same of the file it replaces) beside it, written in an order that
  survives a crash at any moment (:func:`save_checkpoint`); loading checks the manifest and uses
  ``weights_only=True``, so a file can never run code.
- Export: ``model.safetensors`` + ``config.json`` in a directory (the Hugging Face layout), holding the
  EMA weights and the buffers the model needs (init vectors, puzzle table). Loadable without any
  training state.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from trm.errors import CheckpointError

MANIFEST_SUFFIX = ".json"
# Classes a checkpoint may hold besides tensors and containers: building them runs no code of the file's
# choosing (nano-trm's Lightning checkpoints store the output directory as a path in hyper_parameters).
SAFE_GLOBALS: list[Any] = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask)    # mkstemp makes 0600 (and safetensors rewrites the file so): the usual mode
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_KNOWN: dict[str, tuple[int, int, str]] = {}   # path -> (size, mtime_ns, sha256) of files this process wrote or checked


def _entry(path: Path) -> dict[str, Any] | None:
    """{size, sha256} of the file at ``path`` now (hashed once per process), or None if absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    known = _KNOWN.get(str(path))
    if known and known[:2] == (st.st_size, st.st_mtime_ns):
        return {"size": st.st_size, "sha256": known[2]}
    digest = sha256(path)
    _KNOWN[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    return {"size": st.st_size, "sha256": digest}


def _read_manifest(path: Path) -> dict | None:
    manifest_path = path.with_name(path.name + MANIFEST_SUFFIX)
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{manifest_path}: corrupt manifest (delete it to load {path.name} "
                              "without a checksum check)")
    return manifest


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files a killed save left in ``directory`` (``.NAME.XXXX.tmp``). Call it
    only while holding the run's lock (no other save can be under way)."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write the full training state and its manifest so that a crash at any moment leaves a pair
    that loads.

    Order: the new state goes to a temporary file (fsync); then the manifest is replaced by one that
    accepts both the new file and the one still in place (``previous``); then the new file is renamed
    into place. Killed before the manifest is replaced: the old pair. Between the two renames: the
    old file, which the new manifest accepts. After: the new pair. A full disk or a size limit ends in
    a CheckpointError naming the path and the space left; the previous checkpoint stays intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = int(state["engine"].get("step", -1)) if isinstance(state.get("engine"), dict) else -1
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        new = _entry(tmp)
        assert new is not None
        old = _entry(path)
        manifest = _read_manifest(path) if old else None
        if old and manifest and manifest.get("sha256") == old["sha256"]:
            old["step"] = manifest.get("step", -1)
        elif old and manifest and isinstance(manifest.get("previous"), dict) \
                and manifest["previous"].get("sha256") == old["sha256"]:
            old["step"] = manifest["previous"].get("step", -1)     # killed between the renames last time
        manifest = {"file": path.name, **new, "step": step, "previous": old}
        atomic_write_text(path.with_name(path.name + MANIFEST_SUFFIX), json.dumps(manifest, indent=2))
        os.replace(tmp, path)
        st = path.stat()
        _KNOWN[str(path)] = (st.st_size, st.st_mtime_ns, new["sha256"])
    except (OSError, RuntimeError) as e:     # torch.save reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        vfs = os.statvfs(path.parent)
        free = vfs.f_bavail * vfs.f_frsize >> 20
        what = getattr(e, "strerror", None) or (str(e).splitlines() or ["write failed"])[0]
        raise CheckpointError(f"cannot save the checkpoint {path}: {what} ({free} MiB free on its disk); "
                              "the previous checkpoint is intact") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a full-state checkpoint safely; a truncated, corrupt or code-carrying file is refused."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    manifest = _read_manifest(path)
    if manifest is not None:
        entry = _entry(path)
        assert entry is not None
        accepted = [manifest] + ([manifest["previous"]] if isinstance(manifest.get("previous"), dict) else [])
        if not any(entry["size"] == m.get("size") and entry["sha256"] == m.get("sha256") for m in accepted):
            sizes = " or ".join(str(m.get("size")) for m in accepted)
            reason = ("checksum mismatch (the file is corrupt)" if entry["size"] in [m.get("size") for m in accepted]
                      else f"size {entry['size']} bytes, manifest says {sizes} (truncated or replaced)")
            raise CheckpointError(f"{path}: {reason}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not _looks_like_torch_file(path):
            raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch archive)") from None
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(e))
        what = f"it needs {found[1]}" if found else _first_line(e)
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain "
                              f"containers, which could run code ({what}); trm never loads such files") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types on a mangled archive; all mean corrupt
        if not _looks_like_torch_file(path):
            raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch archive)") from None
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: "
                              f"{_first_line(e)})") from None


def _looks_like_torch_file(path: Path) -> bool:
    """Starts like a torch.save file: a zip archive (even truncated) or a bare pickle (0x80: protocol
    2+, the legacy format)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"PK\x03\x04" or head[:1] == b"\x80"


def _first_line(e: BaseException) -> str:
    """The first line of torch's message, without its advice to load unsafely."""
    line = (str(e).splitlines() or [""])[0]
    return line.split("(1) ")[0].split("In PyTorch 2.6")[0].strip().rstrip(".:")


# ----------------------------------------------------------------------------------------------
# Export: safetensors + config.json

def export_weights(out_dir: str | Path, state_dict: dict[str, torch.Tensor], config: dict,
                   identifiers: list[str] | None = None) -> Path:
    """Write ``model.safetensors``, ``config.json`` and, when given, ``identifiers.json`` (the names of the
    puzzle table's rows, so that a dataset can be matched to them by name) atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(out_dir / "model.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write_text(out_dir / "config.json", json.dumps(config, indent=2))
    if identifiers is not None:
        atomic_write_text(out_dir / "identifiers.json", json.dumps(identifiers))
    return out_dir


def read_export(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read an exported model directory (or its model.safetensors); clear errors when broken."""
    path = Path(path)
    d = path if path.is_dir() else path.parent
    weights, cfg_path = d / "model.safetensors", d / "config.json"
    for p in (weights, cfg_path):
        if not p.is_file():
            raise CheckpointError(f"{p}: missing (an exported model directory holds model.safetensors "
                                  "and config.json)")
    try:
        config = json.loads(cfg_path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    try:
        tensors = load_file(weights)
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ValueError...: all mean corrupt
        raise CheckpointError(f"{weights}: corrupt or truncated safetensors file ({e})") from None
    return tensors, config
