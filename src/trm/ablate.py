"""``trm ablate SPEC``: train a list of variants under one budget and tabulate them like the paper's Table 1.

A spec is a YAML file (``trm/presets/suites/NAME.yaml`` or any path)::

    description: "what this ablation compares"
    dataset: {path: data/sudoku-4x4, build: {task: sudoku, size: 4}}   # optional: every variant's data
    budget: {steps: 300}            # and/or {minutes: 2}; {} keeps each preset's own length
    seeds: [0, 1]
    overrides: [model.hidden_size=64, train.lr=1e-3]   # every variant, after its preset (*)
    variants:
      - {name: "TRM (T=3, n=6)", preset: sudoku-extreme-mlp, paper: 87.4}
      - {name: "1-step gradient", preset: ablate-sudoku-1step, paper: 56.5}
      - {name: "T=2, n=2", preset: sudoku-extreme-mlp, overrides: [model.T=2, model.n=2]}

(*) A derived preset's own settings (those in its file, next to ``base:``) are re-applied after the
common overrides: shrinking the runs never undoes what defines a variant (HRM's T and n, direct-sudoku's
N_sup = 1); a notice names each common override so kept out.

Each (variant, seed) is a real ``trm.pipeline.train`` run in ``OUT/runs/<variant>-s<seed>``; its final
evaluation is read back from ``metrics.jsonl``. A finished run is reused and an interrupted one resumed
when the command is run again with the same spec. Outputs: ``OUT/table.md``, ``OUT/table.json`` and
``OUT/bars.png``. Columns follow the paper's Table 1: accuracy, depth (T (n+1) layers: the layers one
supervision step passes through), forward passes per optimizer step (2 with Q-learning ACT, whose
continue target needs an extra pass) and parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trm.config import Config, config_from_dict, load_config, preset_dir, preset_path, validate
from trm.errors import ConfigError, TRMError


# ----------------------------------------------------------------------------------------------
# The spec

@dataclass
class Variant:
    name: str
    preset: str
    overrides: list[str] = field(default_factory=list)
    paper: float | None = None      # the paper's accuracy (%) for this row, if it reports one


@dataclass
class AblationSpec:
    name: str
    variants: list[Variant]
    description: str = ""
    dataset: dict = field(default_factory=dict)      # {path, build}: replaces every preset's data
    steps: int = 0                                    # budget: optimizer steps per run (0: preset's own)
    minutes: float = 0.0                              # budget: wall minutes per run (0: none)
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)


def ablation_dir() -> Path:
    """The built-in ablation suites (``trm/presets/suites/``)."""
    return preset_dir() / "suites"


def list_ablations() -> dict[str, str]:
    """Ablation spec name -> its description."""
    out = {}
    for p in sorted(ablation_dir().glob("*.yaml")):
        out[p.stem] = (yaml.safe_load(p.read_text()) or {}).get("description", "")
    return out


def _overrides(value: Any, where: str) -> list[str]:
    """A list of ``key=value`` strings, or a mapping {key: value}, as ``key=value`` strings."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and "=" in v for v in value):
        return list(value)
    raise ConfigError(f"{where}: overrides must be a list of key=value strings or a mapping")


