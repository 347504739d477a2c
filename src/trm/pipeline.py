"""A training run wired to the rest of trm: the dataset (built when missing), the evaluation with the
task's metrics, and what a finished run leaves behind (exported weights, pictures, the task's
submission file, report.md). ``trm train`` and the library's ``trm.pipeline.train`` use this.

    from trm.config import load_config
    from trm.pipeline import train
    run_dir = train(load_config("sudoku-cpu"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from trm.config import Config
from trm.data.format import load_identifiers, load_set, read_metadata
from trm.errors import ConfigError, DatasetError
from trm.eval.evaluate import evaluate
from trm.io import atomic_write_text, export_weights
from trm.model.recursive import RecursiveReasoner
from trm.tasks import build_dataset, get
from trm.train import run as training
from trm.train.run import RunData, RunResult, export_config


def ensure_dataset(cfg: Config, rank: int) -> Path:
    """The dataset directory; built first (by rank 0) when missing and ``data.build`` says how."""
    if not cfg.data.path:
        raise ConfigError("data.path is empty: give the dataset directory (data.path=DIR)")
    path = Path(cfg.data.path)
    if not (path / "train" / "dataset.json").is_file():
        if not cfg.data.build:
            raise DatasetError(f"{path}: no dataset here; build one with `trm data ...` or set data.build")
        if rank == 0:
            print(f"building dataset into {path} ...", flush=True)
            build_dataset(path, dict(cfg.data.build))
        if dist.is_initialized():
            dist.barrier()
    return path


def load_run_data(cfg: Config, rank: int = 0) -> RunData:
    path = ensure_dataset(cfg, rank)
    train_meta, test_meta = read_metadata(path / "train"), read_metadata(path / "test")
    if (train_meta.vocab_size, train_meta.seq_len) != (test_meta.vocab_size, test_meta.seq_len):
        raise DatasetError(f"{path}: train and test disagree on vocab_size / seq_len")
    return RunData(path, train_meta, test_meta, load_set(path / "train", cfg.data.train_set),
                   load_set(path / "test", cfg.data.test_set))


class PipelineHooks:
    """:class:`trm.train.run.RunHooks` for a run on a dataset directory."""

    def load_data(self, cfg: Config, rank: int) -> RunData:
        return load_run_data(cfg, rank)

    def evaluate(self, model: RecursiveReasoner, data: RunData, cfg: Config, device: torch.device,
                 shard: tuple[int, int], progress: bool) -> tuple[dict[str, float], Any]:
        res = evaluate(model, data.test, data.test_meta.ignore_label_id,
                       batch_size=cfg.eval.batch_size or min(cfg.train.global_batch_size, 512),
                       halting=cfg.eval.halting, max_examples=cfg.eval.max_examples, device=device,
                       progress=progress, shard=shard)
        extra = get(data.test_meta.task).metrics(data.test, res, data.path)
        return {f"eval/{k}": v for k, v in {**res.metrics, **extra}.items()}, res

    def finish(self, cfg: Config, result: RunResult) -> None:
        write_outputs(cfg, result)


def write_outputs(cfg: Config, result: RunResult) -> None:
    """model/ (safetensors + config.json), solved.png and refinement.png/gif, the task's submission file
    and report.md, from a finished run whose model holds the EMA weights."""
    from trm.report import draw_run_pictures, write_report
    run, data, model, res = result.run_dir, result.data, result.model, result.evaluation
    assert data is not None and model is not None and result.final_metrics is not None
    names = (load_identifiers(data.path) if model.puzzle_emb is not None
             and (Path(data.path) / "identifiers.json").is_file() else None)   # eval on another build matches them
    export_weights(run / "model", model.state_dict(), export_config(cfg, data.train_meta), names)
    pictures = draw_run_pictures(run, model, data.test, data.test_meta, res, cfg.eval.report_puzzles)
    task = get(data.test_meta.task)
    if task.submission:
        atomic_write_text(run / "submission.json", json.dumps(task.make_submission(data.test, res, data.path)))
    write_report(run, final_metrics=result.final_metrics, exact_by_step=res.exact_by_step, pictures=pictures)
    print(f"done: {run} (exact {result.final_metrics.get('eval/exact', 0):.4f}); weights in {run / 'model'}",
          flush=True)


def train(cfg: Config, *, resume: bool = False, run_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Train (or resume) a run on ``cfg.data.path`` and write its outputs; returns the run directory."""
    return training.train(cfg, PipelineHooks(), resume=resume, run_dir=run_dir, progress=progress).run_dir
