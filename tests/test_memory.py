"""Memory of one supervision step: the peak does not grow with T (the T-1 recursions without gradients
keep nothing), it grows with n (the n+1 calls with gradients keep their activations), and nothing
accumulates across training steps (the carry is detached).

Memory is measured exactly, allocator-independent: a dispatch mode sees every tensor an operation
creates and follows its storage until it is freed (peak and current bytes of live tensor storage).
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from trm.config import ModelConfig, load_config
from trm.data.format import PuzzleSet
from trm.model.recursive import RecursiveReasoner


class LiveBytes(TorchDispatchMode):
    """Bytes of tensor storage created inside the mode and still alive: ``current`` and ``peak``."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t.is_meta:
                st = t.untyped_storage()
                key = id(st)
                if key not in self.live and st.nbytes():
                    self.live[key] = st.nbytes()
                    self.current += st.nbytes()
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(st, self._free, key)
        return out


def _model(T: int, n: int, mixer: str = "attention", dtype: str = "bfloat16", **kw) -> RecursiveReasoner:
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=32, num_heads=2, mixer=mixer, pos_encoding="rope" if mixer == "attention" else "none",
                      T=T, n=n, vocab_size=11, seq_len=16, num_puzzle_ids=1, puzzle_emb_len=2,
                      puzzle_emb_dim=32, forward_dtype=dtype, **kw)
    return RecursiveReasoner(cfg)


def _train_step_peak(model: RecursiveReasoner, batch: int = 2) -> int:
    """Peak live bytes of one supervision step: forward, loss, backward (gradients included)."""
    x = torch.randint(1, 11, (batch, 16))
    ids = torch.zeros(batch, dtype=torch.long)
    y, z = model.initial_state(batch)
    model.train()
    with LiveBytes() as mem:
        out = model(x, ids, y, z)
        (out.logits.square().mean() + out.q_halt.sum()).backward()
        del out
    return mem.peak


@pytest.mark.parametrize("mixer", ["attention", "mlp"])
def test_training_peak_does_not_grow_with_T(mixer):
    peaks = {T: _train_step_peak(_model(T, 3, mixer)) for T in (1, 2, 4)}
    assert peaks[2] == peaks[4], peaks
    assert peaks[1] <= peaks[4]


def test_training_peak_grows_with_n():
    """The measure sees activations: n+1 calls keep theirs, so the peak grows with n (at fixed T)."""
    p1, p6 = _train_step_peak(_model(2, 1)), _train_step_peak(_model(2, 6))
    assert p6 > 1.5 * p1


def test_inference_peak_does_not_grow_with_T_or_steps():
    peaks = []
    for T in (2, 4):
        model = _model(T, 2).eval()
        x, ids = torch.randint(1, 11, (2, 16)), torch.zeros(2, dtype=torch.long)
        y, z = model.initial_state(2)
        with torch.inference_mode(), LiveBytes() as mem:
            per_step = []
            for _ in range(3):                       # supervision steps, the carry fed back
                out = model(x, ids, y, z)
                y, z = out.y, out.z
                del out
                per_step.append(mem.current)
        assert per_step[0] == per_step[1] == per_step[2]      # nothing accumulates across steps
        peaks.append(mem.peak)
    assert peaks[0] == peaks[1]


def test_engine_steps_do_not_accumulate_memory():
    """Across optimizer steps the live memory is flat (the carry holds no autograd graph)."""
    from trm.train.engine import Engine
    cfg = load_config(None, ["model.hidden_size=32", "model.num_heads=2", "model.T=2", "model.n=2",
                             "model.vocab_size=6", "model.seq_len=12", "model.num_puzzle_ids=1",
                             "model.N_sup=4", "train.global_batch_size=4", "train.device=cpu"])
    rng = np.random.default_rng(0)
    n = 32
    data = PuzzleSet(rng.integers(1, 6, (n, 12), dtype=np.uint8), rng.integers(1, 6, (n, 12), dtype=np.uint8),
                     np.zeros(n, np.int32), np.arange(n + 1, dtype=np.int32), np.arange(n + 1, dtype=np.int32))
    torch.manual_seed(0)
    engine = Engine(cfg, RecursiveReasoner(cfg.model), data, None, torch.device("cpu"), total_steps=100)
    engine.train_step()                                   # optimizer state now exists
    with LiveBytes() as mem:
        after = []
        for _ in range(3):
            engine.train_step()
            after.append(mem.current)
    # Flat up to the few bytes of small per-step tensors (refill indices: their length varies).
    assert max(after) - min(after) < 0.01 * min(after), after
