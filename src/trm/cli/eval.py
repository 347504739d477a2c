"""``trm eval CHECKPOINT``: evaluate a run, an exported model or a .pt file on a test split."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="evaluate a checkpoint / run / exported model on a test split")
    e.add_argument("checkpoint", help="run dir, exported model dir or .pt; or another implementation's checkpoint "
                   "(official step_N with all_config.yaml, nano-trm .ckpt), imported on the fly")
    e.add_argument("--data", default=None, help="dataset directory or its test split (default: the run's "
                   "data.path)")
    e.add_argument("--halting", default="fixed", choices=("fixed", "adaptive"),
                   help="fixed: all N_sup supervision steps (the paper); adaptive: each example stops when "
                   "the halting head says so")
    e.add_argument("--batch-size", type=int, default=256, help="examples per forward pass (default 256)")
    e.add_argument("--max-examples", type=int, default=0, help="evaluate the first N examples only (default "
                   "0: all)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    e.add_argument("--dtype", default="trained", choices=("trained", "auto", "bfloat16", "float32"),
                   help="compute precision (default trained: the run's own, or fp32 where this device "
                   "emulates bf16; auto: the fastest here; the choice is printed)")
    e.add_argument("--submission", default=None, metavar="FILE",
                   help="also write the competition submission JSON (tasks that have one; two attempts per test input)")


def run(args) -> None:
    from trm.errors import ConfigError
    if args.batch_size < 1:                      # checked before torch, the model and the data are loaded
        raise ConfigError(f"batch size must be an integer >= 1, got {args.batch_size}")
    if args.max_examples < 0:
        raise ConfigError(f"max_examples must be >= 0 (0: the whole split), got {args.max_examples}")
    from trm.data.format import load_identifiers, load_set, read_metadata
    from trm.eval.evaluate import evaluate
    from trm.solve import load
    from trm.tasks import get
    solver = load(args.checkpoint, device=args.device, dtype=args.dtype, data=args.data)
    device = solver.device
    print(f"device: {device}; {solver.describe_precision()}", file=sys.stderr, flush=True)
    data_dir = Path(args.data or solver.config.data.path)
    meta = read_metadata(data_dir / "test")
    if (meta.vocab_size, meta.seq_len) != (solver.model.cfg.vocab_size, solver.model.cfg.seq_len):
        from trm.errors import DatasetError
        raise DatasetError(f"{data_dir}: vocab {meta.vocab_size} / seq_len {meta.seq_len}, but the model "
                           f"expects {solver.model.cfg.vocab_size} / {solver.model.cfg.seq_len}")
    task = get(meta.task)
    if args.submission and not task.submission:
        from trm.errors import DatasetError
        from trm.tasks import REGISTRY
        able = ", ".join(t.name for t in REGISTRY.values() if t.submission)
        raise DatasetError(f"--submission is for tasks with a submission format ({able}); {data_dir} holds "
                           f"{meta.task}")
    ps = load_set(data_dir / "test")
    if (data_dir / "identifiers.json").is_file():
        note = solver.fit_puzzle_table(load_identifiers(data_dir), ps.puzzle_identifiers, where=str(data_dir))
        if note:
            print(note, file=sys.stderr)
    res = evaluate(solver.model, ps, meta.ignore_label_id, batch_size=args.batch_size, halting=args.halting,
                   max_examples=args.max_examples, device=device, progress=True)
    metrics: dict[str, Any] = {**res.metrics, **task.metrics(ps, res, data_dir)}
    metrics["exact_by_step"] = [round(float(v), 5) for v in res.exact_by_step]
    metrics["precision"] = solver.precision.dtype
    if args.submission:
        from trm.io import atomic_write_text
        atomic_write_text(args.submission, json.dumps(task.make_submission(ps, res, data_dir)))
        metrics["submission"] = str(args.submission)
    print(json.dumps(metrics, indent=2))
