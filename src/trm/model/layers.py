"""Building blocks of the network f (spec section 3): RMSNorm, SwiGLU, rotary attention, the
sequence-mixing MLP, and the truncated LeCun initialisation.

Weights are fp32 masters; every matrix product runs in the dtype of its input (bf16 by default), the
norms and rotary in fp32. No biases anywhere in the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Standard deviation of a standard normal truncated to [-2, 2]; dividing by it "corrects" the std.
_TRUNC2_STD = math.sqrt(1 - 2 * 2 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))


def trunc_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    """Truncated normal at 2 sigma, rescaled so that the resulting std is exactly ``std``."""
    with torch.no_grad():
        nn.init.trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0)
        return t.mul_(std / _TRUNC2_STD)


def swiglu_inner(dim: int, expansion: float) -> int:
    """round(expansion * dim * 2/3), rounded up to a multiple of 256 (1536 for d=512)."""
    inner = round(expansion * dim * 2 / 3)
    return -(-inner // 256) * 256


def rms_norm(x: torch.Tensor, eps: float, dim: int = -1) -> torch.Tensor:
    """RMSNorm without a learned scale over ``dim``, computed in fp32, returned in the input dtype.

    Over the last axis this is ``F.rms_norm`` (one fused kernel: it upcasts to fp32 internally and gives
    the same values as the composite below, with a faster backward).
    """
    if dim in (-1, x.dim() - 1):
        return F.rms_norm(x, (x.shape[-1],), eps=eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.square().mean(dim, keepdim=True) + eps)).to(x.dtype)


class Linear(nn.Module):
    """Bias-free (by default) linear layer, truncated LeCun init, computed in the input's dtype."""

    def __init__(self, d_in: int, d_out: int, bias: bool = False, zero_init: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None
        if zero_init:
            nn.init.zeros_(self.weight)
        else:
            trunc_normal_(self.weight, std=1.0 / math.sqrt(d_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), b)


class _SiLUGate(torch.autograd.Function):
    """silu(gate) * up from the fused [..., 2I] projection, with a lean backward.

    Autograd would save gate, up and silu(gate), and its backward would concatenate the two halves of
    the gradient (a copy of [..., 2I]). This saves only the projection, recomputes silu(gate) and writes
    both halves straight into one buffer; the arithmetic is autograd's, so the values are identical.
    """

    @staticmethod
    def forward(ctx, gate_up: torch.Tensor) -> torch.Tensor:
        gate, up = gate_up.chunk(2, dim=-1)
        ctx.save_for_backward(gate_up)
        return F.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (gate_up,) = ctx.saved_tensors
        gate, up = gate_up.chunk(2, dim=-1)
        out = torch.empty_like(gate_up)
        d_gate, d_up = out.chunk(2, dim=-1)
        torch.mul(grad, F.silu(gate), out=d_up)
        torch.ops.aten.silu_backward.grad_input(grad * up, gate, grad_input=d_gate)
        return out


def silu_gate(gate_up: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation silu(gate) * up of a fused projection ``gate_up`` = [gate | up] on the last axis."""
    if torch.is_grad_enabled() and gate_up.requires_grad:
        return _SiLUGate.apply(gate_up)
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate).mul_(up)


class SwiGLU(nn.Module):
    """down(silu(gate) * up) with a fused gate/up projection."""

    def __init__(self, dim: int, inner: int, zero_init_out: bool = False):
        super().__init__()
        self.gate_up = Linear(dim, 2 * inner)
        self.down = Linear(inner, dim, zero_init=zero_init_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(silu_gate(self.gate_up(x)))


class Rotary(nn.Module):
    """Rotary position embedding tables (base theta); positions 0..seq_len-1, the prefix first."""

    cos: torch.Tensor  # buffers registered in __init__
    sin: torch.Tensor

    def __init__(self, head_dim: int, seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate x [B, H, S, D] (computed in fp32)."""
        xf = x.float()
        x1, x2 = xf.chunk(2, dim=-1)
        rotated = torch.cat((-x2, x1), dim=-1)
        return (xf * self.cos + rotated * self.sin).to(x.dtype)


# Below this length a CPU computes attention faster with plain matrix products than with the fused
# (flash) kernel of ``F.scaled_dot_product_attention``, whose backward is slow on CPU (Sudoku: S = 97).
CPU_MATMUL_ATTENTION_MAX_LEN = 256


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal softmax attention of [B, H, S, d] tensors, output in v's dtype.

    ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels) except for short sequences on
    CPU, where softmax(q k^T / sqrt(d)) v is computed with two batched products, the scores in fp32
    (as the fused kernels accumulate them).
    """
    S = q.shape[-2]
    if q.device.type != "cpu" or S > CPU_MATMUL_ATTENTION_MAX_LEN:
        return F.scaled_dot_product_attention(q, k, v, is_causal=False)
    scores = torch.matmul(q.float(), k.float().transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)
    return torch.matmul(scores.softmax(-1).to(v.dtype), v)


class Attention(nn.Module):
    """Non-causal multi-head attention with a fused q/k/v projection and optional rotary positions."""

    def __init__(self, dim: int, num_heads: int, rotary: Rotary | None, zero_init_out: bool = False):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim, zero_init=zero_init_out)
        self.rotary = rotary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


class SequenceMLP(nn.Module):
    """The MLP mixer ("mlp_t"): a SwiGLU along the sequence axis.

    As in the public code it works on the transposed tensor [B, D, S] (:meth:`forward_t`): every matrix
    product is then one plain [B*D, S] x [S, 2I] product and the norm over the sequence is over the last,
    contiguous axis. :class:`Block` keeps the residual stream transposed around the mixer, so the only
    data movement is one [B, S, D] layout change per direction and block (a strided input would make
    ``F.linear`` fall back to a batched product with a materialised copy of the weight).
    """

    def __init__(self, seq_len: int, expansion: float, zero_init_out: bool = False):
        super().__init__()
        self.mlp = SwiGLU(seq_len, swiglu_inner(seq_len, expansion), zero_init_out=zero_init_out)

    def forward_t(self, h_t: torch.Tensor) -> torch.Tensor:
        """h_t: [B, D, S] -> the sequence-mixed [B, D, S]."""
        return self.mlp(h_t)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: [B, S, D] -> the sequence-mixed [B, S, D] (a transposed view)."""
        return self.forward_t(h.transpose(1, 2).contiguous()).transpose(1, 2)


class Block(nn.Module):
    """Post-norm block: h = norm(h + mix(h)); h = norm(h + swiglu(h))."""

    def __init__(self, dim: int, num_heads: int, expansion: float, mixer: str, seq_len: int,
                 rotary: Rotary | None, eps: float, zero_init_residual: bool = False):
        super().__init__()
        self.eps, self.mixer_kind = eps, mixer
        self.mixer: Attention | SequenceMLP
        if mixer == "attention":
            self.mixer = Attention(dim, num_heads, rotary, zero_init_out=zero_init_residual)
        else:
            self.mixer = SequenceMLP(seq_len, expansion, zero_init_out=zero_init_residual)
        self.mlp = SwiGLU(dim, swiglu_inner(dim, expansion), zero_init_out=zero_init_residual)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mixer_kind == "attention":
            h = rms_norm(self.mixer(h) + h, self.eps)
        else:   # mix along the sequence, with the norm over the sequence axis (as the public code)
            assert isinstance(self.mixer, SequenceMLP)                # mixer_kind != "attention"
            h_t = h.transpose(1, 2).contiguous()                      # [B, D, S]
            h = rms_norm(self.mixer.forward_t(h_t) + h_t, self.eps).transpose(1, 2).contiguous()
        # The freshly computed term first: the sum then takes its (contiguous) layout.
        return rms_norm(self.mlp(h) + h, self.eps)


class Network(nn.Module):
    """The tiny network f: a stack of blocks applied to (state + injection)."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, expansion: float, mixer: str,
                 seq_len: int, rotary: Rotary | None, eps: float, zero_init_residual: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, expansion, mixer, seq_len, rotary, eps, zero_init_residual)
            for _ in range(num_layers))

    def forward(self, state: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        h = state + injection
        for block in self.blocks:
            h = block(h)
        return h
