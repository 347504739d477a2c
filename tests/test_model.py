"""The recursive reasoner: parameter counts, initialisation, mixers, and the gradient scope of one
supervision step (T-1 recursions without gradients, the last with full backprop)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trm.config import ModelConfig
from trm.model.layers import SequenceMLP, _TRUNC2_STD, rms_norm, swiglu_inner, trunc_normal_
from trm.model.recursive import RecursiveReasoner


def paper_model(**kw) -> ModelConfig:
    base = dict(vocab_size=11, seq_len=81, num_puzzle_ids=1)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("kw,expected", [
    (dict(mixer="attention"), 6_828_034),                               # Sudoku, attention
    (dict(mixer="mlp", pos_encoding="none"), 5_028_866),                 # Sudoku, MLP mixer
    (dict(mixer="attention", vocab_size=6, seq_len=900), 6_822_914),     # Maze
    (dict(mixer="attention", vocab_size=12, seq_len=900, num_puzzle_ids=1000), 6_829_058),  # ARC
])
def test_parameter_counts_match_the_paper(kw, expected):
    with torch.device("meta"):
        model = RecursiveReasoner(paper_model(**kw))
    assert model.num_params() == expected


def test_block_parameter_breakdown():
    assert swiglu_inner(512, 4.0) == 1536
    assert swiglu_inner(97, 4.0) == 512
    with torch.device("meta"):
        att = RecursiveReasoner(paper_model(mixer="attention"))
        mlp = RecursiveReasoner(paper_model(mixer="mlp", pos_encoding="none"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    blk = att.f_z.blocks[0]
    assert count(blk.mixer.qkv) == 786_432 and count(blk.mixer.out) == 262_144
    assert count(blk.mlp) == 2_359_296
    assert count(mlp.f_z.blocks[0].mixer) == 148_992


def test_truncated_lecun_init_statistics():
    torch.manual_seed(0)
    w = trunc_normal_(torch.empty(512, 2048), std=1 / math.sqrt(2048))
    std = 1 / math.sqrt(2048)
    assert abs(w.std().item() / std - 1) < 0.01
    assert w.abs().max().item() <= 2 * std / _TRUNC2_STD + 1e-6
    assert abs(_TRUNC2_STD - 0.8796256610342398) < 1e-9


def test_model_initialisation():
    torch.manual_seed(0)
    model = RecursiveReasoner(paper_model(mixer="attention"))
    assert torch.all(model.halt_head.weight == 0) and torch.all(model.halt_head.bias == -5)
    assert abs(model.embed_tokens.std().item() * math.sqrt(512) - 1) < 0.1
    qkv = model.f_z.blocks[0].mixer.qkv.weight
    assert abs(qkv.std().item() * math.sqrt(512) - 1) < 0.02
    assert torch.all(model.puzzle_emb.weight == 0)
    both = torch.cat([model.y_init, model.z_init])
    assert 0.8 < both.std().item() < 1.2 and both.abs().max() <= 2 / _TRUNC2_STD + 1e-6
    # init vectors are buffers, not parameters (fixed, excluded from the count)
    names = {n for n, _ in model.named_parameters()}
    assert "y_init" not in names and "z_init" not in names


def test_halting_reads_position_zero_and_prefix_is_dropped():
    torch.manual_seed(0)
    cfg = paper_model(hidden_size=32, num_heads=2, T=1, n=1, forward_dtype="float32")
    model = RecursiveReasoner(cfg)
    x = torch.randint(1, 11, (3, 81))
    y, z = model.initial_state(3)
    out = model(x, torch.zeros(3, dtype=torch.long), y, z)
    assert out.logits.shape == (3, 81, 11) and out.q_halt.shape == (3,)
    assert torch.allclose(out.q_halt, torch.full((3,), -5.0))      # zero weight, bias -5
    assert out.y.shape == (3, 97, 32) and not out.y.requires_grad


def test_sequence_mlp_equals_the_transposed_formulation():
    torch.manual_seed(0)
    mix = SequenceMLP(seq_len=13, expansion=4.0)
    h = torch.randn(2, 13, 8)
    h_t = h.transpose(1, 2)                                   # the public code's [B, D, S]
    gate, up = F.linear(h_t, mix.mlp.gate_up.weight).chunk(2, -1)
    ref = F.linear(F.silu(gate) * up, mix.mlp.down.weight).transpose(1, 2)
    assert torch.allclose(mix(h), ref, atol=1e-5)


def test_rms_norm_over_the_sequence_axis():
    x = torch.randn(2, 5, 3)
    y = rms_norm(x, 1e-5, dim=-2)
    assert torch.allclose(y.pow(2).mean(-2), torch.ones(2, 3), atol=1e-3)


def test_bf16_compute_is_close_to_fp32():
    torch.manual_seed(0)
    cfg32 = paper_model(hidden_size=64, num_heads=4, T=2, n=2, forward_dtype="float32")
    m32 = RecursiveReasoner(cfg32)
    m16 = RecursiveReasoner(paper_model(hidden_size=64, num_heads=4, T=2, n=2, forward_dtype="bfloat16"))
    m16.load_state_dict(m32.state_dict())
    x = torch.randint(1, 11, (4, 81))
    ids = torch.zeros(4, dtype=torch.long)
    a = m32(x, ids, *m32.initial_state(4)).logits
    b = m16(x, ids, *m16.initial_state(4)).logits
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 0.1 * a.abs().max()
    assert all(p.dtype == torch.float32 for p in m16.parameters())   # fp32 master weights


# ---------------------------------------------------------------------------------------------
# Gradient scope

def _tiny(T: int, n: int = 2, **kw) -> RecursiveReasoner:
    torch.manual_seed(0)
    cfg = paper_model(hidden_size=32, num_heads=2, T=T, n=n, forward_dtype="float32", **kw)
    return RecursiveReasoner(cfg)


def _autograd_nodes(t: torch.Tensor) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        stack.extend(f for f, _ in fn.next_functions)
    return len(seen)


@pytest.mark.parametrize("mixer", ["attention", "mlp"])
def test_autograd_graph_does_not_grow_with_T(mixer):
    x = torch.randint(1, 11, (2, 81))
    ids = torch.zeros(2, dtype=torch.long)
    sizes = []
    for T in (1, 3, 6):
        model = _tiny(T, mixer=mixer)
        out = model(x, ids, *model.initial_state(2))
        sizes.append(_autograd_nodes(out.logits.sum() + out.q_halt.sum()))
    assert sizes[0] == sizes[1] == sizes[2]
    # ...while it does grow with n (the last recursion is fully differentiated)
    model = _tiny(3, n=4, mixer=mixer)
    out = model(x, ids, *model.initial_state(2))
    assert _autograd_nodes(out.logits.sum()) > sizes[0]


def _reference_step(model: RecursiveReasoner, x_tok, ids, y, z, detach_after: int | None):
    """Hand-unrolled deep recursion with everything differentiable, optionally cutting the graph
    after the first ``detach_after`` latent recursions."""
    x = model.embed(x_tok, ids)
    T, n = model.cfg.T, model.cfg.n
    for t in range(T):
        if detach_after is not None and t == detach_after:
            y, z = y.detach(), z.detach()
        for _ in range(n):
            z = model.f_z(z, y + x)
        y = model.f_y(y, z)
    return model.answer_head(y[:, model.cfg.puzzle_emb_len:]).float()


def _grads(model, loss) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_gradients_are_exactly_those_of_the_last_recursion():
    model = _tiny(T=3, n=2)
    x = torch.randint(1, 11, (2, 81))
    ids = torch.zeros(2, dtype=torch.long)
    y, z = model.initial_state(2)
    w = torch.randn(2, 81, 11)
    ours = _grads(model, (model(x, ids, y, z).logits * w).sum())
    ref = _grads(model, (_reference_step(model, x, ids, y, z, detach_after=2) * w).sum())
    full = _grads(model, (_reference_step(model, x, ids, y, z, detach_after=None) * w).sum())
    assert ours.keys() == ref.keys()
    for k in ours:
        assert torch.allclose(ours[k], ref[k], atol=1e-6, rtol=1e-5), k
    # the reference with full backprop through time differs: the test can tell them apart
    assert any(not torch.allclose(ours[k], full[k], atol=1e-6, rtol=1e-5) for k in ours)


def test_carry_is_detached_between_supervision_steps():
    model = _tiny(T=2, n=2)
    x = torch.randint(1, 11, (2, 81))
    ids = torch.zeros(2, dtype=torch.long)
    y, z = model.initial_state(2)
    first = model(x, ids, y, z)
    second = model(x, ids, first.y, first.z)
    assert not first.y.requires_grad and not first.z.requires_grad
    loss = second.logits.sum()
    n_second = _autograd_nodes(loss)
    n_first = _autograd_nodes(first.logits.sum())
    assert n_second == n_first        # nothing of the first step is in the second step's graph


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lean_swiglu_backward_equals_autograd(dtype):
    """The custom SwiGLU backward gives autograd's gradient of silu(gate) * up, bit for bit."""
    from trm.model.layers import silu_gate as swiglu
    torch.manual_seed(0)
    x = torch.randn(3, 7, 2 * 24, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(3, 7, 24, dtype=dtype)
    (g_lean,) = torch.autograd.grad(swiglu(x), x, grad_out)
    gate, up = x.chunk(2, -1)
    (g_ref,) = torch.autograd.grad(F.silu(gate) * up, x, grad_out)
    assert torch.equal(swiglu(x).detach(), (F.silu(gate) * up).detach())
    torch.testing.assert_close(g_lean, g_ref, rtol=0, atol=0)
