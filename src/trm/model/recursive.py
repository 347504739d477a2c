"""The recursive reasoner (spec sections 3-4): TRM, and through options HRM and the paper's ablations.

One supervision step (deep recursion) with the paper's symbols::

    x = embed(puzzle)                          # input embedding, with the 16-position prefix
    repeat T-1 times without gradients:        # (grad_scope="last_recursion", TRM)
        repeat n times: z = f_z(z + y + x)     # latent recursion
        y = f_y(y + z)
    once with gradients: the same latent recursion
    logits = answer_head(y);  halt = halt_head(y[:, 0])

TRM uses one network (f_z = f_y = f). Options give the variants (presets ``hrm-*``, ``direct-*`` and
``ablate-*``):

- ``separate_nets``: f_z and f_y are distinct networks (HRM's L and H; the paper's "separate fH, fL").
- ``grad_scope="one_step"``: HRM's 1-step gradient: of the T (n+1) calls only the last z update and the
  last y update record gradients; their inputs y, z are detached.
- HRM (spec section 8) is ``separate_nets`` + ``one_step`` with T = H_cycles = 2, n = L_cycles = 2 and
  4-block networks: z = HRM's z_L, y = HRM's z_H; each H cycle runs L_cycles updates
  z_L = L(z_L + z_H + x), then z_H = H(z_H + z_L), exactly the latent recursion above.
- ``latents="z"`` (the paper's single feature, 1): z = f(z + x) n+1 times per recursion; z is the answer.
- ``latents="multi_z"`` (the paper's "one z per recursion", n+1 features: y and z_1..z_n). Our reading,
  which keeps the network calls (n+1 per recursion) and input injection by addition: latent step i
  refines its own feature from the one before it, z_i = f(z_i + z_{i-1} + y + x) (no z_0 term), and the
  answer step reads them all, y = f(y + z_1 + ... + z_n). The carry holds the n features.
- ``recursion="direct"``: no recursion, y = f(x) once (the 8-layer direct-prediction baseline, N_sup = 1).

Depth of one supervision step (paper Table 1): T (n+1) calls x num_layers (42 for TRM, 24 for HRM).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from trm.config import ModelConfig
from trm.model.layers import Linear, Network, Rotary, trunc_normal_
from trm.model.puzzle_emb import PuzzleEmbedding
from trm.runtime import TORCH_DTYPES, resolve_precision



@dataclass
class StepOutput:
    y: torch.Tensor            # [B, P+S, D] answer embedding, detached (the carry)
    z: torch.Tensor            # latent(s), detached (the carry)
    logits: torch.Tensor       # [B, S, V] answer logits (fp32), prefix dropped
    q_halt: torch.Tensor       # [B] halting logit (fp32): halt when > 0
    q_continue: torch.Tensor   # [B] continue logit (used by halting="qlearn" only)


def network_calls(m: ModelConfig) -> int:
    """Calls of the network f in one supervision step: T (n+1), or 1 for direct prediction."""
    return 1 if m.recursion == "direct" else m.T * (m.n + 1)


class RecursiveReasoner(nn.Module):
    y_init: torch.Tensor  # buffers registered in __init__
    z_init: torch.Tensor

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not (cfg.vocab_size and cfg.seq_len):
            raise ValueError("ModelConfig.vocab_size and seq_len must be set (they come from the dataset)")
        self.cfg = cfg
        D, P = cfg.hidden_size, cfg.puzzle_emb_len
        self.total_len = cfg.seq_len + P
        self.embed_scale = math.sqrt(D)
        self._auto_dtype: tuple[torch.device, torch.dtype] | None = None   # forward_dtype=auto, resolved

        self.embed_tokens = nn.Parameter(trunc_normal_(torch.empty(cfg.vocab_size, D), std=1.0 / math.sqrt(D)))
        self.puzzle_emb = (PuzzleEmbedding(max(cfg.num_puzzle_ids, 1), cfg.puzzle_emb_dim) if cfg.puzzle_emb_dim
                           else None)
        self.embed_pos = (nn.Parameter(trunc_normal_(torch.empty(self.total_len, D), std=1.0 / math.sqrt(D)))
                          if cfg.pos_encoding == "learned" else None)
        rotary = (Rotary(D // cfg.num_heads, self.total_len, cfg.rope_theta)
                  if cfg.pos_encoding == "rope" and cfg.mixer == "attention" else None)

        def network() -> Network:
            return Network(D, cfg.num_layers, cfg.num_heads, cfg.expansion, cfg.mixer, self.total_len,
                           rotary, cfg.rms_norm_eps, cfg.zero_init_residual)

        self.f_z = network()                                          # f, or HRM's L when separate
        self.f_y_separate = network() if cfg.separate_nets else None  # HRM's H

        self.answer_head = Linear(D, cfg.vocab_size)
        self.halt_head = Linear(D, 2, bias=True, zero_init=True)
        assert self.halt_head.bias is not None  # built with bias=True
        with torch.no_grad():
            self.halt_head.bias.fill_(-5.0)

        # Fixed random initial states (not trained), broadcast to every position.
        self.register_buffer("y_init", trunc_normal_(torch.empty(D), std=1.0))
        self.register_buffer("z_init", trunc_normal_(torch.empty(D), std=1.0))

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype: ``cfg.forward_dtype``, with ``auto`` resolved for the device of the weights
        (:func:`trm.runtime.resolve_precision`, measured once per process)."""
        name = self.cfg.forward_dtype
        if name != "auto":
            return TORCH_DTYPES[name]
        device = self.embed_tokens.device              # several reads per step: resolve once per device
        if self._auto_dtype is None or self._auto_dtype[0] != device:
            p = resolve_precision("auto", device, hidden_size=self.cfg.hidden_size, seq_len=self.cfg.seq_len)
            self._auto_dtype = (device, p.torch_dtype)
        return self._auto_dtype[1]

    @property
    def f_y(self) -> Network:
        """The network that updates y: f itself (TRM) or a second network (separate_nets)."""
        return self.f_y_separate if self.f_y_separate is not None else self.f_z

    # ------------------------------------------------------------------------------------------
    def num_params(self) -> int:
        """Trainable parameters, excluding the puzzle table and the init vectors (as the paper)."""
        return sum(p.numel() for p in self.parameters())

    def initial_state(self, batch_size: int, device: torch.device | str | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, z) for new examples: the init vectors broadcast to [B, P+S, D] (z: [B, k, P+S, D] for multi_z)."""
        shape = (batch_size, self.total_len, self.cfg.hidden_size)
        y = self.y_init.to(self.dtype).expand(shape)
        z = self.z_init.to(self.dtype).expand(shape)
        if self.cfg.latents == "multi_z":
            z = z.unsqueeze(1).expand(batch_size, max(self.cfg.n, 1), *shape[1:])
        if device is not None:
            y, z = y.to(device), z.to(device)
        return y.contiguous(), z.contiguous()

    def embed(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor) -> torch.Tensor:
        """x: token embedding with the puzzle-embedding prefix, (learned positions,) times sqrt(D)."""
        B = inputs.shape[0]
        D, P = self.cfg.hidden_size, self.cfg.puzzle_emb_len
        x = self.embed_tokens.to(self.dtype)[inputs.long()]
        if P:
            prefix = torch.zeros(B, P * D, dtype=self.dtype, device=inputs.device)
            if self.puzzle_emb is not None:
                prefix = torch.cat([self.puzzle_emb(puzzle_ids).to(self.dtype),
                                    prefix[:, self.cfg.puzzle_emb_dim:]], dim=1)
            x = torch.cat([prefix.view(B, P, D), x], dim=1)
        if self.embed_pos is not None:
            x = (x + self.embed_pos.to(self.dtype)) / math.sqrt(2)
        return x * self.embed_scale

    # ------------------------------------------------------------------------------------------
    def latent_recursion(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, one_step: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """n updates of z from (x, y, z), then one update of y from (y, z).

        ``one_step``: only the last z update and the y update record gradients (HRM's approximation).
        """
        n, mode = self.cfg.n, self.cfg.latents
        no_grad = torch.no_grad() if one_step else contextlib.nullcontext()
        if mode == "yz":
            with no_grad:
                for _ in range(n - 1):
                    z = self.f_z(z, y + x)
            if n:
                z = self.f_z(z.detach() if one_step else z, y + x)
            return self.f_y(y, z), z
        if mode == "z":     # a single feature: z is refined n+1 times from (x, z) and is the answer
            with no_grad:
                for _ in range(n):
                    z = self.f_z(z, x)
            z = self.f_z(z.detach() if one_step else z, x)
            return z, z
        # multi_z: one latent z_i per latent step; z_i = f(z_i + z_{i-1} + y + x), then y = f(y + sum_i z_i)
        if n < 1:
            raise ValueError("latents='multi_z' needs n >= 1 (one z per latent step)")
        zs = list(z.unbind(1))
        for i in range(n):
            last = i == n - 1
            with contextlib.nullcontext() if last else no_grad:
                prev = zs[i - 1] if i else 0
                zs[i] = self.f_z(zs[i].detach() if (one_step and last) else zs[i], y + x + prev)
        y = self.f_y(y, sum(zs))
        return y, torch.stack(zs, 1)

    def deep_recursion(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """T latent recursions: T-1 without gradients, the last with gradients (or 1-step)."""
        if self.cfg.recursion == "direct":
            y = self.f_y(torch.zeros_like(x), x)
            return y, z
        with torch.no_grad():
            for _ in range(self.cfg.T - 1):
                y, z = self.latent_recursion(x, y, z)
        if self.cfg.grad_scope == "one_step":
            return self.latent_recursion(x, y.detach(), z.detach(), one_step=True)
        return self.latent_recursion(x, y, z)

    def heads(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = self.answer_head(y[:, self.cfg.puzzle_emb_len:]).float()
        q = self.halt_head(y[:, 0]).float()
        return logits, q[:, 0], q[:, 1]

    def forward(self, inputs: torch.Tensor, puzzle_ids: torch.Tensor, y: torch.Tensor, z: torch.Tensor
                ) -> StepOutput:
        """One supervision step from the carried (y, z); returns the detached new carry and the heads."""
        x = self.embed(inputs, puzzle_ids)
        y, z = self.deep_recursion(x, y, z)
        logits, q_halt, q_continue = self.heads(y)
        return StepOutput(y.detach(), z.detach(), logits, q_halt, q_continue)
