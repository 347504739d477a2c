"""nano-trm's PyTorch Lightning checkpoints (``.ckpt``): ``state_dict`` of its ``TRMModule``,
``hyper_parameters`` (the module's constructor arguments) and the callbacks' states, among them the EMA
callback's ``shadow`` weights (what nano-trm validates with).

nano-trm computes TRM (one network ``lenet``, z_H = y, z_L = z) with a halting head of one output (halt
only, trained by BCE); trm's head has a second, unused output, set to the official initialisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trm.config import Config, ModelConfig
from trm.errors import CheckpointError
from trm.interop.keys import NANO_TRM, rename, strip_prefixes


def is_lightning(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and (
        "hyper_parameters" in obj or "pytorch-lightning_version" in obj)


def ema_shadow(ckpt: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The EMA callback's shadow weights, if the checkpoint holds them."""
    for state in (ckpt.get("callbacks") or {}).values():
        if isinstance(state, dict) and isinstance(state.get("shadow"), dict) and state["shadow"]:
            return state["shadow"]
    return None


def to_trm(ckpt: dict[str, Any], where: Path, weights: str = "ema"
           ) -> tuple[dict[str, torch.Tensor], Config, list[str], list[str]]:
    """(trm-named weights, config, unknown keys, notes). ``weights``: ``ema`` (the shadow when present, as
    nano-trm validates) or ``raw`` (the trained weights of ``state_dict``)."""
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict):
        raise CheckpointError(f"{where}: a Lightning checkpoint without hyper_parameters (nano-trm saves them)")
    notes: list[str] = []
    state = dict(ckpt["state_dict"])
    shadow = ema_shadow(ckpt)
    if weights == "ema" and shadow:
        state.update(shadow)
        notes.append(f"EMA weights ({len(shadow)} tensors from the EMA callback)")
    elif weights == "ema":
        notes.append("no EMA callback state: the trained weights")
    for flag in ("use_conv_swiglu", "use_board_swiglu"):
        if hp.get(flag):
            raise CheckpointError(f"{where}: {flag}=True (a convolution in the MLP) has no trm counterpart")
    pos = hp.get("pos_emb_type", "1d")
    if pos == "2d":
        raise CheckpointError(f"{where}: pos_emb_type=2d (2-D rotary positions) has no trm counterpart")

    def need(key: str) -> Any:
        if key not in hp:
            raise CheckpointError(f"{where}: hyper_parameters lack {key!r}")
        return hp[key]

    hidden, ndim = int(need("hidden_size")), int(hp.get("puzzle_emb_dim", 0))
    prefix = (int(hp.get("puzzle_emb_len", 0)) or -(-ndim // hidden)) if ndim > 0 else 0
    mlp = bool(hp.get("use_mlp_t", False))
    rope = pos == "1d" and float(hp.get("rope_theta", 10000)) > 0 and not mlp
    dtype = hp.get("forward_dtype")
    dtype_name = {torch.bfloat16: "bfloat16", torch.float32: "float32", "bfloat16": "bfloat16",
                  "float32": "float32", None: "auto"}.get(dtype)
    if dtype_name is None:
        raise CheckpointError(f"{where}: forward_dtype {dtype!r} (trm computes in bfloat16 or float32)")
    n_sup = int(hp.get("N_supervision", 16))
    n_val = int(hp.get("N_supervision_val", n_sup))
    if n_sup != n_val:
        notes.append(f"N_sup = N_supervision_val = {n_val} (trained with {n_sup})")
    model = ModelConfig(
        hidden_size=hidden, num_heads=int(need("num_heads")), expansion=float(hp.get("ffn_expansion", 2)),
        num_layers=int(need("num_layers")), mixer="mlp" if mlp else "attention",
        pos_encoding="rope" if rope else "none", rope_theta=float(hp.get("rope_theta", 10000)) or 10000.0,
        T=int(need("H_cycles")), n=int(need("L_cycles")), N_sup=n_val, puzzle_emb_len=prefix,
        puzzle_emb_dim=ndim, halting="bce", halt_exploration_prob=float(hp.get("halt_exploration_prob", 0.1)),
        forward_dtype=dtype_name,  # type: ignore[arg-type]
        vocab_size=int(need("vocab_size")), seq_len=int(need("seq_len")),
        num_puzzle_ids=int(hp.get("num_puzzles", 0)) if ndim > 0 else 0)
    cfg = Config(model=model, preset="import:nano-trm")
    from trm.config import set_value
    recipe = {"lr": hp.get("learning_rate"), "puzzle_emb_lr": hp.get("learning_rate_emb"),
              "weight_decay": hp.get("weight_decay"), "lr_warmup_steps": hp.get("warmup_steps"),
              "lr_min_ratio": hp.get("lr_min_ratio"), "global_batch_size": hp.get("batch_size") or None}
    for key, value in recipe.items():
        if value is not None:
            set_value(cfg, f"train.{key}", value)
    renamed, unknown = rename(strip_prefixes(state, ("_orig_mod.",)), NANO_TRM)
    head_w, head_b = renamed.get("halt_head.weight"), renamed.get("halt_head.bias")
    if head_w is not None and head_b is not None and head_w.shape[:1] == (1,) and head_b.shape == (1,):
        # the continue output, unused by BCE halting: the official initialisation (weight 0, bias -5)
        renamed["halt_head.weight"] = torch.cat([head_w.float(), torch.zeros_like(head_w, dtype=torch.float32)])
        renamed["halt_head.bias"] = torch.cat([head_b.float(), torch.full_like(head_b, -5.0, dtype=torch.float32)])
    return renamed, cfg, unknown, notes
