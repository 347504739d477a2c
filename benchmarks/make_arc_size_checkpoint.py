"""Write an official-layout TRM checkpoint at the paper's ARC-AGI-1 size (random weights), to time and
measure ``trm import`` / ``trm eval`` on a file as large as the published ones (1.82 GB).

    python benchmarks/make_arc_size_checkpoint.py OUT_DIR
    /usr/bin/time -v trm import OUT_DIR --out /tmp/m --seq-len 900
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

D, V, S, P, IDS = 512, 12, 900, 16, 876406      # hidden, vocabulary, 30x30 grid, prefix, ARC-AGI-1 identifiers


def swiglu_inner(d: int) -> int:
    return -(-round(4 * d * 2 / 3) // 256) * 256


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    t = {"embed_tokens.embedding_weight": torch.randn(V, D), "lm_head.weight": torch.randn(V, D),
         "q_head.weight": torch.zeros(2, D), "q_head.bias": torch.full((2,), -5.0),
         "H_init": torch.randn(D).bfloat16(), "L_init": torch.randn(D).bfloat16(),
         "puzzle_emb.weights": torch.randn(IDS, D) * 0.01}
    for i in range(2):
        b = f"L_level.layers.{i}."
        t[b + "self_attn.qkv_proj.weight"] = torch.randn(3 * D, D)
        t[b + "self_attn.o_proj.weight"] = torch.randn(D, D)
        t[b + "mlp.gate_up_proj.weight"] = torch.randn(2 * swiglu_inner(D), D)
        t[b + "mlp.down_proj.weight"] = torch.randn(D, swiglu_inner(D))
    torch.save({f"_orig_mod.model.inner.{k}": v for k, v in t.items()}, out / "step_518071")
    arch = {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "H_cycles": 3, "L_cycles": 4, "H_layers": 0, "L_layers": 2, "hidden_size": D, "num_heads": 8,
            "expansion": 4, "puzzle_emb_ndim": D, "pos_encodings": "rope", "halt_max_steps": 16,
            "halt_exploration_prob": 0.1, "forward_dtype": "bfloat16", "mlp_t": False, "puzzle_emb_len": P,
            "no_ACT_continue": True}
    config = {"arch": arch, "data_paths": ["data/arc1concept-aug-1000"], "global_batch_size": 768}
    (out / "all_config.yaml").write_text(yaml.safe_dump(config))
    print(f"wrote {out / 'step_518071'} and all_config.yaml")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
