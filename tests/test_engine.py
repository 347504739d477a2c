"""The deep-supervision engine: data stream, slots and refill, halting and exploration, NaN guards,
and an exact (bitwise) continuation from a saved state."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from conftest import tiny_config
from trm.data.format import load_set, read_metadata
from trm.train.sampler import ExampleStream
from trm.errors import NumericalError
from trm.train.engine import Engine
from trm.train.run import build_model, fill_model_dims


def make_engine(data_dir, *extra: str, total: int = 100) -> Engine:
    cfg = tiny_config(data_dir, None, *extra)
    meta = read_metadata(data_dir / "train")
    fill_model_dims(cfg, meta)
    ps = load_set(data_dir / "train")
    model = build_model(cfg)
    return Engine(cfg, model, ps, meta.ignore_label_id, torch.device("cpu"), total)


def test_stream_visits_every_group_once_per_epoch(sudoku4_dir):
    ps = load_set(sudoku4_dir / "train")
    stream = ExampleStream(ps, seed=3)
    group_of_example = np.repeat(np.arange(ps.num_groups),
                                 np.diff(ps.puzzle_indices[ps.group_indices]))
    epoch = stream.take(ps.num_groups)      # one example per puzzle here
    assert sorted(group_of_example[epoch]) == list(range(ps.num_groups))
    nxt = stream.take(ps.num_groups)
    assert sorted(group_of_example[nxt]) == list(range(ps.num_groups))
    assert not np.array_equal(epoch, nxt)    # a new random order and versions


def test_stream_state_resumes_exactly(sudoku4_dir):
    ps = load_set(sudoku4_dir / "train")
    a = ExampleStream(ps, seed=1)
    a.take(150)
    b = ExampleStream(ps, seed=1)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.take(300), b.take(300))


def _set_halt_bias(engine: Engine, value: float) -> None:
    with torch.no_grad():
        engine.model.halt_head.bias.fill_(value)


def test_slots_run_until_N_sup_when_the_head_never_halts(sudoku4_dir):
    eng = make_engine(sudoku4_dir, "train.lr=1e-9", "model.halt_exploration_prob=0")
    _set_halt_bias(eng, -50.0)
    cursors = []
    for _ in range(9):
        eng.train_step()
        cursors.append(eng.stream.cursor + eng.stream.epoch * 10_000)
    # 16 slots taken at step 1, then nothing until every slot has run N_sup = 4 steps.
    assert cursors[:4] == [16, 16, 16, 16]
    assert cursors[4] == 32 and cursors[8] == 48
    assert torch.all(eng.carry.steps == 1)


def test_slots_refill_every_step_when_the_head_halts_at_once(sudoku4_dir):
    eng = make_engine(sudoku4_dir, "train.lr=1e-9", "model.halt_exploration_prob=0")
    _set_halt_bias(eng, 50.0)
    for k in range(1, 4):
        m = eng.train_step()
        assert eng.stream.cursor == 16 * k
        assert m["steps"] == 1.0 and m["finished"] == 16


def test_exploration_sets_a_minimum_number_of_steps(sudoku4_dir):
    eng = make_engine(sudoku4_dir, "train.lr=1e-9", "model.halt_exploration_prob=1",
                      "model.halt_exploration=per_slot")
    _set_halt_bias(eng, 50.0)
    eng.train_step()
    floors = eng.carry.min_steps.clone()
    assert torch.all((floors >= 2) & (floors <= 4))
    for _ in range(3):
        eng.train_step()
        halted = eng.carry.halted
        assert torch.all(eng.carry.steps[halted] >= floors[halted])


def test_nan_is_caught_with_the_step_and_term(sudoku4_dir):
    eng = make_engine(sudoku4_dir)
    eng.train_step()
    with torch.no_grad():
        eng.model.answer_head.weight[0, 0] = float("nan")
    with pytest.raises(NumericalError, match=r"lm_loss.*step 1"):
        eng.train_step()


def test_nan_policy_skip_leaves_the_weights_untouched(sudoku4_dir):
    eng = make_engine(sudoku4_dir, "train.nan_policy=skip")
    eng.train_step()
    with torch.no_grad():
        eng.model.answer_head.weight[0, 0] = float("nan")
    before = {k: v.clone() for k, v in eng.model.state_dict().items()}
    m = eng.train_step()
    assert m == {"skipped": 1.0} and eng.skipped_steps == 1
    after = eng.model.state_dict()
    assert all(torch.equal(before[k], after[k]) or torch.isnan(before[k]).any() for k in before)


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("halting", ["bce", "qlearn"])
def test_resume_from_a_saved_state_is_bitwise_exact(sudoku4_dir, halting):
    extra = (f"model.halting={halting}", "train.ema_warmup=true")
    straight = make_engine(sudoku4_dir, *extra)
    for _ in range(7):
        straight.train_step()

    first = make_engine(sudoku4_dir, *extra)
    for _ in range(3):
        first.train_step()
    saved = _roundtrip(first.state_dict())
    torch.manual_seed(1234)                     # a different global RNG state must not matter
    resumed = make_engine(sudoku4_dir, "train.seed=99", *extra)   # different init, replaced by the state
    resumed.load_state_dict(saved)
    for _ in range(4):
        resumed.train_step()

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]) for k in straight.ema.shadow)
    assert torch.equal(straight.carry.y, resumed.carry.y)
    assert straight.stream.state_dict() == resumed.stream.state_dict()


def _official_lr(step: int, base: float, warmup: int, total: int, min_ratio: float) -> float:
    """The official schedule, written from the spec: the step counter is incremented before the lr
    is computed (so the first update is step 1), linear warmup, then cosine down to min_ratio."""
    import math
    if step < warmup:
        return base * step / max(1, warmup)
    q = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * q))))


def test_learning_rate_follows_the_official_schedule_from_the_first_step(sudoku4_dir):
    warmup, total = 4, 9
    eng = make_engine(sudoku4_dir, f"train.lr_warmup_steps={warmup}", "train.lr_min_ratio=0.1", total=total)
    lrs = [eng.train_step()["lr"] for _ in range(total)]
    want = [_official_lr(s, eng.cfg.train.lr, warmup, total, 0.1) for s in range(1, total + 1)]
    assert lrs[0] > 0, "the first update must not run at lr 0"
    assert lrs[:warmup + 2] == pytest.approx(want[:warmup + 2])
    assert lrs[-1] == pytest.approx(want[-1]) == pytest.approx(0.1 * eng.cfg.train.lr)
