"""``trm import SRC --out DIR``: another implementation's checkpoint as a trm export; ``trm export RUN
--format official --out DIR``: a trm model as the official code's ``step_N`` + ``all_config.yaml``."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    i = sub.add_parser("import", help="convert an official TRM/HRM or nano-trm checkpoint into a trm export")
    i.add_argument("source", help="official step_N file (all_config.yaml beside it) or its directory, or a "
                   "nano-trm Lightning .ckpt")
    i.add_argument("--out", required=True, help="the trm export directory to write (model.safetensors, config.json)")
    i.add_argument("--format", default="auto", choices=("auto", "official", "nano-trm"),
                   help="the source's layout (default auto: told from the file)")
    i.add_argument("--data", default=None, help="the dataset the checkpoint was trained on: its sequence length, "
                   "task, grid shape and puzzle names (default: the source config's data path, if on this disk)")
    i.add_argument("--identifiers", default=None, metavar="FILE",
                   help="identifiers.json naming the rows of the checkpoint's puzzle table (default: the --data "
                   "dataset's)")
    i.add_argument("--config", default=None, metavar="YAML", help="the official all_config.yaml, when it is not "
                   "beside the checkpoint")
    i.add_argument("--weights", default="ema", choices=("ema", "raw"),
                   help="nano-trm: the EMA callback's weights (default, what nano-trm validates with) or the raw ones")
    i.add_argument("--seq-len", type=int, default=None, help="the sequence length, for a model whose weights do "
                   "not record it (attention with rotary positions) when no --data is given")
    i.add_argument("--force", action="store_true", help="replace a non-empty --out that is not a trm export")

    e = sub.add_parser("export", help="write a trm model in another layout (the official TRM/HRM code's)")
    e.add_argument("checkpoint", help="run dir, exported model dir or .pt")
    e.add_argument("--out", required=True, help="directory to write")
    e.add_argument("--format", default="official", choices=("official", "trm"),
                   help="official: step_N + all_config.yaml, loadable by the official code (default); trm: "
                   "model.safetensors + config.json")
    e.add_argument("--step", type=int, default=None, help="N of the step_N file (default: the run's last step, "
                   "else 0)")


def run(args) -> None:
    if args.command == "import":
        _import(args)
    else:
        _export(args)


def _import(args) -> None:
    from trm.interop import read, write_export
    data = Path(args.data) if args.data else None
    identifiers = args.identifiers or (data if data is not None and (data / "identifiers.json").is_file() else None)
    imported = read(args.source, args.format, data_dir=data, identifiers=identifiers, config_file=args.config,
                    weights=args.weights, seq_len=args.seq_len)
    for note in imported.source["notes"]:
        print(f"note: {note}", file=sys.stderr)
    out = write_export(imported, args.out, force=args.force)
    m = imported.config.model
    names = "unknown" if imported.identifiers is None else f"{len(imported.identifiers)} names"
    params = sum(v.numel() for k, v in imported.weights.items() if k not in ("y_init", "z_init", "puzzle_emb.weight"))
    print(f"imported {imported.source['format']} {imported.source['arch']} from {imported.source['file']}: {params:,} "
          f"parameters, T={m.T} n={m.n} N_sup={m.N_sup}, {m.mixer}, vocab {m.vocab_size}, seq_len {m.seq_len}, "
          f"task {imported.data.get('task') or 'unknown'}, puzzle rows {m.num_puzzle_ids} ({names}) -> {out}")


def _export(args) -> None:
    import json

    import yaml

    from trm.errors import CheckpointError
    from trm.interop.official import from_trm
    from trm.io import atomic_write_bytes, atomic_write_text
    from trm.solve import load
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{out}: exists and is not a directory")
    solver = load(args.checkpoint, device="cpu", dtype="float32")
    if args.format == "trm":
        solver.save_pretrained(out)
        print(f"exported {args.checkpoint} -> {out}")
        return
    trained = solver.trained_dtype if solver.trained_dtype in ("bfloat16", "float32") else "bfloat16"  # auto
    state, config = from_trm(solver.model.state_dict(), solver.config, trained)
    step = args.step if args.step is not None else _last_step(Path(args.checkpoint))
    import torch
    atomic_write_bytes(out / f"step_{step}", lambda tmp: torch.save(state, tmp))
    atomic_write_text(out / "all_config.yaml", yaml.safe_dump(config, sort_keys=True))
    if solver.identifiers is not None:
        atomic_write_text(out / "identifiers.json", json.dumps(solver.identifiers))
    print(f"exported {args.checkpoint} as {config['arch']['name']} -> {out / f'step_{step}'} + all_config.yaml")


def _last_step(path: Path) -> int:
    """The step of a run's last checkpoint (its manifest says), else 0."""
    import json
    manifest = path / "checkpoints" / "last.pt.json"
    try:
        return max(int(json.loads(manifest.read_text()).get("step", 0)), 0)
    except (OSError, ValueError, AttributeError):
        return 0
