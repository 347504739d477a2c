"""Time and size of the ARC dataset build (and, optionally, of scoring its test split).

    python benchmarks/bench_arc_build.py                        # full ARC-AGI-1: 800 tasks x 1000 versions
    python benchmarks/bench_arc_build.py --conceptarc /work/shared/data/conceptarc/conceptarc_corpus.json
    python benchmarks/bench_arc_build.py --num-aug 50 --tasks 20 --score   # quick

Prints the figures and one JSON line. The output goes to --out (default under /tmp) and is deleted
unless --keep.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from trm.tasks.arc.data import build_arc_dataset, load_arc, load_conceptarc
from trm.data.format import load_identifiers, load_set, read_metadata


def _task_subset(spec: str | None, version: str, conceptarc: str | None) -> list[str] | None:
    if spec is None:
        return None
    if not spec.isdigit():
        return spec.split(",")
    n = int(spec)
    train, ev = load_arc(version)
    names = sorted(train)[:n] + sorted(ev)[:n]
    if conceptarc:
        names += sorted(load_conceptarc(conceptarc))[:n]
    return names


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _score(out: Path) -> dict:
    from types import SimpleNamespace

    from trm.tasks.arc.scoring import score_arc_predictions
    ps = load_set(out / "test", mmap=True)
    preds = np.asarray(ps.labels)
    halt = np.random.default_rng(0).random(len(preds))
    t0 = time.perf_counter()
    res = score_arc_predictions(ps, SimpleNamespace(preds=preds, halt_prob=halt), out)
    return {"score_s": time.perf_counter() - t0, "score_predictions": len(preds), "pass@1_on_labels": res["pass@1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default="arc1", choices=["arc1", "arc2"])
    ap.add_argument("--num-aug", type=int, default=1000)
    ap.add_argument("--tasks", default=None, help="N (first N tasks of each source) or a comma list of ids")
    ap.add_argument("--conceptarc", default=None, help="path of conceptarc_corpus.json (or the repository)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/trm_bench_arc")
    ap.add_argument("--keep", action="store_true", help="keep the built dataset")
    ap.add_argument("--score", action="store_true", help="also time scoring the test split (labels as answers)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    out = Path(args.out)
    tasks = _task_subset(args.tasks, args.version, args.conceptarc)
    t0 = time.perf_counter()
    build_arc_dataset(out, version=args.version, conceptarc=args.conceptarc, num_aug=args.num_aug,
                      seed=args.seed, tasks=tasks, workers=args.workers, progress=not args.quiet)
    build_s = time.perf_counter() - t0
    ids = load_identifiers(out)
    fig = {"version": args.version, "num_aug": args.num_aug, "tasks": args.tasks, "conceptarc": bool(args.conceptarc),
           "build_s": round(build_s, 1), "disk_bytes": _du(out), "identifiers": len(ids),
           "puzzle_table_bytes": len(ids) * 512 * 4}
    for split in ("train", "test"):
        m = read_metadata(out / split)
        fig[f"{split}_groups"] = m.total_groups
        fig[f"{split}_puzzles"] = m.total_puzzles
        fig[f"{split}_examples"] = m.extra["examples"]
        fig["versions_per_task"] = m.extra["versions_per_task"]
        fig["removed_leaking_pairs"] = m.extra["removed_leaking_pairs"]
    fig["peak_rss_main_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fig["peak_rss_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if args.score:
        fig.update(_score(out))
    if not args.keep:
        shutil.rmtree(out)

    gb = 1024 ** 3
    print(f"ARC build ({args.version}, num_aug={args.num_aug}, tasks={args.tasks or 'all'}, "
          f"conceptarc={'yes' if args.conceptarc else 'no'}): {build_s:.1f} s", file=sys.stderr)
    print(f"  on disk {fig['disk_bytes'] / gb:.2f} GiB; train {fig['train_examples']:,} examples in "
          f"{fig['train_puzzles']:,} puzzles / {fig['train_groups']} groups; test {fig['test_examples']:,} "
          f"examples in {fig['test_puzzles']:,} puzzles / {fig['test_groups']} groups", file=sys.stderr)
    print(f"  {fig['identifiers']:,} puzzle identifiers -> puzzle table 512 x fp32 = "
          f"{fig['puzzle_table_bytes'] / gb:.2f} GiB; versions per task {fig['versions_per_task']}", file=sys.stderr)
    if args.score:
        print(f"  scoring {fig['score_predictions']:,} answers: {fig['score_s']:.1f} s", file=sys.stderr)
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
