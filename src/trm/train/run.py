"""The training run: model, engine, logging, periodic evaluation, checkpoints, signals.

:class:`TrainingRun` sets up, steps, evaluates, saves and finishes one run; it knows nothing of tasks,
datasets on disk or reports. What it needs from them comes through :class:`RunHooks` (the data, the
evaluation with its task metrics, the outputs written at the end), which :mod:`trm.pipeline` supplies:

    trm train PRESET [key=value ...] [--resume]
    torchrun --nproc-per-node N -m trm train PRESET ...
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.distributed as dist
import yaml
from tqdm.auto import tqdm

from trm import runtime
from trm.config import Config
from trm.errors import ConfigError, DatasetError, TRMError
from trm.io import atomic_write_text, load_checkpoint, remove_stale_temporaries, save_checkpoint
from trm.model.recursive import RecursiveReasoner
from trm.train.engine import Engine

if TYPE_CHECKING:
    from trm.data.format import DatasetMetadata, PuzzleSet


# ----------------------------------------------------------------------------------------------
# Set-up helpers

def fill_model_dims(cfg: Config, meta: DatasetMetadata) -> None:
    """Copy vocab, sequence length and identifier count from the dataset; refuse contradictions."""
    m = cfg.model
    for key, value in (("vocab_size", meta.vocab_size), ("seq_len", meta.seq_len),
                       ("num_puzzle_ids", meta.num_puzzle_identifiers)):
        current = getattr(m, key)
        if current and current != value:
            raise ConfigError(f"model.{key}={current} but the dataset has {value}")
        setattr(m, key, value)


def total_steps_for(cfg: Config, meta: DatasetMetadata) -> int:
    """Spec section 5: epochs x groups x mean examples per puzzle / global batch."""
    if cfg.train.max_steps is not None:
        return cfg.train.max_steps
    return max(1, int(cfg.train.epochs * meta.total_groups * meta.mean_puzzle_examples / cfg.train.global_batch_size))


def build_model(cfg: Config, device: torch.device | str = "cpu") -> RecursiveReasoner:
    torch.manual_seed(cfg.train.seed)
    return RecursiveReasoner(cfg.model).to(device)


def check_writable(directory: Path, need_bytes: int = 50 << 20) -> None:
    """Fail before training if the run directory cannot be written or the disk is nearly full.

    Probes the nearest existing ancestor first, so a failed check leaves no empty directory behind.
    """
    existing = next((p for p in [directory, *directory.parents] if p.exists()), Path("/"))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        probe = existing / f".trm-write-test-{os.getpid()}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as e:
        raise TRMError(f"cannot write to {directory}: {e.strerror or e}") from None
    free = os_free_bytes(existing)
    if free < need_bytes:
        raise TRMError(f"{directory}: only {free >> 20} MiB free on this disk; "
                       f"about {need_bytes >> 20} MiB are needed for checkpoints")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TRMError(f"cannot write to {directory}: {e.strerror or e}") from None


def os_free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# ----------------------------------------------------------------------------------------------
# Logging

class MetricsLogger:
    """metrics.jsonl (append, one object per line) + TensorBoard events (+ wandb if asked)."""

    def __init__(self, run_dir: Path, enabled: bool, cfg: Config):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tb"))
        except ImportError:
            print("warning: tensorboard not installed; TensorBoard events are not written")
        if cfg.train.wandb:
            import wandb
            self.wandb = wandb.init(project="trm", name=run_dir.name, config=cfg.to_dict())

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
        if self.wandb:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()


class StopRequested(Exception):
    """Raised by :class:`StopSignal` when SIGTERM / SIGINT arrive outside the step loop."""


class StopSignal:
    """SIGTERM / SIGINT stop a run cleanly in every phase of ``trm train``.

    Inside :meth:`deferred` (the step loop) a signal sets ``requested``; the loop saves a checkpoint
    and stops at the end of the step. Elsewhere (data build, set-up, the final evaluation and export)
    it raises :class:`StopRequested` at once; the checkpoint written before the final evaluation keeps
    the trained state, so ``--resume`` evaluates and exports it. A second SIGINT exits at once.
    """

    def __init__(self):
        self.requested: str | None = None
        self.phase = "set-up"
        self._defer = False
        self._old: dict = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    @contextlib.contextmanager
    def deferred(self):
        self._defer, self.phase = True, "training"
        try:
            yield self
        finally:
            self._defer = False

    @contextlib.contextmanager
    def suspended(self):
        """The previous handlers, for work whose worker pools must see the signals themselves (the
        data build: SIGINT interrupts it, SIGTERM ends the process; the failed start is cleaned up)."""
        current = {sig: signal.signal(sig, old) for sig, old in self._old.items()}
        try:
            yield
        finally:
            for sig, handler in current.items():
                signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if not self._defer:
            raise StopRequested(self.requested)
        print(f"\n{self.requested} received: saving a checkpoint and stopping "
              "(press Ctrl-C again to exit at once)", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------------------------

@dataclass
class RunData:
    """What a run trains and evaluates on (given by :meth:`RunHooks.load_data`)."""

    path: Path
    train_meta: DatasetMetadata
    test_meta: DatasetMetadata
    train: PuzzleSet
    test: PuzzleSet


@dataclass
class RunResult:
    """A finished (or stopped) run: its directory, the final evaluation and the model holding the EMA
    weights (None when the run stopped before its final evaluation)."""

    run_dir: Path
    step: int
    final_metrics: dict[str, float] | None = None
    evaluation: Any = None                 # the evaluator's result of the final evaluation
    model: RecursiveReasoner | None = None
    data: RunData | None = None
    stopped: str | None = None             # the signal (or "peer") that stopped it


class RunHooks(Protocol):
    """What a run asks of the rest of trm (see :class:`trm.pipeline.PipelineHooks`)."""

    def load_data(self, cfg: Config, rank: int) -> RunData: ...

    def evaluate(self, model: RecursiveReasoner, data: RunData, cfg: Config, device: torch.device,
                 shard: tuple[int, int], progress: bool) -> tuple[dict[str, float], Any]:
        """Metrics (``eval/...``, task metrics included) and the evaluator's result."""
        ...

    def finish(self, cfg: Config, result: RunResult) -> None:
        """Rank 0, after the final evaluation: export, pictures, task artefacts, report."""
        ...


