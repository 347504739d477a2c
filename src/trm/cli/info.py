"""``trm info [PRESET] [key=value ...]``, ``trm info --list``: what a preset is, before any training."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub) -> None:
    i = sub.add_parser("info", help="parameters, total steps and resolved config of a preset")
    i.add_argument("preset", nargs="?", help="preset name or YAML path")
    i.add_argument("overrides", nargs="*", help="key=value, as for trm train")
    i.add_argument("--list", action="store_true", help="list the presets and ablations")


def run(args) -> None:
    from trm.config import list_presets, load_config
    if args.list or not args.preset:
        print(json.dumps(list_presets(), indent=2))
        return
    cfg = load_config(args.preset, args.overrides)
    print(json.dumps(preset_info(cfg), indent=2))


def preset_info(cfg) -> dict:
    """params, total_steps (from the dataset if built, else from data.build) and the resolved config."""
    from trm.data.format import read_metadata
    from trm.model.recursive import RecursiveReasoner, network_calls
    from trm.train.run import fill_model_dims, total_steps_for
    info: dict = {"preset": cfg.preset}
    meta = None
    if cfg.data.path and (Path(cfg.data.path) / "train" / "dataset.json").is_file():
        meta = read_metadata(Path(cfg.data.path) / "train")
        fill_model_dims(cfg, meta)
        info["total_steps_from"] = "dataset"
    m = cfg.model
    from trm.tasks import dims_from_build
    if meta is None and dims_from_build(cfg) and not m.num_puzzle_ids:   # not built yet: the task knows the shape
        info["note"] = "the puzzle table counted with 1 identifier until the dataset is built"
    if not (m.vocab_size and m.seq_len):
        info["params"] = None
        info["note"] = "vocab_size/seq_len come from the dataset, which is not built yet"
    else:
        import torch
        with torch.device("meta"):
            model = RecursiveReasoner(m)
        info["params"] = model.num_params()
        info["puzzle_table"] = model.puzzle_emb.weight.numel() if model.puzzle_emb is not None else 0
        info["network_calls_per_step"] = network_calls(m)
    if meta is not None:
        info["total_steps"] = total_steps_for(cfg, meta)
    else:
        groups = cfg.data.build.get("train_size") if cfg.data.build else None
        mean_examples = float(cfg.data.build.get("mean_puzzle_examples", 1.0)) if cfg.data.build else 1.0
        if cfg.train.max_steps is not None:
            info["total_steps"] = cfg.train.max_steps
        elif groups:
            info["total_steps"] = max(1, int(cfg.train.epochs * groups * mean_examples / cfg.train.global_batch_size))
            info["total_steps_from"] = "data.build (estimate before the dataset exists)"
        else:
            info["total_steps"] = None
    from trm import runtime
    try:
        device = runtime.resolve_device(cfg.train.device)
        p = runtime.resolve_precision(m.forward_dtype, device, hidden_size=m.hidden_size, seq_len=m.seq_len or 81)
        info["runtime"] = {"device": runtime.describe_device(device), "precision": p.dtype, "why": p.reason}
    except Exception as e:  # noqa: BLE001 - a preset for a GPU, shown on a machine without one
        info["runtime"] = {"device": cfg.train.device, "note": str(e)}
    info["config"] = cfg.to_dict()
    return info
