"""Checkpoints (full training state) and exported weights (safetensors + config.json).

- Full state: one ``torch.save`` file written to a temporary name and renamed, with a JSON manifest
  (size, sha256, step) beside it; loading checks the manifest and uses ``weights_only=True``, so a
  file can never run code.
- Export: ``model.safetensors`` + ``config.json`` in a directory (the Hugging Face layout), holding the
  EMA weights and the buffers the model needs (init vectors, puzzle table). Loadable without any
  training state.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from trm.errors import CheckpointError

MANIFEST_SUFFIX = ".json"


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``; a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)    # mkstemp makes 0600; the final file gets the usual mode
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(text))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write the full training state and its manifest (size, sha256, step)."""
    path = Path(path)
    atomic_write_bytes(path, lambda tmp: torch.save(state, tmp))
    manifest = {"file": path.name, "size": path.stat().st_size, "sha256": sha256(path),
                "step": int(state.get("engine", {}).get("step", -1)) if isinstance(state.get("engine"), dict) else -1}
    atomic_write_text(path.with_name(path.name + MANIFEST_SUFFIX), json.dumps(manifest, indent=2))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a full-state checkpoint safely; a truncated, corrupt or code-carrying file is refused."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt" if (path / "checkpoints").is_dir() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    manifest_path = path.with_name(path.name + MANIFEST_SUFFIX)
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (ValueError, UnicodeDecodeError):
            manifest = None
        if not isinstance(manifest, dict):
            raise CheckpointError(f"{manifest_path}: corrupt manifest (delete it to load {path.name} "
                                  "without a checksum check)")
        size = path.stat().st_size
        if size != manifest.get("size"):
            raise CheckpointError(f"{path}: size {size} bytes, manifest says {manifest.get('size')} "
                                  "(truncated or replaced)")
        if sha256(path) != manifest.get("sha256"):
            raise CheckpointError(f"{path}: checksum mismatch (the file is corrupt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load (it holds objects other than tensors and plain "
                              f"containers, which could run code): {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types on a mangled archive; all mean corrupt
        first = (str(e).splitlines() or [""])[0]
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {first})") from None


# ----------------------------------------------------------------------------------------------
# Export: safetensors + config.json

def export_weights(out_dir: str | Path, state_dict: dict[str, torch.Tensor], config: dict) -> Path:
    """Write ``model.safetensors`` and ``config.json`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write_bytes(out_dir / "model.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write_text(out_dir / "config.json", json.dumps(config, indent=2))
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
