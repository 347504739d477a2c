import io
import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from trm.errors import CheckpointError, ConfigError
from trm.model.puzzle_emb import PuzzleEmbedding
from trm.train.optim import EMA, AdamATan2, SignSGD, build_optimizer, lr_at, set_lr

# --------------------------------------------------------------------------------------- AdamATan2


def test_adam_atan2_matches_formula_by_hand():
    lr_per_step, wd, b1, b2 = [0.1, 0.05, 0.2], 0.5, 0.9, 0.95
    p0 = [0.5, -1.0, 2.0, 0.0]
    grads = [[0.3, -0.2, 0.0, 1e-3], [-1.0, 0.5, 0.0, 2.0], [0.7, 0.7, 0.0, -4.0]]
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    opt = AdamATan2([p], lr=123.0, betas=(b1, b2), weight_decay=wd)
    ref, m, v = list(p0), [0.0] * 4, [0.0] * 4
    for t, (lr, g) in enumerate(zip(lr_per_step, grads), start=1):
        set_lr(opt, lr)
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        for i in range(4):
            ref[i] *= 1 - lr * wd
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            bc1, bc2 = 1 - b1**t, 1 - b2**t
            ref[i] -= lr / bc1 * math.atan2(m[i], math.sqrt(v[i] / bc2))
        torch.testing.assert_close(p.detach(), torch.tensor(ref, dtype=torch.float64), rtol=1e-13, atol=1e-15)
    assert opt.state[p]["step"] == 3
    assert not torch.isnan(p).any()


def _adam_run(p, opt, grads):
    for g in grads:
        p.grad = g.clone()
        opt.step()


def test_adam_atan2_state_dict_roundtrip():
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=g) for _ in range(5)]
    a = nn.Parameter(torch.randn(3, 4, generator=g))
    b = nn.Parameter(a.detach().clone())
    opt_a = AdamATan2([a], lr=1e-2, weight_decay=0.1)
    _adam_run(a, opt_a, grads[:2])
    opt_b = AdamATan2([b], lr=5.0, weight_decay=0.1)
    with torch.no_grad():
        b.copy_(a)
    buf = io.BytesIO()  # a checkpoint round-trip (a live state_dict shares tensors with opt_a)
    torch.save(opt_a.state_dict(), buf)
    buf.seek(0)
    opt_b.load_state_dict(torch.load(buf))
    assert opt_b.param_groups[0]["lr"] == 1e-2
    _adam_run(a, opt_a, grads[2:])
    _adam_run(b, opt_b, grads[2:])
    assert torch.equal(a, b)
    assert opt_b.state[b]["step"] == 5


def test_adam_atan2_minimises_and_skips_gradless():
    w = nn.Parameter(torch.tensor([3.0, -2.0]))
    unused = nn.Parameter(torch.ones(2))
    opt = AdamATan2([w, unused], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()
    assert w.abs().max() < 0.1
    assert torch.equal(unused, torch.ones(2)) and unused not in opt.state


def test_build_optimizer():
    p = [nn.Parameter(torch.zeros(2))]
    assert isinstance(build_optimizer("adam_atan2", p, 1e-4, 1.0), AdamATan2)
    adamw = build_optimizer("adamw", p, 1e-4, 0.1)
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["betas"] == (0.9, 0.95) and adamw.defaults["eps"] == 1e-8
    with pytest.raises(ConfigError, match="optimizer"):
        build_optimizer("sgd", p, 1e-4, 0.1)
    with pytest.raises(ConfigError):
        build_optimizer("adamw", p, -1.0, 0.1)


# --------------------------------------------------------------------------------------- schedule


def test_lr_schedule():
    base = 1e-4
    assert lr_at(0, base, 2000, 10000) == 0.0
    assert lr_at(1000, base, 2000, 10000) == pytest.approx(base / 2)
    assert lr_at(2000, base, 2000, 10000) == pytest.approx(base)
    # min_ratio 1.0 (public config): constant after warmup, whatever the schedule
    for sched in ("cosine", "linear", "constant"):
        assert lr_at(9000, base, 2000, 10000, 1.0, sched) == pytest.approx(base)
    assert lr_at(9000, base, 2000, 10000, 0.1, "constant") == base
    # real cosine: base at the end of warmup, midpoint halfway, base*min_ratio at the end and after
    assert lr_at(2000, base, 2000, 10000, 0.1) == pytest.approx(base)
    assert lr_at(6000, base, 2000, 10000, 0.1) == pytest.approx(base * 0.55)
    assert lr_at(10000, base, 2000, 10000, 0.1) == pytest.approx(base * 0.1)
    assert lr_at(20000, base, 2000, 10000, 0.1) == pytest.approx(base * 0.1)
    assert lr_at(4000, base, 2000, 10000, 0.0, "linear") == pytest.approx(base * 0.75)
    assert lr_at(5, base, 0, 10, 1.0) == base  # no warmup
    with pytest.raises(ConfigError, match="schedule"):
        lr_at(0, base, 1, 2, schedule="step")
    with pytest.raises(ConfigError):
        lr_at(0, base, 1, 2, min_ratio=2.0)


# --------------------------------------------------------------------------------------- EMA


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        self.register_buffer("buf", torch.zeros(4))
        self.emb = PuzzleEmbedding(5, 3)


def _perturb(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g))