def run_dir_for(cfg: Config) -> Path:
    name = cfg.run.name or f"{cfg.preset or 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.run.out_dir) / name


def export_config(cfg: Config, meta: DatasetMetadata) -> dict:
    """config.json of an exported model: the resolved config plus what a solver needs of the data."""
    return {"trm_version": __import__("trm").__version__, "config": cfg.to_dict(),
            "data": {"task": meta.task, "grid_shape": meta.grid_shape, "vocab_size": meta.vocab_size,
                     "seq_len": meta.seq_len, "ignore_label_id": meta.ignore_label_id,
                     "num_puzzle_identifiers": meta.num_puzzle_identifiers}}


def train(cfg: Config, hooks: RunHooks, *, resume: bool = False, run_dir: str | Path | None = None,
          progress: bool = True) -> RunResult:
    """Train (or resume) a run with ``hooks`` (:func:`trm.pipeline.train` supplies them).

    Nothing is written before every check that can fail early has passed (the resume is compatible,
    the run directory is writable and not in use); a start that fails leaves no empty run directory.
    """
    rank, world_size = runtime.init_distributed()
    main = rank == 0
    run = Path(run_dir) if run_dir else run_dir_for(cfg)
    ckpt_path = run / "checkpoints" / "last.pt"
    state = None
    if resume:
        if not ckpt_path.exists():
            raise TRMError(f"--resume: no checkpoint at {ckpt_path}")
        state = load_checkpoint(ckpt_path, map_location=runtime.resolve_device(cfg.train.device))
        check_resumable(cfg, state)                       # before any data is built or file written
    elif main and ckpt_path.exists():
        raise TRMError(f"{run} already holds a run; pass --resume to continue it or choose another run.name")
    rt = runtime.setup(cfg.train.device, cfg.model.forward_dtype, compile=cfg.train.compile,
                       hidden_size=cfg.model.hidden_size, seq_len=cfg.model.seq_len or 81)
    cfg.model.forward_dtype = rt.precision.dtype     # saved in config.yaml: resume and eval use it too
    created = main and not run.exists()
    lock = None
    try:
        with StopSignal() as stop:
            if main:
                check_writable(run)                           # before hours of data building or training
                lock = RunLock(run)
                remove_stale_temporaries(ckpt_path.parent)
            try:
                return TrainingRun(cfg, hooks, rt, run, state, stop, progress).execute()
            except StopRequested as e:
                if stop.phase == "final evaluation":
                    print(f"stopped by {e} during the final evaluation and export; the trained state is in "
                          f"{ckpt_path}: `trm train --resume --run-dir {run}` evaluates and exports it", flush=True)
                elif stop.phase == "training":
                    print(f"stopped by {e} while saving; resume with --resume", flush=True)
                else:
                    print(f"stopped by {e} before training started; nothing to resume", flush=True)
                    if created:
                        remove_run_start(run)
                return RunResult(run, 0, stopped=str(e))
    except BaseException:
        if created:
            remove_if_empty(run)
        raise
    finally:
        if lock is not None:
            lock.release()


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the log lines a killed run wrote after its last checkpoint (``step``), so that a resumed
    run does not log those steps twice. Unreadable lines are kept."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            if int(json.loads(line).get("step", 0)) > step:
                continue
        except (ValueError, AttributeError, TypeError):
            pass
        kept.append(line)
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))


