"""Checkpoints of other implementations: read them as trm models, write trm models in the official layout.

Formats (docs/CHECKPOINTS.md):

- ``official``: the public TRM / HRM code (``step_N`` + ``all_config.yaml``), :mod:`trm.interop.official`;
- ``nano-trm``: nano-trm's PyTorch Lightning ``.ckpt``, :mod:`trm.interop.nano_trm`.

:func:`read` gives an :class:`Imported` (trm-named weights, the resolved config, the dataset facts and,
where known, the names of the puzzle-embedding rows); :func:`trm.solve.load` calls it for any source that
is not trm's own, so ``trm eval``/``trm solve`` take these files directly, and ``trm import`` writes it out
as a trm export (:func:`write_export`). Files are loaded with ``weights_only=True`` only
(:func:`trm.io.load_checkpoint`). Every key is mapped or named in an error; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trm.config import Config, validate
from trm.errors import CheckpointError, ConfigError, TRMError
from trm.interop.keys import NANO_TRM, OFFICIAL, Layout

FORMATS = ("auto", "official", "nano-trm")


@dataclass
class Imported:
    weights: dict[str, torch.Tensor]         # trm names, fp32
    config: Config
    data: dict[str, Any]                      # what a trm export's config.json "data" holds (task, grid_shape)
    identifiers: list[str] | None = None      # names of the puzzle-embedding rows (identifiers.json), if known
    source: dict[str, Any] = field(default_factory=dict)   # format, file, arch, notes


def find_file(path: Path, fmt: str = "auto") -> tuple[str, Path]:
    """(format, checkpoint file) of a foreign source: a file, or a directory holding ``step_N`` files with
    ``all_config.yaml`` (the highest N; or a file named ``checkpoint``) or one Lightning ``.ckpt``
    (``last.ckpt`` first)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if path.is_file():
        guess = "nano-trm" if path.suffix == ".ckpt" else "official"
        return (guess if fmt == "auto" else fmt), path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint")
    steps = sorted((p for p in path.glob("step_*") if p.is_file() and p.name[5:].isdigit()),
                   key=lambda p: int(p.name[5:]))
    if not steps and (path / "all_config.yaml").is_file() and (path / "checkpoint").is_file():
        steps = [path / "checkpoint"]          # the published HRM checkpoints name their file so
    ckpts = sorted(path.glob("*.ckpt"))
    if steps and fmt in ("auto", "official"):
        return "official", steps[-1]
    if ckpts and fmt in ("auto", "nano-trm"):
        last = [p for p in ckpts if p.name == "last.ckpt"]
        if not last and len(ckpts) > 1:
            raise CheckpointError(f"{path}: several Lightning checkpoints ({', '.join(p.name for p in ckpts[:4])}); "
                                  "name one")
        return "nano-trm", (last or ckpts)[0]
    raise CheckpointError(f"{path}: holds no checkpoint trm reads (a trm run or export, official step_N files "
                          "with all_config.yaml, or a Lightning .ckpt)")


def is_foreign(path: str | Path) -> bool:
    """True for a path that is not trm's own (run directory, export, full-state ``.pt``)."""
    path = Path(path)
    if path.is_dir():
        own = ("model.safetensors", "config.json", "model/model.safetensors", "checkpoints/last.pt", "last.pt")
        return not any((path / p).is_file() for p in own)
    return path.suffix not in (".pt", ".safetensors", ".json")


