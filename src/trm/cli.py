"""The ``trm`` command: data, train, eval, solve, info, report (and bench, ablate where installed).

Every user-facing failure ends with one line ``error: ...`` and exit status 2 (1 for an unexpected bug).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

DEFAULT_PRESET = "sudoku-cpu"


def _add_data(sub) -> None:
    from trm.tasks import REGISTRY
    p = sub.add_parser("data", help=f"build a dataset ({', '.join(REGISTRY)}) in the HRM/TRM on-disk format")
    kinds = p.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)       # the options every builder takes
    common.add_argument("--out", required=True, help="dataset directory to write (train/, test/, identifiers.json)")
    common.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    common.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    common.add_argument("--force", action="store_true", help="replace a dataset built with other settings")
    csv = argparse.ArgumentParser(add_help=False)          # generated or read from the public CSV files
    csv.add_argument("--source", default=["generate"], nargs="+", metavar="SOURCE",
                     help="generate | csv PATH | csv:PATH (a directory with train.csv and test.csv, or the train CSV)")
    csv.add_argument("--csv-test", default=None, help="test CSV (default: test.csv beside the train CSV)")
    for task in REGISTRY.values():
        task.add_build_arguments(kinds.add_parser(task.name, parents=[common, csv] if task.uses_csv else [common],
                                                  help=task.summary))


def _cmd_data(args) -> None:
    from trm.tasks import build_dataset, get
    task = get(args.task)
    build = {"task": task.name, **task.build_options(args), "seed": args.seed, "workers": args.workers}
    if task.uses_csv:
        build.update(_csv_source(args.source, args.csv_test))
    from trm.data.format import is_dataset_dir
    from trm.errors import DatasetError
    from trm.io import atomic_write_text
    out, settings = Path(args.out), json.loads(json.dumps({k: v for k, v in build.items() if k != "workers"}))
    if is_dataset_dir(out):
        try:
            saved = json.loads((out / "build.json").read_text())
        except (OSError, ValueError):
            saved = None
        if saved == settings:
            print(f"{out}: up to date (built with the same settings); nothing to do")
            return
        if not args.force:
            diff = ", ".join(f"{k}: {saved.get(k)!r} -> {v!r}" for k, v in settings.items()
                             if saved.get(k) != v) if isinstance(saved, dict) else "settings not recorded"
            raise DatasetError(f"{out}: holds a dataset built with other settings ({diff}); pass --force to "
                               "replace it, or choose another --out")
    out = build_dataset(args.out, build)
    atomic_write_text(out / "build.json", json.dumps(settings, indent=2, sort_keys=True))
    print(f"dataset written to {out}")


def _csv_source(source: str | list[str], csv_test: str | None) -> dict:
    from trm.errors import ConfigError
    if isinstance(source, list):            # `--source csv PATH` (two words) or `--source csv:PATH`
        if len(source) > 2 or (len(source) == 2 and source[0] != "csv"):
            raise ConfigError(f"--source takes 'generate', 'csv PATH' or 'csv:PATH', got {' '.join(source)!r}")
        source = ":".join(source) if len(source) == 2 else source[0]
    if source == "generate":
        return {"source": "generate"}
    if source.startswith("csv"):
        path = source[3:].lstrip(":= ") or None
        if not path:
            raise ConfigError("--source csv needs a path: --source csv:PATH (a train CSV or a directory "
                              "holding train.csv and test.csv)")
        p = Path(path)
        train = p / "train.csv" if p.is_dir() else p
        test = Path(csv_test) if csv_test else train.with_name("test.csv")
        return {"source": "csv", "csv_train": str(train), "csv_test": str(test)}
    raise ConfigError(f"--source must be 'generate' or 'csv:PATH', got {source!r}")


def _cmd_train(args) -> None:
    from trm.config import load_config
    from trm.pipeline import train
    preset, overrides = args.preset, list(args.overrides)
    if preset and "=" in preset:         # `trm train key=value` with the default preset
        overrides.insert(0, preset)
        preset = None
    from trm.config import SECTIONS
    if preset and preset.split(".")[0] in SECTIONS and not preset.endswith((".yaml", ".yml")):
        from trm.errors import ConfigError
        raise ConfigError(f"{preset!r} looks like an override without a value: write {preset}=VALUE")
    run_dir = args.run_dir
    saved = Path(run_dir) / "config.yaml" if run_dir else None
    if args.resume and not preset and saved is not None and saved.is_file():
        import yaml

        from trm.config import apply_overrides, config_from_dict
        try:
            raw = yaml.safe_load(saved.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            from trm.errors import ConfigError
            raise ConfigError(f"{saved}: not a valid config ({str(e).splitlines()[0]})") from None
        cfg = apply_overrides(config_from_dict(raw), overrides)
    else:
        cfg = load_config(preset or DEFAULT_PRESET, overrides)
    if args.resume and not run_dir and not cfg.run.name:
        from trm.errors import ConfigError
        raise ConfigError("--resume needs the run: pass --run-dir DIR or run.name=NAME")
    train(cfg, resume=args.resume, run_dir=run_dir, progress=not args.quiet)


def _cmd_eval(args) -> None:
    from trm.data.format import load_set, read_metadata
    from trm.eval.evaluate import evaluate
    from trm.solve import load
    from trm.errors import ConfigError
    from trm.tasks import get
    if args.batch_size < 1:                      # checked before the model and data are loaded
        raise ConfigError(f"batch size must be an integer >= 1, got {args.batch_size}")
    if args.max_examples < 0:
        raise ConfigError(f"max_examples must be >= 0 (0: the whole split), got {args.max_examples}")
    solver = load(args.checkpoint, device=args.device, dtype=args.dtype)
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
    res = evaluate(solver.model, ps, meta.ignore_label_id, batch_size=args.batch_size, halting=args.halting,
                   max_examples=args.max_examples, device=device, progress=True)
    metrics = {**res.metrics, **task.metrics(ps, res, data_dir)}
    metrics["exact_by_step"] = [round(float(v), 5) for v in res.exact_by_step]
    metrics["precision"] = solver.precision.dtype
    if args.submission:
        from trm.io import atomic_write_text
        atomic_write_text(args.submission, json.dumps(task.make_submission(ps, res, data_dir)))
        metrics["submission"] = str(args.submission)
    print(json.dumps(metrics, indent=2))


def _cmd_solve(args) -> None:
    from trm.solve import load
    from trm.tasks import get
    task = get(args.task)
    args.puzzle = task.read_puzzle(args.puzzle)     # parse and check first: no model load for a bad input
    for out in (args.png, args.gif):
        if out:
            _check_output_path(out)
    ckpt = args.checkpoint or _example_checkpoint(args.task)
    solver = load(ckpt, device=args.device, dtype=args.dtype)
    if args.verbose:
        print(f"model: {ckpt}\ndevice: {solver.device}\n{solver.describe_precision()}", file=sys.stderr, flush=True)
    if solver.task and solver.task != args.task:
        from trm.errors import CheckpointError
        raise CheckpointError(f"{ckpt} was trained on {solver.task}, not {args.task}")
    code = task.solve_cli(solver, args)
    if code:
        sys.exit(code)


def _example_checkpoint(task: str) -> str:
    from importlib import resources
    from trm.errors import CheckpointError
    path = Path(str(resources.files("trm") / "assets" / f"{task}-cpu"))
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"no example {task} checkpoint ships with trm; pass --checkpoint RUN_DIR")
    return str(path)


def _check_output_path(path: str) -> None:
    """Refuse an output file that cannot be written (a directory, under a file, read-only) before any work."""
    from trm.errors import TRMError
    p = Path(path)
    if p.is_dir():
        raise TRMError(f"{path}: is a directory (give a file name for the picture)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise TRMError(f"{path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise TRMError(f"{path}: cannot write there (permission denied or a read-only disk)")


def _cmd_info(args) -> None:
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


def _cmd_report(args) -> None:
    from trm.report import write_report
    print(f"report written to {write_report(args.run_dir)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trm", description="Tiny Recursive Models: data, training, "
                                     "evaluation and inference")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data(sub)

    t = sub.add_parser("train", help="train from a preset or YAML with key=value overrides")
    t.add_argument("preset", nargs="?", default=None, help=f"preset name or YAML path (default {DEFAULT_PRESET})")
    t.add_argument("overrides", nargs="*", help="key=value, e.g. model.n=4 train.lr=3e-4")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir (or run.name)")
    t.add_argument("--run-dir", default=None, help="run directory (default run.out_dir/run.name)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("eval", help="evaluate a checkpoint / run / exported model on a test split")
    e.add_argument("checkpoint", help="run dir, exported model dir or .pt")
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

    from trm.tasks import REGISTRY
    s = sub.add_parser("solve", help="solve one puzzle (or task) with a trained model: trm solve TASK PUZZLE")
    kinds = s.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)       # the options of every task's solver
    common.add_argument("--checkpoint", default=None, help="run dir, exported model dir or .pt (default: the "
                        "example model shipped with trm)")
    common.add_argument("--halting", default="adaptive", choices=("fixed", "adaptive"),
                        help="fixed: N_sup supervision steps (the paper); adaptive: stop when the halting head says so")
    common.add_argument("--max-steps", type=int, default=None, help="cap on supervision steps (default N_sup)")
    common.add_argument("--png", default=None, help="draw the refinement, one frame per supervision step (or the "
                        "task with its predicted attempts)")
    common.add_argument("--gif", default=None, help="animated refinement")
    common.add_argument("--rollouts", type=int, default=1, help="K rollouts per puzzle (test-time scaling)")
    common.add_argument("--noise", type=float, default=0.0, help="noise scale on the latent z, relative to its RMS")
    common.add_argument("--noise-at", default="both", choices=("start", "every", "both"),
                        help="add the noise to the initial state, at every supervision step, or both")
    common.add_argument("--select", default="halt", choices=("halt", "vote"),
                        help="keep the rollout with the highest halting probability, or the majority answer")
    common.add_argument("--verify", action="store_true", help="tasks with a rule check: adaptive halting stops "
                        "only on an answer that passes it, and a puzzle's rollouts stop once one of them passes")
    common.add_argument("--seed", type=int, default=0, help="seed of the noise (and of augmented versions)")
    common.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    common.add_argument("--dtype", default="trained", choices=("trained", "auto", "bfloat16", "float32"),
                        help="compute precision (default trained: the model's own, or fp32 where this device "
                        "emulates bf16; auto: the fastest here)")
    common.add_argument("--verbose", "-v", action="store_true",
                        help="say which model, device and precision are used")
    for task in REGISTRY.values():
        k = kinds.add_parser(task.name, parents=[common], help=task.puzzle_help)
        k.add_argument("puzzle", help=task.puzzle_help or "the puzzle")
        task.add_solve_arguments(k)

    i = sub.add_parser("info", help="parameters, total steps and resolved config of a preset")
    i.add_argument("preset", nargs="?", help="preset name or YAML path")
    i.add_argument("overrides", nargs="*", help="key=value, as for trm train")
    i.add_argument("--list", action="store_true", help="list the presets and ablations")

    r = sub.add_parser("report", help="write report.md (+ curves) for a run directory")
    r.add_argument("run_dir", help="the run directory (holds metrics.jsonl and config.yaml)")
    for name, module in PLUGINS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.add_parser(sub)
        COMMANDS[name] = mod.run
    return parser


COMMANDS = {"data": _cmd_data, "train": _cmd_train, "eval": _cmd_eval, "solve": _cmd_solve,
            "info": _cmd_info, "report": _cmd_report}
# Subcommands that live in their own modules: each module has add_parser(sub) and run(args).
PLUGINS = {"bench": "trm.bench", "ablate": "trm.ablate"}


def main(argv: list[str] | None = None) -> None:
    from trm.errors import TRMError
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # key=value overrides after a flag (`trm train PRESET --quiet a=b`)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        COMMANDS[args.command](args)
    except TRMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (OSError, UnicodeDecodeError) as e:      # a file that cannot be read or written
        filename = getattr(e, "filename", None)
        where = f"{filename}: " if filename else ""
        print(f"error: {where}{getattr(e, 'strerror', None) or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