def check_resumable(cfg: Config, state: dict) -> None:
    """Refuse a resume whose config cannot continue the checkpoint, before anything is built or written:
    another dataset or preset, another global batch (the carried slots are laid out for it), another
    model. A requested ``forward_dtype: auto`` takes the checkpoint's resolved precision."""
    saved = state.get("config") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise TRMError("--resume: the checkpoint holds no config")
    now = cfg.to_dict()
    checks = [("data.path", saved.get("data", {}).get("path"), cfg.data.path),
              ("preset", saved.get("preset"), cfg.preset),
              ("train.global_batch_size", saved.get("train", {}).get("global_batch_size"),
               cfg.train.global_batch_size)]
    for key, before, after in checks:
        if before is not None and before != after:
            raise ConfigError(f"--resume: {key}={after!r} but the checkpoint was trained with {before!r}; "
                              "resume with the same value or start a new run (another run.name)")
    saved_model = dict(saved.get("model") or {})
    if cfg.model.forward_dtype == "auto" and saved_model.get("forward_dtype") in ("bfloat16", "float32"):
        cfg.model.forward_dtype = saved_model["forward_dtype"]
        now = cfg.to_dict()
    from_data = ("vocab_size", "seq_len", "num_puzzle_ids")      # filled from the dataset when 0
    diff = [k for k, v in saved_model.items()
            if v != now["model"].get(k) and not (k in from_data and not now["model"].get(k))]
    if diff:
        raise ConfigError(f"--resume: the model config differs from the checkpoint's ({', '.join(diff)})")


