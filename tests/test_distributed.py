"""Multi-process training: 2 CPU processes (gloo) train exactly like one process on the same global batch.

The engine splits the global batch over the ranks, all-gathers the halted masks so the refill follows
the global slot order, averages the network gradients of the per-rank means with DDP (the global mean)
and all-gathers the puzzle-table row gradients (SignSGD). So after a few steps the parameters, the puzzle
table, the gradients of every step and the carry must equal those of a single process (up to float32
rounding of the split matrix products).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from trm.config import load_config
from trm.data.format import PuzzleSet

STEPS = 4
GLOBAL_BATCH = 8
# HRM-like with an idle network (a separate f_y never runs with latents=z: DDP's unused-parameter
# search) and Q-learning halting (a second forward pass, without gradients, before the backward).
VARIANTS = {"trm": [], "idle-net-qlearn": ["model.separate_nets=true", "model.latents=z", "model.halting=qlearn",
                                           "model.grad_scope=one_step"]}


def _config(variant: str = "trm"):
    return load_config(None, [
        "model.hidden_size=32", "model.num_heads=2", "model.mixer=attention", "model.T=2", "model.n=2",
        "model.N_sup=3", "model.vocab_size=6", "model.seq_len=12", "model.num_puzzle_ids=5",
        "model.puzzle_emb_len=2", "model.puzzle_emb_dim=32", "model.forward_dtype=float32",
        "model.halt_exploration_prob=0.5", "model.halt_exploration=per_slot",
        f"train.global_batch_size={GLOBAL_BATCH}", "train.lr=1e-3", "train.lr_warmup_steps=1",
        "train.puzzle_emb_lr=1e-2", "train.weight_decay=0.1", "train.device=cpu", "train.seed=3",
    ] + VARIANTS[variant])


def _dataset(n: int = 40) -> PuzzleSet:
    """Random examples spread over 5 puzzle identifiers (so the sparse table gets rows on both ranks)."""
    rng = np.random.default_rng(0)
    return PuzzleSet(inputs=rng.integers(1, 6, (n, 12), dtype=np.uint8),
                     labels=rng.integers(1, 6, (n, 12), dtype=np.uint8),
                     puzzle_identifiers=(np.arange(n) % 5).astype(np.int32),
                     puzzle_indices=np.arange(n + 1, dtype=np.int32),
                     group_indices=np.arange(n + 1, dtype=np.int32))


def _train(variant: str, out: Path | None = None) -> dict:
    """Run STEPS engine steps in this process (one rank of a group, or alone); return the state."""
    from torch.nn.parallel import DistributedDataParallel
    from trm.model.recursive import RecursiveReasoner
    from trm.train.engine import Engine
    torch.set_num_threads(1)
    cfg = _config(variant)
    torch.manual_seed(cfg.train.seed)
    model = RecursiveReasoner(cfg.model)
    engine = Engine(cfg, model, _dataset(), None, torch.device("cpu"), total_steps=100)
    assert isinstance(engine.forward, DistributedDataParallel) == (engine.world > 1)   # one process: bare
    grads: list[dict[str, torch.Tensor]] = []
    engine.optimizer.register_step_pre_hook(   # the gradients the optimizer sees (after the all-reduce)
        lambda opt, *_: grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                                      if p.grad is not None}))
    halted, metrics = [], []
    for _ in range(STEPS):
        metrics.append(engine.train_step())
        halted.append(engine.carry.halted.clone())
    state = {"params": {k: v.clone() for k, v in model.state_dict().items()}, "grads": grads,
             "halted": halted, "steps": engine.carry.steps.clone(), "metrics": metrics,
             "inputs": engine.carry.inputs.clone(), "stream": engine.stream.state_dict()}
    if out is not None:
        torch.save(state, out)
    return state


def _worker(rank: int, world: int, port: int, out_dir: str, variant: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    from trm.runtime import init_distributed
    import torch.distributed as dist
    assert init_distributed() == (rank, world)
    assert dist.get_backend() == "gloo"
    try:
        _train(variant, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _eval_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank of a sharded evaluation (each rank runs its share; the results are all-gathered)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    from test_evaluate import model_and_data
    from trm.eval.evaluate import evaluate
    from trm.runtime import init_distributed
    import torch.distributed as dist
    torch.set_num_threads(1)
    init_distributed()
    try:
        model, ps, _, _ = model_and_data()
        results = {mode: evaluate(model, ps, None, batch_size=4, halting=mode, shard=(rank, world))
                   for mode in ("fixed", "adaptive")}
        torch.save(results, Path(out_dir) / f"eval{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_processes_equal_one_process(tmp_path, variant):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), variant), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    single = _train(variant)

    # The replicas are identical (same all-reduced gradients, same sparse update).
    for k, v in ranks[0]["params"].items():
        assert torch.equal(v, ranks[1]["params"][k]), k
    # Each step's gradients are the single process's: summed over ranks, not averaged or local.
    for step, (g_dist, g_one) in enumerate(zip(ranks[0]["grads"], single["grads"])):
        assert g_dist.keys() == g_one.keys(), step     # an unused parameter keeps no gradient
        assert variant == "trm" or not any(n.startswith("f_y_separate.") for n in g_one)   # the idle network
        for name, g in g_one.items():
            assert _rel(g_dist[name], g) < 1e-4, (step, name, _rel(g_dist[name], g))
    # Parameters, the sparse puzzle table and the carry follow (the global slot order is kept).
    for name, p in single["params"].items():
        assert _rel(ranks[0]["params"][name], p) < 1e-4, (name, _rel(ranks[0]["params"][name], p))
    table = single["params"]["puzzle_emb.weight"]
    assert table.abs().sum() > 0 and (table != 0).any(1).sum() >= 3    # several rows were trained
    for step in range(STEPS):
        assert torch.equal(torch.cat([r["halted"][step] for r in ranks]), single["halted"][step])
    assert torch.equal(torch.cat([r["steps"] for r in ranks]), single["steps"])
    assert torch.equal(torch.cat([r["inputs"] for r in ranks]), single["inputs"])
    assert ranks[0]["stream"] == ranks[1]["stream"] == single["stream"]
    # Metrics are reduced over the ranks: every rank reports the global figures.
    for m_dist, m_one in zip(ranks[1]["metrics"], single["metrics"]):
        for key in ("lm_loss", "halt_loss", "finished", "exact", "accuracy"):
            assert m_dist[key] == pytest.approx(m_one[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("separate", [False, True])
def test_unused_parameters_are_predicted(separate):
    """DDP is told to look for unused parameters exactly when a backward leaves some without a gradient."""
    import itertools
    from trm.model.recursive import RecursiveReasoner
    from trm.train.engine import has_unused_params
    for latents, recursion, grad_scope, n in itertools.product(("yz", "z", "multi_z"), ("recursive", "direct"),
                                                               ("last_recursion", "one_step"), (0, 2)):
        if latents == "multi_z" and n == 0:
            continue
        cfg = load_config(None, [
            "model.hidden_size=16", "model.num_heads=2", "model.num_layers=1", "model.T=2", f"model.n={n}",
            "model.vocab_size=6", "model.seq_len=8", "model.num_puzzle_ids=3", "model.puzzle_emb_len=1",
            "model.puzzle_emb_dim=16", "model.forward_dtype=float32", f"model.separate_nets={separate}",
            f"model.latents={latents}", f"model.recursion={recursion}", f"model.grad_scope={grad_scope}"]).model
        model = RecursiveReasoner(cfg).train()
        out = model(torch.randint(1, 6, (2, 8)), torch.tensor([0, 1]), *model.initial_state(2))
        (out.logits.sum() + out.q_halt.sum()).backward()
        unused = [name for name, p in model.named_parameters() if p.grad is None]
        assert has_unused_params(cfg) == bool(unused), (latents, recursion, grad_scope, n, unused)


def test_sharded_evaluation_equals_one_process(tmp_path):
    """Evaluation split over 2 ranks (23 examples: 11 + 12) returns, on every rank, the single-process result."""
    from test_evaluate import model_and_data
    from trm.eval.evaluate import evaluate
    mp.start_processes(_eval_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    model, ps, _, _ = model_and_data()
    for mode in ("fixed", "adaptive"):
        one = evaluate(model, ps, None, batch_size=4, halting=mode)
        for rank in range(2):
            got = torch.load(tmp_path / f"eval{rank}.pt", weights_only=False)[mode]
            np.testing.assert_array_equal(got.preds, one.preds)
            np.testing.assert_array_equal(got.steps, one.steps)
            np.testing.assert_allclose(got.halt_prob, one.halt_prob, rtol=1e-6)
            np.testing.assert_allclose(got.exact_by_step, one.exact_by_step)
            assert got.metrics == pytest.approx(one.metrics), mode


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_train_end_to_end(tmp_path):
    """`torchrun --nproc-per-node 2 -m trm train`: trains, evaluates and checkpoints once, exits 0."""
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    data = tmp_path / "data"
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m", "trm", "train",
           "sudoku-cpu", f"data.path={data}", "data.build.train_size=30", "data.build.num_aug=1",
           "data.build.test_size=16", "data.build.size=4", "model.hidden_size=32", "model.puzzle_emb_dim=32",
           "model.num_heads=2",
           "model.T=1", "model.n=1", "model.N_sup=2", "train.global_batch_size=8", "train.max_steps=6",
           "train.log_every=2", "train.checkpoint_every=0", f"run.out_dir={tmp_path / 'runs'}",
           "run.name=ddp", "eval.report_puzzles=0", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run = tmp_path / "runs" / "ddp"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "model").is_dir()
    assert "2 processes" in proc.stdout and "precision: " in proc.stdout
    assert proc.stdout.count("done:") == 1          # the final evaluation / export is reported once
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len([ln for ln in lines if '"eval/' in ln]) == 1      # one writer: rank 0