def load_spec(name_or_path: str) -> AblationSpec:
    """Read an ablation spec from a path or from ``trm/presets/suites/``."""
    path = Path(name_or_path)
    if not path.is_file():
        path = ablation_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown ablation spec {name_or_path!r}; known: "
                              f"{', '.join(list_ablations()) or 'none'} (or give a path to a .yaml file)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(raw) - {"description", "dataset", "budget", "seeds", "overrides", "variants"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    budget = raw.get("budget") or {}
    if not isinstance(budget, dict) or set(budget) - {"steps", "minutes"}:
        raise ConfigError(f"{path}: budget must be a mapping with 'steps' and/or 'minutes'")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers")
    dataset = raw.get("dataset") or {}
    if not isinstance(dataset, dict) or (dataset and "path" not in dataset):
        raise ConfigError(f"{path}: dataset must be a mapping with a 'path' (and optionally 'build')")
    variants = []
    for i, v in enumerate(raw.get("variants") or []):
        if not isinstance(v, dict) or "preset" not in v:
            raise ConfigError(f"{path}: variant {i + 1} must be a mapping with at least a 'preset'")
        extra = set(v) - {"name", "preset", "overrides", "paper"}
        if extra:
            raise ConfigError(f"{path}: variant {i + 1} has unknown keys {sorted(extra)}")
        variants.append(Variant(name=str(v.get("name", v["preset"])), preset=str(v["preset"]),
                                overrides=_overrides(v.get("overrides"), f"{path} variant {i + 1}"),
                                paper=None if v.get("paper") is None else float(v["paper"])))
    if not variants:
        raise ConfigError(f"{path}: no variants")
    names = [slug(v.name) for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: variant names must be distinct")
    return AblationSpec(name=path.stem, variants=variants, description=str(raw.get("description", "")),
                        dataset=dataset, steps=int(budget.get("steps", 0) or 0),
                        minutes=float(budget.get("minutes", 0) or 0), seeds=seeds,
                        overrides=_overrides(raw.get("overrides"), f"{path} overrides"))


def slug(name: str) -> str:
    """A file-name-safe form of a variant name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "variant"


# ----------------------------------------------------------------------------------------------
# Configs and figures

def variant_config(spec: AblationSpec, variant: Variant, seed: int, out_dir: str | Path,
                   extra_overrides: list[str] | None = None) -> Config:
    """The run's Config, in this order: the preset; the common overrides (spec, then ``--set``); the
    preset's own defining settings again (see :func:`defining_settings`); the spec's dataset; the
    variant's overrides; last the budget, seed and run directory."""
    data = []
    if spec.dataset:   # vocabulary, length and identifiers then come from that dataset
        data = [f"data.path={spec.dataset['path']}", f"data.build={json.dumps(spec.dataset.get('build') or {})}",
                "model.vocab_size=0", "model.seq_len=0", "model.num_puzzle_ids=0"]
    common = spec.overrides + list(extra_overrides or [])
    cfg = load_config(variant.preset, common + defining_settings(variant.preset) + data + variant.overrides)
    if spec.steps:
        cfg.train.max_steps = spec.steps
    if spec.minutes:
        cfg.train.max_minutes = spec.minutes
    cfg.train.seed = seed
    cfg.run.out_dir = str(Path(out_dir) / "runs")
    cfg.run.name = f"{slug(variant.name)}-s{seed}"
    return validate(cfg)


def defining_settings(preset: str) -> list[str]:
    """The settings a derived preset (one with ``base:``) makes itself, as ``key=value`` overrides.

    They are re-applied after the spec's common overrides, so that scaling the runs down (common
    overrides) never undoes what makes a variant a variant (e.g. direct-sudoku's N_sup=1).
    """
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = preset_path(preset) or path
    raw = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    if not raw.get("base"):
        return []
    return _overrides({f"{sec}.{k}": v for sec, vals in raw.items() if isinstance(vals, dict)
                       for k, v in vals.items()}, str(path))


def superseded(spec: AblationSpec, variant: Variant, extra_overrides: list[str] | None = None) -> list[str]:
    """Common overrides that a variant's preset replaces by its own defining value (for a notice)."""
    def parse(o: str) -> tuple[str, Any]:
        k, v = o.split("=", 1)
        return k.strip(), yaml.safe_load(v)
    own = dict(parse(o) for o in defining_settings(variant.preset) + variant.overrides)
    return [o for o in spec.overrides + list(extra_overrides or [])
            if parse(o)[0] in own and parse(o)[1] != own[parse(o)[0]]]


def network_calls(cfg: Config) -> int:
    """Calls of the network f in one supervision step (:func:`trm.model.recursive.network_calls`)."""
    from trm.model.recursive import network_calls as calls
    return calls(cfg.model)


def depth(cfg: Config) -> int:
    """Effective depth of one supervision step (paper Table 1): T (n+1) x layers per call."""
    return network_calls(cfg) * cfg.model.num_layers


def forward_passes(cfg: Config) -> int:
    """Forward passes of the model per optimizer step: 2 with Q-learning ACT (the continue target)."""
    return 2 if cfg.model.halting == "qlearn" and cfg.model.N_sup > 1 else 1


def count_params(cfg: Config) -> int:
    """Parameters as the paper counts them (no puzzle table, no init vectors), built on the meta device."""
    import torch

    from trm.model.recursive import RecursiveReasoner
    with torch.device("meta"):
        return RecursiveReasoner(cfg.model).num_params()


def fill_from_dataset(cfg: Config) -> None:
    """Build the dataset if needed and copy its vocabulary / length / identifiers into the model config."""
    from trm.pipeline import ensure_dataset
    from trm.train.run import fill_model_dims
    from trm.data.format import read_metadata
    fill_model_dims(cfg, read_metadata(ensure_dataset(cfg, 0) / "train"))


# ----------------------------------------------------------------------------------------------
# Running

def read_final_eval(run_dir: Path) -> dict[str, float] | None:
    """The last evaluation record of a run (``eval/...`` keys without the prefix) and its last step."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    final, last_step = None, 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        last_step = max(last_step, int(rec.get("step", 0)))
        if "eval/exact" in rec:
            final = {k.split("/", 1)[1]: v for k, v in rec.items() if k.startswith("eval/")}
            final["step"] = rec.get("step", 0)
    if final is not None:
        final["last_step"] = last_step
    return final


def _finished(run_dir: Path) -> bool:
    return (run_dir / "model").is_dir() and read_final_eval(run_dir) is not None


def _same_config(run_dir: Path, cfg: Config) -> bool:
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    return config_from_dict(saved).to_dict() == cfg.to_dict()


def train_variant(cfg: Config, progress: bool = True) -> tuple[Path, float, bool]:
    """Train one run (reusing a finished one, resuming an interrupted one).

    Returns (run dir, wall seconds of its training call(s), reused).
    """
    from trm.io import atomic_write_text
    from trm.pipeline import train
    from trm.train.run import run_dir_for
    run = run_dir_for(cfg)
    timing = run / "ablate-time.json"
    if (run / "config.yaml").is_file() and not _same_config(run, cfg):
        raise TRMError(f"{run} holds a run with another config; choose another --out or delete it")
    spent = json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    if _finished(run):
        return run, spent, True
    resume = (run / "checkpoints" / "last.pt").is_file()
    t0 = time.time()
    try:
        train(cfg, resume=resume, progress=progress)
    finally:
        if run.is_dir():
            atomic_write_text(timing, json.dumps({"seconds": spent + time.time() - t0}))
    if not _finished(run):
        raise TRMError(f"{run} stopped before its final evaluation; run the same `trm ablate` command "
                       "again to resume it")
    return run, spent + time.time() - t0, False


def run_ablation(spec: AblationSpec, out_dir: str | Path, *, extra_overrides: list[str] | None = None,
                 only: list[str] | None = None, progress: bool = True, command: str = "") -> dict:
    """Train every (variant, seed) of ``spec`` and write table.md / table.json / bars.png in ``out_dir``."""
    out = Path(out_dir)
    variants = spec.variants
    if only:
        wanted = {slug(o) for o in only}
        variants = [v for v in variants if slug(v.name) in wanted]
        if not variants:
            raise ConfigError(f"--only {','.join(only)} matches none of: "
                              f"{', '.join(slug(v.name) for v in spec.variants)}")
    jobs = [(v, s) for v in variants for s in spec.seeds]
    rows = []
    for v in variants:
        runs = []
        for s in spec.seeds:
            k = jobs.index((v, s)) + 1
            cfg = variant_config(spec, v, s, out, extra_overrides)
            fill_from_dataset(cfg)
            print(f"[{k}/{len(jobs)}] {v.name} (seed {s}): preset {v.preset}"
                  + (f" {' '.join(v.overrides)}" if v.overrides else "")
                  + f"; depth {depth(cfg)}, {forward_passes(cfg)} forward pass(es)/step, "
                  f"{count_params(cfg):,} params", flush=True)
            kept = superseded(spec, v, extra_overrides)
            if kept:
                print(f"    note: {v.name} keeps its own value for {', '.join(kept)}", flush=True)
            run, secs, reused = train_variant(cfg, progress)
            ev = read_final_eval(run)
            assert ev is not None   # train_variant checked _finished
            runs.append({"seed": s, "run_dir": str(run), "exact": ev["exact"], "accuracy": ev["accuracy"],
                         "steps_trained": ev["last_step"], "seconds": round(secs, 1), "reused": reused,
                         "eval": ev})
            print(f"[{k}/{len(jobs)}] {v.name} (seed {s}): exact {100 * ev['exact']:.1f}%, cells "
                  f"{100 * ev['accuracy']:.1f}% after {ev['last_step']} steps"
                  + f" in {secs:.0f} s" + (" (reused)" if reused else ""), flush=True)
        rows.append(_row(v, cfg, runs))
    result = {"spec": spec.name, "description": spec.description, "command": command,
              "budget": {"steps": spec.steps, "minutes": spec.minutes}, "seeds": spec.seeds,
              "dataset": spec.dataset or None, "common_overrides": spec.overrides + list(extra_overrides or []),
              "rows": rows}
    write_outputs(result, out)
    return result


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0)


def _row(v: Variant, cfg: Config, runs: list[dict]) -> dict:
    exact_m, exact_s = _mean_std([100 * r["exact"] for r in runs])
    acc_m, acc_s = _mean_std([100 * r["accuracy"] for r in runs])
    return {"name": v.name, "preset": v.preset, "overrides": v.overrides, "paper": v.paper,
            "exact": exact_m, "exact_std": exact_s, "cell_accuracy": acc_m, "cell_accuracy_std": acc_s,
            "depth": depth(cfg), "forward_passes": forward_passes(cfg),
            "network_calls": forward_passes(cfg) * network_calls(cfg), "params": count_params(cfg),
            "steps": max(r["steps_trained"] for r in runs),
            "seconds": sum(r["seconds"] for r in runs) / len(runs), "runs": runs}


# ----------------------------------------------------------------------------------------------
# Outputs

def _pm(m: float, s: float, n: int) -> str:
    return f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}"


def table_markdown(result: dict) -> str:
    """The results as a Markdown table in the shape of the paper's Table 1 (plus cell accuracy)."""
    n = len(result["seeds"])
    b = result["budget"]
    budget = " and ".join(x for x in (f"{b['steps']} steps" if b["steps"] else "",
                                      f"{b['minutes']:g} min" if b["minutes"] else "") if x) or "preset length"
    lines = [f"Ablation `{result['spec']}`: {budget} per run, seed(s) {', '.join(map(str, result['seeds']))}"
             + (f", dataset `{result['dataset']['path']}`" if result.get("dataset") else "") + ".", "",
             "| Method | Exact acc. (%) | Cell acc. (%) | Paper (%) | Depth | Forward passes | Net calls / step "
             "| Params | Steps | Time / run (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        paper = f"{r['paper']:.1f}" if r["paper"] is not None else "–"
        lines.append(f"| {r['name']} | {_pm(r['exact'], r['exact_std'], n)} | "
                     f"{_pm(r['cell_accuracy'], r['cell_accuracy_std'], n)} | {paper} | {r['depth']} | "
                     f"{r['forward_passes']} | {r['network_calls']} | {r['params']:,} | {r['steps']} | "
                     f"{r['seconds']:.0f} |")
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out_dir: str | Path) -> None:
    from trm import viz
    from trm.io import atomic_write_text
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.md", table_markdown(result))
    atomic_write_text(out / "table.json", json.dumps(result, indent=2))
    rows = result["rows"]
    viz.bar_chart([r["name"] for r in rows], [r["exact"] for r in rows], out / "bars.png",
                  "exact accuracy (%)", title=f"{result['spec']}: test exact accuracy")
    print(f"table: {out / 'table.md'} (also table.json, bars.png)", flush=True)


# ----------------------------------------------------------------------------------------------
# CLI

def add_parser(sub) -> None:
    p = sub.add_parser("ablate", help="train a list of variants under one budget and tabulate them "
                       "(paper Table 1 shape)", description="Train a list of variants under one budget and write "
                       "a table like the paper's Table 1 (table.md, table.json, bars.png).")
    p.add_argument("spec", nargs="?", help="ablation spec name (trm/presets/suites) or YAML path")
    p.add_argument("--out", default=None, help="output directory (default runs/ablate-SPEC)")
    p.add_argument("--steps", type=int, default=None, help="budget: optimizer steps per run")
    p.add_argument("--minutes", type=float, default=None, help="budget: wall minutes per run")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--data", default=None, help="dataset directory for every variant (replaces the spec's)")
    p.add_argument("--only", default=None, help="comma-separated variants to run, named as in their run "
                   "directories (e.g. hrm,w-1-step-gradient)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra override for every variant, applied with the spec's common overrides "
                   "(repeatable)")
    p.add_argument("--list", action="store_true", help="list the ablation specs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> None:
    if args.list or not args.spec:
        print(json.dumps(list_ablations(), indent=2))
        return
    spec = load_spec(args.spec)
    if args.steps is not None:
        spec.steps = args.steps
    if args.minutes is not None:
        spec.minutes = args.minutes
    if args.seeds:
        try:
            spec.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if args.data:
        spec.dataset = {"path": args.data}
    out = args.out or str(Path("runs") / f"ablate-{spec.name}")
    command = "trm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["ablate"] else ""
    run_ablation(spec, out, extra_overrides=list(args.set), only=args.only.split(",") if args.only else None,
                 progress=not args.quiet, command=command)