class RunLock:
    """An exclusive lock on a run directory (``.lock``, flock), so two ``trm train`` never share one."""

    def __init__(self, run: Path):
        import fcntl
        self.path = run / ".lock"
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise TRMError(f"{run} is in use by {holder}; wait for it to finish or choose another "
                           "run.name") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} (trm train, started {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        self.file.flush()

    def release(self) -> None:
        import fcntl
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def remove_if_empty(run: Path) -> None:
    """Remove a run directory this process created if it holds nothing but its lock (a failed start)."""
    try:
        if all(p.name == ".lock" for p in run.iterdir()):
            (run / ".lock").unlink(missing_ok=True)
            run.rmdir()
    except OSError:
        pass


def remove_run_start(run: Path) -> None:
    """Remove what a run stopped before its first step wrote (its config, an empty log), then the
    directory if nothing else is left."""
    if not (run / "checkpoints" / "last.pt").exists():
        for name in ("config.yaml", "metrics.jsonl"):
            (run / name).unlink(missing_ok=True)
    remove_if_empty(run)


class TrainingRun:
    """One run: :meth:`setup` (data, model, engine, resume), :meth:`step` (one optimizer step with its
    logging), :meth:`evaluate`, :meth:`save`, :meth:`finish` (the final evaluation and the hooks' outputs);
    :meth:`execute` runs them in order, stopping on the time budget or a signal."""

    def __init__(self, cfg: Config, hooks: RunHooks, rt: runtime.Runtime, run: Path, state: dict | None,
                 stop: StopSignal, progress: bool) -> None:
        self.cfg, self.hooks, self.rt, self.run, self.state, self.stop = cfg, hooks, rt, run, state, stop
        self.main = rt.rank == 0
        self.progress = progress and self.main
        self.ckpt_path = run / "checkpoints" / "last.pt"
        self.elapsed_before = float(state.get("elapsed", 0.0)) if state is not None else 0.0
        self.t_start = time.time()

    # -- set up ----------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, main, run = self.cfg, self.main, self.run
        with self.stop.suspended():
            self.data = data = self.hooks.load_data(cfg, self.rt.rank)
        fill_model_dims(cfg, data.train_meta)
        if not data.test_meta.task:
            raise DatasetError(f"{data.path}: cannot tell the task from vocab {data.test_meta.vocab_size} / "
                               f"seq_len {data.test_meta.seq_len}; add \"task\" to its dataset.json files")
        if data.test_meta.num_puzzle_identifiers > cfg.model.num_puzzle_ids:
            raise DatasetError("test split uses more puzzle identifiers than the train split")
        self.total = total = total_steps_for(cfg, data.train_meta)
        self.model = build_model(cfg, self.rt.device)
        self.engine = Engine(cfg, self.model, data.train, data.train_meta.ignore_label_id, self.rt.device, total)
        if self.state is not None:
            check_resumable(cfg, self.state)                  # again, with the dimensions from the dataset
            self.engine.load_state_dict(self.state["engine"])
            if main:
                truncate_metrics(run / "metrics.jsonl", self.engine.step)
                print(f"resumed {run} at step {self.engine.step}/{total}", flush=True)
        if main:
            atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            print(f"run {run}: {self.model.num_params():,} parameters, {total:,} steps\n{self.rt.describe()}",
                  flush=True)
        meta = data.train_meta
        steps_per_epoch = meta.total_groups * meta.mean_puzzle_examples / cfg.train.global_batch_size
        self.eval_every = max(1, round(cfg.train.eval_interval * steps_per_epoch)) if cfg.train.eval_interval else 0
        self.logger = MetricsLogger(run, main, cfg)

    # -- the pieces ------------------------------------------------------------------------------
    def save(self) -> None:
        if self.main:
            save_checkpoint(self.ckpt_path, {"engine": self.engine.state_dict(), "config": self.cfg.to_dict(),
                                             "elapsed": self.elapsed_before + time.time() - self.t_start})

    def evaluate(self) -> tuple[dict[str, float], Any]:
        """Evaluate the EMA weights (the hooks add the task metrics); logged and shown on rank 0."""
        engine, rt = self.engine, self.rt
        ctx = engine.ema.swap(self.model) if engine.ema else contextlib.nullcontext()
        with ctx:
            values, res = self.hooks.evaluate(self.model, self.data, self.cfg, rt.device, (rt.rank, rt.world_size),
                                              self.progress)
        self.logger.log(engine.step, values)
        if self.main:
            headline = ("exact", "exact@1", "accuracy", "adaptive_exact", "adaptive_steps")
            extra = [k for k in values if k.split("/")[1] not in res.metrics]
            shown = ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in values.items()
                              if k.split("/")[1] in headline or k in extra)
            tqdm.write(f"[eval step {engine.step}] {shown}")
        return values, res

    def step(self, bar: Any) -> None:
        """One optimizer step, logged every ``train.log_every`` steps."""
        cfg, engine = self.cfg, self.engine
        m = engine.train_step()
        bar.update(1)
        if engine.step % cfg.train.log_every == 0 or engine.step == 1:
            self.logger.log(engine.step, {f"train/{k}": v for k, v in m.items()})
            bar.set_postfix(loss=f"{m.get('lm_loss', float('nan')):.3f}", exact=f"{m.get('exact', 0):.3f}",
                            steps=f"{m.get('steps', 0):.1f}")
            if cfg.train.max_minutes and self.progress:     # the bar's end (and ETA) follows the time budget
                spent = time.time() - self.t_start
                left = 60 * cfg.train.max_minutes - self.elapsed_before - spent
                done_here = engine.step - self.first_step
                if done_here > 0 and spent > 0:
                    bar.total = min(self.total, engine.step + max(0, int(left * done_here / spent)))
                    bar.refresh()

    def _should_stop(self) -> tuple[str | None, bool]:
        """(the signal that stops the run, whether the time budget is spent); every rank agrees."""
        cfg = self.cfg
        over_time = bool(cfg.train.max_minutes) and (self.elapsed_before + time.time() - self.t_start
                                                     > 60 * cfg.train.max_minutes)
        stop_now = self.stop.requested
        if self.rt.world_size > 1:   # every rank must agree to stop at the same step
            flag = torch.tensor([1.0 if (stop_now or over_time) else 0.0], device=self.rt.device)
            dist.all_reduce(flag)
            stop_now = stop_now or ("peer" if flag.item() > 0 else None)
        return stop_now, over_time

    def finish(self) -> RunResult:
        """The final evaluation, then (rank 0) the hooks' outputs with the EMA weights in the model."""
        final, res = self.evaluate()
        result = RunResult(self.run, self.engine.step, final, res, self.model, self.data)
        if self.main:
            ctx = self.engine.ema.swap(self.model) if self.engine.ema else contextlib.nullcontext()
            with ctx:
                self.hooks.finish(self.cfg, result)
        return result

    # -- the whole run ---------------------------------------------------------------------------
    def execute(self) -> RunResult:
        self.setup()
        cfg, engine = self.cfg, self.engine
        bar = tqdm(total=self.total, initial=engine.step, desc="train", disable=not self.progress,
                   dynamic_ncols=True)
        self.first_step = engine.step
        stopped = None
        with self.stop.deferred():
            while engine.step < self.total:
                self.step(bar)
                if self.eval_every and engine.step % self.eval_every == 0 and engine.step < self.total:
                    self.evaluate()
                    self.save()
                elif cfg.train.checkpoint_every and engine.step % cfg.train.checkpoint_every == 0:
                    self.save()
                stop_now, over_time = self._should_stop()
                if stop_now:
                    stopped = stop_now
                    break
                if over_time:
                    tqdm.write(f"time budget of {cfg.train.max_minutes} min reached at step {engine.step}")
                    break
        bar.close()
        self.save()
        if stopped:
            self.logger.close()
            if self.main:
                print(f"stopped by {stopped} at step {engine.step}; resume with --resume", flush=True)
            return RunResult(self.run, engine.step, stopped=str(stopped))
        self.stop.phase = "final evaluation"                 # a signal from here on: the checkpoint has it all
        try:
            return self.finish()
        finally:
            self.logger.close()