def test_ema_math_and_scope():
    torch.manual_seed(0)
    net = _Net()
    ema = EMA(net, rate=0.9)
    assert set(ema.shadow) == {"lin.weight", "lin.bias"}  # no frozen params, no buffers, no table
    w0 = net.lin.weight.detach().clone()
    _perturb(net, 1)
    w1 = net.lin.weight.detach().clone()
    ema.update(net)
    torch.testing.assert_close(ema.shadow["lin.weight"], 0.9 * w0 + 0.1 * w1)
    _perturb(net, 2)
    w2 = net.lin.weight.detach().clone()
    ema.update(net)
    torch.testing.assert_close(ema.shadow["lin.weight"], 0.9 * (0.9 * w0 + 0.1 * w1) + 0.1 * w2)
    assert ema.num_updates == 2


def test_ema_warmup_rate():
    net = _Net()
    ema = EMA(net, rate=0.999, warmup=True)
    rates = []
    for _ in range(3):
        rates.append(ema.current_rate())
        ema.update(net)
    assert rates == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    ema.num_updates = 10**6
    assert ema.current_rate() == 0.999
    assert EMA(net, rate=0.999).current_rate() == 0.999


def test_ema_swap_restores_exactly_and_state_dict():
    torch.manual_seed(0)
    net = _Net()
    ema = EMA(net, rate=0.99)
    for s in range(3):
        _perturb(net, s)
        ema.update(net)
    with torch.no_grad():
        net.emb.weight.fill_(7.0)
    live = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swap(net):
        assert torch.equal(net.lin.weight, ema.shadow["lin.weight"])
        assert torch.equal(net.emb.weight, live["emb.weight"])  # the table is used live
    for k, v in net.state_dict().items():
        assert torch.equal(v, live[k]), k
    other = EMA(_Net(), rate=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.rate == 0.99 and other.num_updates == 3
    assert all(torch.equal(other.shadow[k], ema.shadow[k]) for k in ema.shadow)
    with pytest.raises(CheckpointError):
        EMA(nn.Linear(2, 2)).load_state_dict(ema.state_dict())


def test_ema_wrapper_prefixes():
    net = _Net()
    wrapped = nn.Module()
    wrapped.module = net
    ema = EMA(wrapped)
    assert set(ema.shadow) == {"lin.weight", "lin.bias"}
    ema.update(net)  # the bare model matches too


# --------------------------------------------------------------------------------------- SignSGD


def _train_step(emb, opt, ids, grad_rows):
    """One forward/backward/step where d loss / d output = grad_rows."""
    opt.zero_grad()
    out = emb(torch.tensor(ids))
    (out * grad_rows).sum().backward()
    opt.step()


def test_puzzle_embedding_is_a_buffer_and_zero():
    emb = PuzzleEmbedding(10, 4)
    assert list(emb.parameters()) == [] and "weight" in emb.state_dict()
    assert torch.equal(emb.weight, torch.zeros(10, 4))
    assert PuzzleEmbedding(10, 4, init_std=0.5).weight.abs().max() <= 1.0 + 1e-6


def test_puzzle_embedding_eval_and_no_grad_remember_nothing():
    emb = PuzzleEmbedding(10, 4, init_std=1.0)
    ids = torch.tensor([3, 1], dtype=torch.int32)
    with torch.no_grad():
        out = emb(ids)
    assert not out.requires_grad and emb.pending_grads() is None and not emb._pending
    emb.eval()
    assert not emb(ids).requires_grad and not emb._pending
    emb.train()
    out = emb(ids)
    assert out.requires_grad and out.is_leaf
    torch.testing.assert_close(out.detach(), emb.weight[[3, 1]])


def test_signsgd_updates_only_used_rows_with_decay():
    emb = PuzzleEmbedding(6, 3, init_std=1.0)
    before = emb.weight.clone()
    opt = SignSGD(emb, lr=0.1, weight_decay=0.5)
    grad = torch.tensor([[1.0, -2.0, 0.0], [-3.0, 0.5, 2.0]])
    _train_step(emb, opt, [4, 1], grad)
    expected = before.clone()
    expected[4] = before[4] * (1 - 0.05) - 0.1 * torch.tensor([1.0, -1.0, 0.0])
    expected[1] = before[1] * (1 - 0.05) - 0.1 * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(emb.weight, expected)
    assert torch.equal(emb.weight[[0, 2, 3, 5]], before[[0, 2, 3, 5]])  # unused rows: no decay


def test_signsgd_duplicates_summed_before_sign():
    emb = PuzzleEmbedding(4, 2, init_std=1.0)
    before = emb.weight.clone()
    opt = SignSGD(emb, lr=0.1, weight_decay=0.0)
    # row 2 appears three times: grads 1 + 1 - 3 = -1 -> sign -1 (a per-occurrence sign would give +1)
    grad = torch.tensor([[1.0, 2.0], [1.0, -1.0], [-3.0, -2.0]])
    _train_step(emb, opt, [2, 2, 2], grad)
    torch.testing.assert_close(emb.weight[2], before[2] - 0.1 * torch.tensor([-1.0, -1.0]))
    assert torch.equal(emb.weight[[0, 1, 3]], before[[0, 1, 3]])


def test_signsgd_batch_size_independent():
    grad_row = torch.tensor([[0.3, -0.7, 0.0]])
    tables = []
    for reps in (1, 2, 7):  # the same row used 1, 2 or 7 times with the same per-use gradient
        emb = PuzzleEmbedding(3, 3)
        opt = SignSGD(emb, lr=0.01, weight_decay=0.1)
        _train_step(emb, opt, [1] * reps, grad_row.repeat(reps, 1) / reps)
        tables.append(emb.weight.clone())
    assert torch.equal(tables[0], tables[1]) and torch.equal(tables[0], tables[2])
    assert torch.equal(tables[0][1], torch.tensor([-0.01, 0.01, 0.0]))


def test_signsgd_lr_from_param_groups_and_zero_grad():
    emb = PuzzleEmbedding(3, 2)
    opt = SignSGD(emb, lr=1.0)
    set_lr(opt, 0.25)
    out = emb(torch.tensor([0]))
    out.sum().backward()
    opt.step()
    assert torch.equal(emb.weight[0], torch.tensor([-0.25, -0.25]))
    opt.zero_grad()
    opt.step()  # nothing remembered: no change
    assert torch.equal(emb.weight[0], torch.tensor([-0.25, -0.25]))
    state = opt.state_dict()
    opt2 = SignSGD(emb, lr=9.0)
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == 0.25


def test_signsgd_two_forwards_accumulate():
    emb = PuzzleEmbedding(3, 1)
    opt = SignSGD(emb, lr=1.0)
    (emb(torch.tensor([1])) * 2.0).sum().backward()
    (emb(torch.tensor([1])) * -3.0).sum().backward()
    opt.step()
    assert emb.weight[1].item() == 1.0  # sign(2 - 3) = -1


# ------------------------------------------------------------------------ SignSGD across processes

_NUM_IDS, _DIM = 8, 4
_RANK_IDS = {0: [1, 3, 3], 1: [3, 5, 6, 1, 0]}  # overlapping rows, different batch sizes


def _rank_grads(rank: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(len(_RANK_IDS[rank]), _DIM, generator=g)


def _fresh_table() -> PuzzleEmbedding:
    torch.manual_seed(0)
    return PuzzleEmbedding(_NUM_IDS, _DIM, init_std=1.0)


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        emb = _fresh_table()
        opt = SignSGD(emb, lr=0.1, weight_decay=0.2)
        _train_step(emb, opt, _RANK_IDS[rank], _rank_grads(rank))
        opt.zero_grad()
        if rank == 0:  # second step: only rank 0 has rows; rank 1 still joins the collective
            (emb(torch.tensor([7])) * -1.0).sum().backward()
        opt.step()
        torch.save(emb.weight, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_signsgd_distributed_matches_union_batch():
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        w0, w1 = (torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in (0, 1))
    assert torch.equal(w0, w1)
    emb = _fresh_table()
    opt = SignSGD(emb, lr=0.1, weight_decay=0.2, distributed=False)
    _train_step(emb, opt, _RANK_IDS[0] + _RANK_IDS[1], torch.cat([_rank_grads(0), _rank_grads(1)]))
    _train_step(emb, opt, [7], -torch.ones(1, _DIM))
    assert torch.equal(w0, emb.weight)
    untouched = [2, 4]
    assert torch.equal(w0[untouched], _fresh_table().weight[untouched])
