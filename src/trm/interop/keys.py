"""Key names of the public layouts and trm's (docs/CHECKPOINTS.md has the table).

Each layout is three tables: the top-level tensors, the networks (a prefix each, blocks numbered below
it) and the tensors of one block. :func:`rename` maps a whole state dict one way or the other, and reports
the keys it does not know instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    top: dict[str, str]        # source name -> trm name
    networks: dict[str, str]   # source prefix (blocks under ".layers.N") -> trm prefix (".blocks.N")
    block: dict[str, str]      # within one block: source name -> trm name

    def to_trm(self, key: str) -> str | None:
        """The trm name of a source key, or None when the layout has no such key."""
        if key in self.top:
            return self.top[key]
        m = re.fullmatch(r"(\w+)\.layers\.(\d+)\.(.+)", key)
        if m and m[1] in self.networks and m[3] in self.block:
            return f"{self.networks[m[1]]}.blocks.{m[2]}.{self.block[m[3]]}"
        return None

    def from_trm(self, key: str) -> str | None:
        """The source name of a trm key, or None."""
        top = {v: k for k, v in self.top.items()}
        if key in top:
            return top[key]
        m = re.fullmatch(r"(\w+)\.blocks\.(\d+)\.(.+)", key)
        networks = {v: k for k, v in self.networks.items()}
        block = {v: k for k, v in self.block.items()}
        if m and m[1] in networks and m[3] in block:
            return f"{networks[m[1]]}.layers.{m[2]}.{block[m[3]]}"
        return None


# One block of the public code (TRM, HRM and nano-trm name it alike): attention or the sequence MLP
# ("mlp_t"), then the SwiGLU; trm's Block holds the same products ([q; k; v] rows, [gate; up] rows).
BLOCK = {
    "self_attn.qkv_proj.weight": "mixer.qkv.weight",
    "self_attn.o_proj.weight": "mixer.out.weight",
    "mlp_t.gate_up_proj.weight": "mixer.mlp.gate_up.weight",
    "mlp_t.down_proj.weight": "mixer.mlp.down.weight",
    "mlp.gate_up_proj.weight": "mlp.gate_up.weight",
    "mlp.down_proj.weight": "mlp.down.weight",
}

# The official TRM / HRM inner model. z_H is the paper's y, z_L its z; TRM has only L_level (f).
OFFICIAL = Layout(
    top={"embed_tokens.embedding_weight": "embed_tokens", "embed_pos.embedding_weight": "embed_pos",
         "H_init": "y_init", "L_init": "z_init", "puzzle_emb.weights": "puzzle_emb.weight",
         "lm_head.weight": "answer_head.weight", "q_head.weight": "halt_head.weight",
         "q_head.bias": "halt_head.bias"},
    networks={"L_level": "f_z", "H_level": "f_y_separate"},
    block=BLOCK)

# nano-trm's TRMModule (a LightningModule): one network "lenet"; its q_head has the halt output only.
NANO_TRM = Layout(
    top={"input_embedding.embedding_weight": "embed_tokens", "z_H_init": "y_init", "z_L_init": "z_init",
         "puzzle_emb.weights": "puzzle_emb.weight", "lm_head.weight": "answer_head.weight",
         "q_head.weight": "halt_head.weight", "q_head.bias": "halt_head.bias"},
    networks={"lenet": "f_z"},
    block=BLOCK)


def rename(state: dict[str, torch.Tensor], layout: Layout, to_trm: bool = True
           ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(state dict under the other naming, keys the layout does not know)."""
    out, unknown = {}, []
    for key, value in state.items():
        new = layout.to_trm(key) if to_trm else layout.from_trm(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    return out, unknown


def strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Drop the wrappers' prefixes, each optional, in order (``_orig_mod.`` of ``torch.compile``, ``model.``
    of the loss head, ``inner.`` of the ACT wrapper)."""
    out = {}
    for key, value in state.items():
        for p in prefixes:
            if key.startswith(p):
                key = key[len(p):]
        out[key] = value
    return out
