"""``trm data TASK``: build a dataset in the HRM/TRM on-disk format (each task adds its own options)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    from trm.tasks import REGISTRY
    p = sub.add_parser("data", help=f"build a dataset ({', '.join(REGISTRY)}) in the HRM/TRM on-disk format")
    kinds = p.add_subparsers(dest="task", required=True)
    common = argparse.ArgumentParser(add_help=False)       # the options every builder takes
    common.add_argument("--out", required=True, help="dataset directory to write (train/, test/, identifiers.json)")
    common.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    common.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    common.add_argument("--force", action="store_true", help="replace a dataset built with other settings")
    for task in REGISTRY.values():
        task.add_build_arguments(kinds.add_parser(task.name, parents=[common], help=task.summary))


def run(args) -> None:
    from trm.tasks import build_dataset, get
    task = get(args.task)
    build = {"task": task.name, **task.build_options(args), "seed": args.seed, "workers": args.workers}
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
