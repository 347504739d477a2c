"""The official TRM / HRM code's checkpoints: ``step_N`` (``torch.save(model.state_dict())`` of the
compiled loss head around the ACT wrapper: keys ``_orig_mod.model.inner.*``) with ``all_config.yaml``
(the run's config: ``arch`` with the model's fields, and the training recipe) beside it.

Read: the architecture ``arch.name`` and its fields become a trm :class:`~trm.config.Config`. Written
(:func:`from_trm`): the same two files, for a trm model that one of the official model files computes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from trm.config import Config, ModelConfig
from trm.errors import CheckpointError
from trm.interop.keys import OFFICIAL, rename, strip_prefixes

PREFIXES = ("_orig_mod.", "model.", "inner.")
PREFIX = "_orig_mod.model.inner."        # what the official pretrain.py saves and loads

ARCH_NAMES = {"trm": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
              "hrm": "recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1"}
LOSS = {"name": "losses@ACTLossHead"}
# Model files of the official code, by module name: the two trm reproduces, and those it does not.
KINDS = {"trm": "trm", "hrm": "hrm", "hrm_act_v1": "hrm"}       # hrm_act_v1: the original HRM repository
NOT_MAPPED = {
    "trm_singlez": "its single latent is updated n times from z + x and then once from z alone; trm's "
                   "latents=z reads the paper as n+1 updates from z + x",
    "trm_hier6": "its six latents are summed into every update; trm's latents=multi_z refines z_i from z_(i-1)",
    "transformers_baseline": "it carries z_H across supervision steps (z_H = f(z_H + x)); trm's "
                             "recursion=direct computes y = f(x) afresh",
}


def read_config(path: Path) -> dict[str, Any]:
    """``all_config.yaml`` as a mapping (plain YAML: the official code dumps a pydantic model)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable YAML file ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("arch"), dict) or "name" not in raw["arch"]:
        raise CheckpointError(f"{path}: not an official all_config.yaml (no arch.name)")
    return raw


def arch_kind(arch: dict[str, Any], where: Path) -> str:
    """'trm' or 'hrm' from ``arch.name`` (``recursive_reasoning.trm@...``); other model files are refused."""
    module = str(arch["name"]).split("@")[0].rsplit(".", 1)[-1]
    if module in NOT_MAPPED:
        raise CheckpointError(f"{where}: arch {arch['name']} does not map onto trm: {NOT_MAPPED[module]}")
    if module not in KINDS:
        raise CheckpointError(f"{where}: unknown arch {arch['name']!r} (trm reads "
                              f"{', '.join(sorted(KINDS))})")
    return KINDS[module]


