"""The evaluator against a hand-written reference: every example run for all N_sup steps at once.

Labels are taken from the model's own answers at chosen steps, so exact accuracy is non-trivial and known
in advance for every step; a random halting head makes examples halt at different steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trm.config import load_config
from trm.data.format import PuzzleSet
from trm.eval.evaluate import evaluate
from trm.model.recursive import RecursiveReasoner

N, SEQ, VOCAB, N_SUP = 23, 10, 6, 5


def model_and_data(seed: int = 0) -> tuple[RecursiveReasoner, PuzzleSet, np.ndarray, np.ndarray]:
    """A small float32 model with a random halting head, a dataset, and the reference answers and halts."""
    cfg = load_config(None, [
        "model.hidden_size=32", "model.num_heads=2", "model.mixer=attention", "model.T=2", "model.n=1",
        f"model.N_sup={N_SUP}", f"model.vocab_size={VOCAB}", f"model.seq_len={SEQ}", "model.num_puzzle_ids=3",
        "model.puzzle_emb_len=2", "model.puzzle_emb_dim=32", "model.forward_dtype=float32"]).model
    torch.manual_seed(seed)
    model = RecursiveReasoner(cfg).eval()
    with torch.no_grad():
        model.halt_head.weight.normal_(0, 1.0)
        model.halt_head.bias.zero_()
    rng = np.random.default_rng(seed)
    inputs = rng.integers(1, VOCAB, (N, SEQ), dtype=np.uint8)
    pids = (np.arange(N) % 3).astype(np.int32)

    with torch.inference_mode():   # reference: the whole set as one batch, every step
        y, z = model.initial_state(N, "cpu")
        answers, halts = [], []
        for _ in range(N_SUP):
            out = model(torch.from_numpy(inputs.astype(np.int32)), torch.from_numpy(pids), y, z)
            y, z = out.y, out.z
            answers.append(out.logits.argmax(-1).numpy().astype(np.uint8))
            halts.append((out.q_halt > 0).numpy())
    answers, halts = np.stack(answers, 1), np.stack(halts, 1)          # [N, N_sup, S], [N, N_sup]

    # Label i = the model's answer at step k_i (or a wrong grid), so exactness per step is known.
    k_label = rng.integers(0, N_SUP + 1, N)
    labels = np.where(k_label[:, None] < N_SUP, answers[np.arange(N), np.minimum(k_label, N_SUP - 1)],
                      (answers[:, -1] + 1) % VOCAB).astype(np.uint8)
    ps = PuzzleSet(inputs=inputs, labels=labels, puzzle_identifiers=pids,
                   puzzle_indices=np.arange(N + 1, dtype=np.int32), group_indices=np.arange(N + 1, dtype=np.int32))
    return model, ps, answers, halts


def expected(answers: np.ndarray, halts: np.ndarray, labels: np.ndarray) -> dict:
    exact_at = (answers == labels[:, None]).all(-1)                          # [N, N_sup]
    halted_early = halts[:, :-1]
    first = np.where(halted_early.any(1), halted_early.argmax(1) + 1, N_SUP)  # 1-based, before N_sup
    return {"exact_at": exact_at, "first": first, "fixed_exact": exact_at[:, -1].mean(),
            "adaptive_exact": exact_at[np.arange(N), first - 1].mean(), "adaptive_steps": first.mean()}


@pytest.mark.parametrize("batch_size", [5, 64])
def test_fixed_mode_matches_reference(batch_size):
    model, ps, answers, halts = model_and_data()
    e = expected(answers, halts, ps.labels)
    assert 0 < e["fixed_exact"] < 1 and 1 < e["adaptive_steps"] < N_SUP      # the check is not vacuous
    res = evaluate(model, ps, None, batch_size=batch_size, halting="fixed")
    np.testing.assert_array_equal(res.preds, answers[:, -1])
    np.testing.assert_allclose(res.exact_by_step, e["exact_at"].mean(0))
    assert (res.steps == N_SUP).all()
    assert res.metrics["exact"] == pytest.approx(e["fixed_exact"])
    assert res.metrics["adaptive_exact"] == pytest.approx(e["adaptive_exact"])
    assert res.metrics["adaptive_steps"] == pytest.approx(e["adaptive_steps"])
    assert res.metrics[f"exact@{N_SUP}"] == pytest.approx(e["fixed_exact"])


@pytest.mark.parametrize("batch_size", [5, 64])
def test_adaptive_mode_matches_reference(batch_size):
    model, ps, answers, halts = model_and_data()
    e = expected(answers, halts, ps.labels)
    res = evaluate(model, ps, None, batch_size=batch_size, halting="adaptive")
    first = e["first"]
    np.testing.assert_array_equal(res.steps, first)
    np.testing.assert_array_equal(res.preds, answers[np.arange(N), first - 1])
    # A halted answer stays the answer: after step k the score is that of step min(k, halting step).
    k = np.arange(1, N_SUP + 1)
    read = np.minimum(k[None, :], first[:, None]) - 1
    np.testing.assert_allclose(res.exact_by_step, e["exact_at"][np.arange(N)[:, None], read].mean(0))
    assert res.metrics["exact"] == pytest.approx(e["adaptive_exact"])
    assert res.metrics["steps"] == pytest.approx(e["adaptive_steps"])
    # Fixed mode predicts what adaptive halting gives.
    fixed = evaluate(model, ps, None, batch_size=batch_size, halting="fixed")
    assert fixed.metrics["adaptive_exact"] == pytest.approx(res.metrics["exact"])


def test_max_examples_and_trace():
    model, ps, answers, _ = model_and_data()
    res = evaluate(model, ps, None, batch_size=4, max_examples=9, keep_trace=True)
    assert res.preds.shape == (9, SEQ) and res.metrics["examples"] == 9
    np.testing.assert_array_equal(res.trace, answers[:9])