def read(path: str | Path, fmt: str = "auto", *, data_dir: str | Path | None = None,
         identifiers: str | Path | None = None, config_file: str | Path | None = None, weights: str = "ema",
         seq_len: int | None = None, task: str | None = None, loaded: Any = None) -> Imported:
    """Read a foreign checkpoint as a trm model. ``data_dir``: the dataset (its sequence length, task and grid
    shape); ``identifiers``: an ``identifiers.json`` (or a dataset directory) naming the puzzle table's rows;
    ``config_file``: the official ``all_config.yaml`` when it is not beside the file; ``seq_len`` / ``task``:
    hints for a model whose weights do not record the sequence length (attention with rotary positions);
    ``loaded``: the file's contents when the caller has read it already."""
    from trm.io import load_checkpoint
    from trm.interop import nano_trm, official
    if Path(path).is_dir() and not is_foreign(path):
        raise CheckpointError(f"{path}: a trm run or export already; trm eval / solve / export read it directly")
    fmt, file = find_file(Path(path), fmt)
    if weights not in ("ema", "raw"):
        raise ConfigError(f"--weights {weights!r} is not one of ema, raw")
    obj = loaded if loaded is not None else load_checkpoint(file, map_location="cpu")
    notes: list[str] = []
    if isinstance(obj, dict) and "engine" in obj and "config" in obj:
        raise CheckpointError(f"{file}: a trm training checkpoint; trm eval / solve / export read it directly")
    if nano_trm.is_lightning(obj):
        fmt = "nano-trm"
    elif fmt == "nano-trm":
        raise CheckpointError(f"{file}: not a Lightning checkpoint (no state_dict / hyper_parameters)")
    layout: Layout
    if fmt == "nano-trm":
        mapped, cfg, unknown, notes = nano_trm.to_trm(obj, file, weights)
        found_seq, layout, source_keys = cfg.model.seq_len, NANO_TRM, list(obj["state_dict"])
        arch = "nano-trm TRMModule"
    else:
        if not (isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
            keys = list(obj)[:6] if isinstance(obj, dict) else type(obj).__name__
            raise CheckpointError(f"{file}: not a state dict of tensors (official step_N files are); found {keys}")
        yaml_path = Path(config_file) if config_file else file.parent / "all_config.yaml"
        if not yaml_path.is_file():
            raise CheckpointError(f"{file}: no all_config.yaml beside it (the official code writes one per run; "
                                  "give its path with --config)")
        raw = official.read_config(yaml_path)
        mapped, cfg, unknown, found = official.to_trm(obj, raw, file)
        found_seq, layout, source_keys = found or 0, OFFICIAL, list(obj)
        arch = str(raw["arch"]["name"])
    if unknown:
        raise CheckpointError(f"{file}: {len(unknown)} key(s) the {fmt} layout does not have: {unknown[:6]}")
    meta = _dataset_meta(data_dir, cfg)
    resolved = _seq_len(found_seq, meta, seq_len, task, cfg, file, notes)
    cfg.model.seq_len = resolved
    if meta is not None and meta.vocab_size != cfg.model.vocab_size:
        raise CheckpointError(f"{file}: vocabulary of {cfg.model.vocab_size} tokens, but {data_dir} has "
                              f"{meta.vocab_size}: not the dataset this checkpoint was trained on")
    try:
        validate(cfg)
    except ConfigError as e:
        raise CheckpointError(f"{file}: its config does not describe a trm model ({e})") from None
    weights_fp32 = _check_weights(mapped, cfg, layout, file, source_keys)
    names = _identifiers(identifiers, cfg, file)
    data: dict[str, Any]
    if meta is not None:
        data = {"task": meta.task, "grid_shape": meta.grid_shape, "ignore_label_id": meta.ignore_label_id}
    else:
        from trm.tasks import infer_task
        data = {"task": task or infer_task(cfg.model.vocab_size, resolved), "grid_shape": None}
    return Imported(weights_fp32, cfg, data, names,
                    {"format": fmt, "file": str(file), "arch": arch, "notes": notes})


def _dataset_meta(data_dir: str | Path | None, cfg: Config):
    """The metadata of the dataset given, else of the one the source config names if it is on this disk."""
    from trm.data.format import read_metadata
    for d, given in ((data_dir, True), (cfg.data.path or None, False)):
        if d is None:
            continue
        d = Path(d)
        split = next((d / s for s in ("test", "train") if (d / s / "dataset.json").is_file()),
                     d if (d / "dataset.json").is_file() else None)
        if split is not None:
            return read_metadata(split)
        if given:
            raise CheckpointError(f"{d}: not a dataset directory (no test/dataset.json)")
    return None


def _seq_len(found: int, meta, hint: int | None, task: str | None, cfg: Config, file: Path,
             notes: list[str]) -> int:
    """The sequence length: from the weights when they record it, else the dataset, the hint, or the
    one public dataset with this vocabulary; disagreement is an error."""
    given = [(v, w) for v, w in ((meta.seq_len if meta else None, "the dataset"), (hint, "--seq-len")) if v]
    for value, what in given:
        if found and value != found:
            raise CheckpointError(f"{file}: the weights are for sequences of {found} tokens, {what} has {value}")
    if found:
        return found
    if given:
        return int(given[0][0])
    from trm.tasks import REGISTRY
    vocab = cfg.model.vocab_size
    lengths = {d[1] for t in REGISTRY.values() if t.name == task and (d := t.dims({})) and d[0] == vocab}
    if len(lengths) == 1:       # the task is named (trm solve TASK) and its default dataset has this vocabulary
        length = lengths.pop()
        notes.append(f"sequence length {length} assumed (the default {task} dataset, {vocab} tokens); "
                     "give --data to check it")
        return length
    raise CheckpointError(f"{file}: its weights do not record the sequence length (attention with rotary "
                          "positions); give the dataset with --data DIR (or --seq-len N)")


def _check_weights(mapped: dict[str, torch.Tensor], cfg: Config, layout: Layout, file: Path,
                   source_keys: list[str]) -> dict[str, torch.Tensor]:
    """The weights as fp32, checked key by key and shape by shape against the model the config builds."""
    from trm.model.recursive import RecursiveReasoner
    try:
        with torch.device("meta"):             # shapes only: no memory for the (ARC: 1.8 GB) puzzle table
            expected = RecursiveReasoner(cfg.model).state_dict()
    except (ValueError, RuntimeError, TRMError) as e:
        raise CheckpointError(f"{file}: cannot build the model its config describes ({e})") from None
    missing = [layout.from_trm(k) or k for k in expected if k not in mapped]
    extra = [layout.from_trm(k) or k for k in mapped if k not in expected]
    if missing or extra:
        raise CheckpointError(f"{file}: the weights do not match the architecture its config describes "
                              f"(missing {missing[:6]}, unexpected {extra[:6]})")
    out = {}
    for key, value in mapped.items():
        if not value.is_floating_point():
            raise CheckpointError(f"{file}: {layout.from_trm(key)} holds {value.dtype}, not floating point")
        if value.shape != expected[key].shape:
            raise CheckpointError(f"{file}: {layout.from_trm(key)} has shape {tuple(value.shape)}, the config "
                                  f"expects {tuple(expected[key].shape)}")
        out[key] = value.detach().to(torch.float32).contiguous()
    return out


def _identifiers(source: str | Path | None, cfg: Config, file: Path) -> list[str] | None:
    """The puzzle table's row names: ``source`` (identifiers.json or its dataset directory), else the
    training dataset the config names when it is on this disk; their count must be the table's."""
    from trm.data.format import load_identifiers
    if source is None and cfg.data.path and (Path(cfg.data.path) / "identifiers.json").is_file():
        source = cfg.data.path
    if source is None:
        return None
    names = load_identifiers(source)
    rows = cfg.model.num_puzzle_ids if cfg.model.puzzle_emb_dim else 0
    if rows and len(names) != rows:
        raise CheckpointError(f"{source}: names {len(names)} puzzle identifiers, the checkpoint's puzzle table "
                              f"has {rows} rows: not the dataset {file.name} was trained on")
    return names


def write_export(imported: Imported, out: str | Path, force: bool = False) -> Path:
    """A trm export directory (model.safetensors, config.json, identifiers.json when known)."""
    from trm import __version__
    from trm.io import export_weights
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force \
            and not (out / "model.safetensors").is_file():
        raise CheckpointError(f"{out}: exists and is not a trm export; choose another --out or remove it")
    config = {"trm_version": __version__, "config": imported.config.to_dict(), "data": imported.data,
              "source": imported.source}
    return export_weights(out, imported.weights, config, imported.identifiers)