def to_trm(state: dict[str, Any], raw: dict[str, Any], where: Path
           ) -> tuple[dict[str, torch.Tensor], Config, list[str], int | None]:
    """(trm-named fp32 weights, the config, keys the layout does not know, seq_len when the weights tell it)."""
    arch = raw["arch"]
    kind = arch_kind(arch, where)
    weights, unknown = rename(strip_prefixes(state, PREFIXES), OFFICIAL)

    def get(key: str, default: Any = None) -> Any:
        if key not in arch and default is None:
            raise CheckpointError(f"{where}: all_config.yaml lacks arch.{key}")
        return arch.get(key, default)

    hidden, ndim = int(get("hidden_size")), int(get("puzzle_emb_ndim", 0))
    prefix = int(get("puzzle_emb_len", 0)) if kind == "trm" else 0       # HRM: ceil(ndim / hidden) always
    if prefix == 0 or ndim == 0:
        prefix = -(-ndim // hidden)
    h_layers, l_layers = int(get("H_layers", 0)), int(get("L_layers"))
    if kind == "hrm" and h_layers != l_layers:
        raise CheckpointError(f"{where}: H_layers={h_layers} and L_layers={l_layers} differ; trm's separate "
                              "networks have one depth")
    dtype = str(get("forward_dtype", "bfloat16"))
    if dtype not in ("bfloat16", "float32"):
        raise CheckpointError(f"{where}: forward_dtype {dtype!r} (trm computes in bfloat16 or float32)")
    mlp = bool(get("mlp_t", False))
    pos = str(get("pos_encodings", "rope"))
    loss_type = str(arch.get("loss", {}).get("loss_type", "stablemax_cross_entropy"))
    model = ModelConfig(
        hidden_size=hidden, num_heads=int(get("num_heads")), expansion=float(get("expansion")),
        num_layers=l_layers, mixer="mlp" if mlp else "attention",
        pos_encoding="none" if mlp or pos not in ("rope", "learned") else pos,  # type: ignore[arg-type]
        rope_theta=float(get("rope_theta", 10000.0)), rms_norm_eps=float(get("rms_norm_eps", 1e-5)),
        T=int(get("H_cycles")), n=int(get("L_cycles")), N_sup=int(get("halt_max_steps")),
        puzzle_emb_len=prefix, puzzle_emb_dim=ndim,
        halting="qlearn" if kind == "hrm" or not get("no_ACT_continue", True) else "bce",
        halt_exploration_prob=float(get("halt_exploration_prob", 0.1)),
        separate_nets=kind == "hrm", grad_scope="one_step" if kind == "hrm" else "last_recursion",
        forward_dtype=dtype,  # type: ignore[arg-type]
        vocab_size=int(weights["embed_tokens"].shape[0]) if "embed_tokens" in weights else 0,
        num_puzzle_ids=int(weights["puzzle_emb.weight"].shape[0]) if "puzzle_emb.weight" in weights else 0)
    cfg = Config(model=model, preset=f"import:{arch['name']}")
    _train_recipe(cfg, raw, loss_type)
    seq_len = None
    if "embed_pos" in weights:
        seq_len = int(weights["embed_pos"].shape[0]) - prefix
    elif "f_z.blocks.0.mixer.mlp.gate_up.weight" in weights:
        seq_len = int(weights["f_z.blocks.0.mixer.mlp.gate_up.weight"].shape[1]) - prefix
    return weights, cfg, unknown, seq_len


def _train_recipe(cfg: Config, raw: dict[str, Any], loss_type: str) -> None:
    """The training fields of all_config.yaml that trm has, so a resumed or compared run uses them."""
    from trm.config import set_value
    t = {"global_batch_size": raw.get("global_batch_size"), "epochs": raw.get("epochs"),
         "eval_interval": raw.get("eval_interval"), "lr": raw.get("lr"), "lr_min_ratio": raw.get("lr_min_ratio"),
         "lr_warmup_steps": raw.get("lr_warmup_steps"), "weight_decay": raw.get("weight_decay"),
         "puzzle_emb_lr": raw.get("puzzle_emb_lr"), "puzzle_emb_weight_decay": raw.get("puzzle_emb_weight_decay"),
         "seed": raw.get("seed"), "ema": raw.get("ema"), "ema_rate": raw.get("ema_rate"),
         "loss": {"stablemax_cross_entropy": "stablemax", "softmax_cross_entropy": "softmax"}.get(loss_type)}
    if raw.get("beta1") is not None and raw.get("beta2") is not None:
        t["betas"] = [raw["beta1"], raw["beta2"]]
    for key, value in t.items():
        if value is not None:
            set_value(cfg, f"train.{key}", value)
    paths = raw.get("data_paths") or ([raw["data_path"]] if raw.get("data_path") else [])   # HRM: data_path
    if paths and isinstance(paths, list):
        cfg.data.path = str(paths[0])


# ----------------------------------------------------------------------------------------------
# Export

def exportable(m: ModelConfig) -> str:
    """'trm' or 'hrm': the official model file that computes ``m``; CheckpointError when none does."""
    if m.recursion != "recursive" or m.latents != "yz":
        raise CheckpointError(f"no official model file computes recursion={m.recursion}, latents={m.latents} "
                              "as trm does (see docs/CHECKPOINTS.md)")
    if m.puzzle_emb_dim == 0 and m.puzzle_emb_len:
        raise CheckpointError("the official code drops the prefix when puzzle_emb_ndim is 0; this model keeps "
                              f"{m.puzzle_emb_len} zero prefix positions")
    if not m.separate_nets:
        if m.grad_scope != "last_recursion":
            raise CheckpointError("a single network with grad_scope=one_step has no official model file")
        return "trm"
    if m.grad_scope != "one_step" or m.halting != "qlearn":
        raise CheckpointError("separate networks export as the official HRM, which trains with the 1-step "
                              "gradient and Q-learning halting; this model has grad_scope="
                              f"{m.grad_scope}, halting={m.halting}")
    if m.puzzle_emb_len != -(-m.puzzle_emb_dim // m.hidden_size):
        raise CheckpointError(f"the official HRM uses ceil(puzzle_emb_ndim / hidden_size) prefix positions; this "
                              f"model has {m.puzzle_emb_len}")
    return "hrm"


def from_trm(weights: dict[str, torch.Tensor], cfg: Config, dtype: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict as the official pretrain.py saves it, all_config.yaml as a mapping) of a trm model
    trained in ``dtype``: the initial states are stored in it, as the official model creates them."""
    m, t = cfg.model, cfg.train
    kind = exportable(m)
    renamed, unknown = rename(weights, OFFICIAL, to_trm=False)
    assert not unknown, unknown      # every key of a model that passes exportable() has an official name
    buffer_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    state = {PREFIX + k: (v.to(buffer_dtype) if k in ("H_init", "L_init") else v).detach().cpu().contiguous()
             for k, v in renamed.items()}
    arch: dict[str, Any] = {
        "name": ARCH_NAMES[kind], "loss": {**LOSS, "loss_type": f"{t.loss}_cross_entropy"},
        "halt_exploration_prob": m.halt_exploration_prob, "halt_max_steps": m.N_sup,
        "H_cycles": m.T, "L_cycles": m.n, "H_layers": m.num_layers if kind == "hrm" else 0,
        "L_layers": m.num_layers, "hidden_size": m.hidden_size, "num_heads": m.num_heads,
        "expansion": m.expansion, "puzzle_emb_ndim": m.puzzle_emb_dim, "pos_encodings": m.pos_encoding,
        "rope_theta": m.rope_theta, "rms_norm_eps": m.rms_norm_eps, "forward_dtype": dtype,
        "mlp_t": m.mixer == "mlp"}
    if kind == "trm":
        arch.update(puzzle_emb_len=m.puzzle_emb_len, no_ACT_continue=m.halting == "bce")
    config = {
        "arch": arch, "data_paths": [cfg.data.path] if cfg.data.path else [], "data_paths_test": [],
        "evaluators": [], "global_batch_size": t.global_batch_size, "epochs": t.epochs, "lr": t.lr,
        "lr_min_ratio": t.lr_min_ratio, "lr_warmup_steps": t.lr_warmup_steps, "weight_decay": t.weight_decay,
        "beta1": t.betas[0], "beta2": t.betas[1], "puzzle_emb_lr": t.puzzle_emb_lr,
        "puzzle_emb_weight_decay": t.puzzle_emb_weight_decay, "project_name": None, "run_name": None,
        "load_checkpoint": None, "checkpoint_path": None, "seed": t.seed, "checkpoint_every_eval": False,
        "eval_interval": t.eval_interval, "min_eval_interval": 0, "eval_save_outputs": [], "ema": t.ema,
        "ema_rate": t.ema_rate, "freeze_weights": False}
    return state, config
