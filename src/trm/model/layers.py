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
    """RMSNorm without a learned scale over ``dim``, computed in fp32, returned in the input dtype."""
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


class SwiGLU(nn.Module):
    """down(silu(gate) * up) with a fused gate/up projection."""

    def __init__(self, dim: int, inner: int, zero_init_out: bool = False):
        super().__init__()
        self.gate_up = Linear(dim, 2 * inner)
        self.down = Linear(inner, dim, zero_init=zero_init_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Rotary(nn.Module):
    """Rotary position embedding tables (base theta); positions 0..seq_len-1, the prefix first."""

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
        y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


class SequenceMLP(nn.Module):
    """The MLP mixer ("mlp_t"): a SwiGLU along the sequence axis.

    The public code transposes h to [B, D, S] and applies a SwiGLU over S. The same product is
    ``W @ h`` on the untransposed [B, S, D] tensor (W: [out, S]), which needs no transpose or copy.
    """

    def __init__(self, seq_len: int, expansion: float, zero_init_out: bool = False):
        super().__init__()
        self.mlp = SwiGLU(seq_len, swiglu_inner(seq_len, expansion), zero_init_out=zero_init_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: [B, S, D] -> the sequence-mixed [B, S, D]."""
        gate_up = torch.matmul(self.mlp.gate_up.weight.to(h.dtype), h)       # [B, 2I, D]
        gate, up = gate_up.chunk(2, dim=-2)
        return torch.matmul(self.mlp.down.weight.to(h.dtype), F.silu(gate) * up)  # [B, S, D]


class Block(nn.Module):
    """Post-norm block: h = norm(h + mix(h)); h = norm(h + swiglu(h))."""

    def __init__(self, dim: int, num_heads: int, expansion: float, mixer: str, seq_len: int,
                 rotary: Rotary | None, eps: float, zero_init_residual: bool = False):
        super().__init__()
        self.eps, self.mixer_kind = eps, mixer
        if mixer == "attention":
            self.mixer = Attention(dim, num_heads, rotary, zero_init_out=zero_init_residual)
        else:
            self.mixer = SequenceMLP(seq_len, expansion, zero_init_out=zero_init_residual)
        self.mlp = SwiGLU(dim, swiglu_inner(dim, expansion), zero_init_out=zero_init_residual)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.mixer_kind == "attention":
            h = rms_norm(h + self.mixer(h), self.eps)
        else:   # mix along the sequence, with the norm over the sequence axis (as the public code)
            h = rms_norm(h + self.mixer(h), self.eps, dim=-2)
        return rms_norm(h + self.mlp(h), self.eps)


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
