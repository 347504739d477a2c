"""Check trm's checkpoint interop against the public code itself (not part of the test suite).

For each case, this builds a randomly initialised model with the official repository's own classes and
saves it as its ``pretrain.py`` does (``step_N``, keys ``_orig_mod.model.inner.*``, ``all_config.yaml``
from its ``PretrainConfig``). It then imports the checkpoint with :func:`trm.interop.read` and compares
three supervision steps of logits and halting logits. In the other direction it exports a random trm
model with ``trm export --format official``, parses the ``all_config.yaml`` with the official
``PretrainConfig``, loads ``step_N`` strictly with ``load_state_dict(assign=True)`` into the compiled
model (as its ``load_checkpoint``), and compares again (the TRM repository only: trm writes HRM as that
repository's ``hrm.py``). Everything is fp32 on the CPU.

    python benchmarks/check_public_code.py --official PATH/TinyRecursiveModels
    python benchmarks/check_public_code.py --hrm PATH/HRM          # one repository per run

PATH is a checkout of the public repository. Nothing of it is copied: its modules are imported from that
path. Run it in an environment that has what those modules import (pydantic, einops, hydra-core,
omegaconf, pyyaml; ``wandb``, ``coolname``, ``adam_atan2`` and ``argdantic`` are stubbed when absent, and
for the HRM repository ``flash_attn`` is replaced by ``F.scaled_dot_product_attention``, which computes
the same). It prints one line per case with the largest absolute difference.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

V, S, IDS, B = 11, 16, 5, 4
ARCH = {"hidden_size": 64, "num_heads": 4, "expansion": 4, "puzzle_emb_ndim": 64, "halt_max_steps": 4,
        "halt_exploration_prob": 0.1, "forward_dtype": "float32", "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
CASES = {   # name: (model file, its fields)
    "trm-attention": ("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                      dict(H_cycles=2, L_cycles=3, H_layers=0, L_layers=2, pos_encodings="rope", mlp_t=False,
                           puzzle_emb_len=4, no_ACT_continue=True)),
    "trm-mlp": ("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                dict(H_cycles=2, L_cycles=3, H_layers=0, L_layers=2, pos_encodings="none", mlp_t=True,
                     puzzle_emb_len=4, no_ACT_continue=True)),
    "trm-learned-act": ("recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1",
                        dict(H_cycles=2, L_cycles=3, H_layers=0, L_layers=2, pos_encodings="learned", mlp_t=False,
                             puzzle_emb_len=4, no_ACT_continue=False)),
    "hrm": ("recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1",
            dict(H_cycles=2, L_cycles=2, H_layers=2, L_layers=2, pos_encodings="rope", mlp_t=False)),
}


def _stub_missing(hrm: bool) -> None:
    for name in ("wandb", "coolname", "adam_atan2", "argdantic"):
        try:
            __import__(name)
            continue
        except ImportError:
            stub = types.ModuleType(name)
        stub.AdamATan2 = type("AdamATan2", (), {})                              # type: ignore[attr-defined]
        stub.generate_slug = lambda n=2: "check"                                # type: ignore[attr-defined]
        stub.ArgParser = type("ArgParser", (), {"__init__": lambda self, *a, **k: None,  # type: ignore[attr-defined]
                                                 "command": lambda self, *a, **k: (lambda f: f)})
        sys.modules[name] = stub
    if hrm:
        def flash_attn_func(q, k, v, causal=False, **_):
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  is_causal=causal).transpose(1, 2)
        for name in ("flash_attn_interface", "flash_attn"):
            mod = types.ModuleType(name)
            mod.flash_attn_func = flash_attn_func                               # type: ignore[attr-defined]
            sys.modules[name] = mod


def _official(repo: Path, hrm: bool):
    """(PretrainConfig, load_model_class) of a checkout."""
    sys.path.insert(0, str(repo))
    _stub_missing(hrm)
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        import pretrain
        from utils.functions import load_model_class
    finally:
        os.chdir(cwd)
    return pretrain.PretrainConfig, load_model_class


def _build(config, load_model_class):
    model_cfg = dict(**config.arch.__pydantic_extra__, batch_size=B, vocab_size=V, seq_len=S,
                     num_puzzle_identifiers=IDS, causal=False)
    model = load_model_class(config.arch.name)(model_cfg)
    return model, load_model_class(config.arch.loss.name)(model, **config.arch.loss.__pydantic_extra__)


def _steps(model, inputs, ids) -> list[torch.Tensor]:
    """Logits, q_halt, q_continue of three supervision steps of the official ACT model."""
    batch = {"inputs": inputs, "labels": inputs, "puzzle_identifiers": ids}
    out: list[torch.Tensor] = []
    with torch.no_grad():
        carry = model.initial_carry(batch)
        for _ in range(3):
            carry, o = model(carry=carry, batch=batch)
            out += [o["logits"], o["q_halt_logits"], o["q_continue_logits"]]
    return out


def _trm_steps(model, inputs, ids) -> list[torch.Tensor]:
    y, z = model.initial_state(inputs.shape[0])
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for _ in range(3):
            o = model(inputs, ids, y, z)
            y, z = o.y, o.z
            out += [o.logits, o.q_halt, o.q_continue]
    return out


def _diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a, b))


def check(repo: Path, hrm_repo: bool, work: Path) -> None:
    from trm import interop
    from trm.model.recursive import RecursiveReasoner
    PretrainConfig, load_model_class = _official(repo, hrm_repo)
    g = torch.Generator().manual_seed(1)
    inputs, ids = torch.randint(1, V, (B, S), generator=g), torch.randint(0, IDS, (B,), generator=g)
    for case, (name, fields) in CASES.items():
        if hrm_repo and not case.startswith("hrm"):
            continue
        arch_name = "hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1" if hrm_repo else name
        raw = {"arch": {"name": arch_name, "loss": {"name": "losses@ACTLossHead",
                                                    "loss_type": "stablemax_cross_entropy"}, **ARCH, **fields},
               "global_batch_size": B, "epochs": 10, "lr": 1e-4, "lr_min_ratio": 1.0, "lr_warmup_steps": 1,
               "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "puzzle_emb_lr": 1e-2,
               "puzzle_emb_weight_decay": 0.1}
        raw["data_path" if hrm_repo else "data_paths"] = "data/none" if hrm_repo else ["data/none"]
        config = PretrainConfig(**raw)
        torch.manual_seed(0)
        model, wrapped = _build(config, load_model_class)
        with torch.no_grad():
            for k, t in wrapped.state_dict().items():
                t.copy_(torch.randn_like(t) * (1.0 if k.endswith("_init") else 0.05))
        wrapped.eval()
        out = work / case
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"_orig_mod." + k: v for k, v in wrapped.state_dict().items()}, out / "step_1")
        (out / "all_config.yaml").write_text(yaml.dump(config.model_dump()))
        # official -> trm
        imported = interop.read(out / "step_1", seq_len=S)
        imported.config.model.forward_dtype = "float32"
        trm_model = RecursiveReasoner(imported.config.model)
        trm_model.load_state_dict(imported.weights)
        trm_model.eval()
        a = _diff(_steps(model, inputs, ids), _trm_steps(trm_model, inputs, ids))
        if hrm_repo:     # trm exports HRM as the TRM repository's hrm.py, which the HRM repository does not have
            print(f"{case:16s} {arch_name:55s} official->trm max|diff| {a:.2g}")
            continue
        # trm -> official
        exported = work / f"{case}-export"
        from trm.solve import Solver
        Solver(trm_model, imported.config, imported.data, torch.device("cpu")).save_pretrained(work / f"{case}-trm")
        subprocess.run([sys.executable, "-m", "trm", "export", str(work / f"{case}-trm"), "--out", str(exported),
                        "--step", "2"], check=True, capture_output=True)
        back_cfg = PretrainConfig(**yaml.safe_load((exported / "all_config.yaml").read_text()))
        torch.manual_seed(1)
        model2, wrapped2 = _build(back_cfg, load_model_class)
        torch.compile(wrapped2).load_state_dict(torch.load(exported / "step_2", weights_only=True), assign=True)
        wrapped2.eval()
        b = _diff(_steps(model2, inputs, ids), _trm_steps(trm_model, inputs, ids))
        print(f"{case:16s} {arch_name:55s} official->trm max|diff| {a:.2g}   trm->official max|diff| {b:.2g}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)     # both define the modules `pretrain`, `models`
    which.add_argument("--official", type=Path, help="checkout of SamsungSAILMontreal/TinyRecursiveModels")
    which.add_argument("--hrm", type=Path, help="checkout of sapientinc/HRM")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        check((args.official or args.hrm).resolve(), args.hrm is not None, Path(tmp))


if __name__ == "__main__":
    main()
