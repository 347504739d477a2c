"""Other implementations' checkpoints (trm.interop, trm import / export, on-the-fly loading).

The fixtures are written here from the layouts the public code documents (key names and shapes, the
config files), with random weights; the reference forward below computes the public models' recursion
from those raw tensors with plain torch ops, independently of trm's modules, so that a wrong mapping
(a swapped q/k/v block, a transposed mixer, H and L exchanged, a dropped prefix) changes its outputs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import run_cli
from trm import interop
from trm.errors import CheckpointError
from trm.model.recursive import RecursiveReasoner

V, S, D, H, P, IDS = 6, 16, 32, 4, 2, 1        # the 4x4 Sudoku of conftest: vocab 6, 16 cells, 1 identifier


# ----------------------------------------------------------------------------------------------
# Fixtures in the public layouts

def _inner(kind: str, mlp: bool, pos: str, layers: int, ids: int, prefix: int, seed: int) -> dict[str, torch.Tensor]:
    """The official inner model's tensors (names without the wrappers' prefixes)."""
    g = torch.Generator().manual_seed(seed)

    # Half the official initialisation's scale (1 / sqrt(fan-in)): at the full scale 16 random blocks in a
    # row amplify fp32 rounding (a 1e-7 change of z_init moves the logits by up to 1e-3 after 3 steps),
    # at half of it a rounding-level change stays below 1e-6, and three steps still move the logits by ~1.
    def r(*shape, scale=None):
        return torch.randn(*shape, generator=g) * (scale if scale is not None else 0.5 * shape[-1] ** -0.5)

    inner_dim = lambda d: -(-round(4 * d * 2 / 3) // 256) * 256           # noqa: E731 - SwiGLU width
    t = {"embed_tokens.embedding_weight": r(V, D), "lm_head.weight": r(V, D), "q_head.weight": r(2, D),
         "q_head.bias": r(2, scale=1.0), "H_init": r(D, scale=1.0), "L_init": r(D, scale=1.0),
         "puzzle_emb.weights": r(ids, D)}
    if pos == "learned":
        t["embed_pos.embedding_weight"] = r(S + prefix, D)
    levels = ["L_level"] + (["H_level"] if kind == "hrm" else [])
    for level in levels:
        for i in range(layers):
            b = f"{level}.layers.{i}."
            if mlp:
                L = S + prefix
                t[b + "mlp_t.gate_up_proj.weight"] = r(2 * inner_dim(L), L)
                t[b + "mlp_t.down_proj.weight"] = r(L, inner_dim(L))
            else:
                t[b + "self_attn.qkv_proj.weight"] = r(3 * D, D)
                t[b + "self_attn.o_proj.weight"] = r(D, D)
            t[b + "mlp.gate_up_proj.weight"] = r(2 * inner_dim(D), D)
            t[b + "mlp.down_proj.weight"] = r(D, inner_dim(D))
    return t


def write_official(out: Path, kind: str = "trm", mlp: bool = False, pos: str = "rope", act: bool = False,
                   ids: int = IDS, seed: int = 0, step: int = 1000) -> Path:
    """``step_N`` (the compiled loss head's state dict) and ``all_config.yaml``, as the official pretrain.py."""
    prefix = P if kind == "trm" else 1
    inner = _inner(kind, mlp, pos, 2, ids, prefix, seed)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({f"_orig_mod.model.inner.{k}": v for k, v in inner.items()}, out / f"step_{step}")
    arch = {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1" if kind == "trm"
            else "recursive_reasoning.hrm@HierarchicalReasoningModel_ACTV1",
            "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
            "halt_exploration_prob": 0.1, "halt_max_steps": 3, "H_cycles": 2, "L_cycles": 3 if kind == "trm" else 2,
            "H_layers": 0 if kind == "trm" else 2, "L_layers": 2, "hidden_size": D, "num_heads": H,
            "expansion": 4, "puzzle_emb_ndim": D, "pos_encodings": pos, "forward_dtype": "bfloat16", "mlp_t": mlp}
    if kind == "trm":
        arch.update(puzzle_emb_len=P, no_ACT_continue=not act)
    config = {"arch": arch, "data_paths": ["data/not-here"], "global_batch_size": 768, "epochs": 100000,
              "lr": 1e-4, "lr_min_ratio": 1.0, "lr_warmup_steps": 2000, "weight_decay": 0.1, "beta1": 0.9,
              "beta2": 0.95, "puzzle_emb_lr": 1e-2, "puzzle_emb_weight_decay": 0.1, "seed": 0, "ema": True,
              "ema_rate": 0.999, "eval_interval": 10000, "checkpoint_every_eval": True}
    (out / "all_config.yaml").write_text(yaml.safe_dump(config))
    return out / f"step_{step}"


def write_nano(path: Path, mlp: bool = False, ids: int = IDS, seed: int = 0, **hp_extra) -> Path:
    """A Lightning checkpoint of nano-trm's TRMModule: state_dict, hyper_parameters, the EMA callback."""
    inner = _inner("trm", mlp, "rope", 2, ids, P, seed)
    rename = {"embed_tokens.embedding_weight": "input_embedding.embedding_weight", "H_init": "z_H_init",
              "L_init": "z_L_init"}
    state = {rename.get(k, k).replace("L_level.", "lenet."): v for k, v in inner.items()}
    state["q_head.weight"], state["q_head.bias"] = state["q_head.weight"][:1], state["q_head.bias"][:1]
    shadow = {k: v + 0.05 * torch.randn_like(v) for k, v in state.items() if k not in
              ("z_H_init", "z_L_init", "puzzle_emb.weights")}       # EMA covers the parameters only
    hp = {"hidden_size": D, "num_layers": 2, "num_heads": H, "max_grid_size": 4, "H_cycles": 2, "L_cycles": 3,
          "N_supervision": 3, "N_supervision_val": 3, "ffn_expansion": 4, "learning_rate": 1e-4,
          "learning_rate_emb": 1e-2, "weight_decay": 0.01, "warmup_steps": 2000, "halt_exploration_prob": 0.1,
          "puzzle_emb_dim": D, "puzzle_emb_len": P, "rope_theta": 10000, "pos_emb_type": None if mlp else "1d",
          "use_mlp_t": mlp, "use_conv_swiglu": False, "use_board_swiglu": False, "lr_min_ratio": 1.0,
          "use_muon": False, "vocab_size": V, "num_puzzles": ids, "batch_size": 16, "pad_value": 0, "seq_len": S,
          "output_dir": Path("/tmp/somewhere"), "forward_dtype": torch.float32, **hp_extra}
    ckpt = {"epoch": 3, "global_step": 0, "pytorch-lightning_version": "2.6.6", "state_dict": state,
            "loops": {}, "callbacks": {"EMACallback": {"shadow": shadow, "decay": 0.999}},
            "optimizer_states": [], "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": hp}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


# ----------------------------------------------------------------------------------------------
# The public models' forward, from the raw tensors

def _rms(x, dim=-1):
    return x * torch.rsqrt(x.square().mean(dim, keepdim=True) + 1e-5)


def _swiglu(x, w_gate_up, w_down):
    gate, up = (x @ w_gate_up.T).chunk(2, dim=-1)
    return (F.silu(gate) * up) @ w_down.T


def _block(t, b, h, cos_sin):
    if b + "mlp_t.gate_up_proj.weight" in t:              # mix along the sequence, norm over it
        ht = h.transpose(1, 2)
        h = _rms(ht + _swiglu(ht, t[b + "mlp_t.gate_up_proj.weight"], t[b + "mlp_t.down_proj.weight"])).transpose(1, 2)
    else:
        B, L, _ = h.shape
        qkv = (h @ t[b + "self_attn.qkv_proj.weight"].T).view(B, L, 3 * H, D // H)
        q, k, v = qkv[:, :, :H], qkv[:, :, H:2 * H], qkv[:, :, 2 * H:]
        if cos_sin is not None:
            cos, sin = (c[:, None, :] for c in cos_sin)
            half = lambda x: torch.cat((-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]), -1)  # noqa: E731
            q, k = q * cos + half(q) * sin, k * cos + half(k) * sin
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = _rms(h + a.transpose(1, 2).reshape(B, L, D) @ t[b + "self_attn.o_proj.weight"].T)
    return _rms(h + _swiglu(h, t[b + "mlp.gate_up_proj.weight"], t[b + "mlp.down_proj.weight"]))


def reference_steps(t: dict[str, torch.Tensor], kind: str, T: int, n: int, prefix: int, pos: str,
                    inputs: torch.Tensor, ids: torch.Tensor, steps: int, y_key="H_init", z_key="L_init"):
    """[(logits, q_halt, q_continue)] of ``steps`` supervision steps from the initial states (fp32)."""
    t = {k: v.float() for k, v in t.items()}
    B = inputs.shape[0]
    x = t["embed_tokens.embedding_weight"][inputs]
    rows = F.pad(t["puzzle_emb.weights"][ids], (0, prefix * D - t["puzzle_emb.weights"].shape[1]))
    x = torch.cat([rows.view(B, prefix, D), x], 1)
    if pos == "learned":
        x = 0.707106781 * (x + t["embed_pos.embedding_weight"])
    x = math.sqrt(D) * x
    cos_sin = None
    if pos == "rope" and "L_level.layers.0.self_attn.qkv_proj.weight" in t:
        hd = D // H
        freqs = torch.outer(torch.arange(S + prefix, dtype=torch.float32),
                            1.0 / 10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        emb = torch.cat((freqs, freqs), -1)
        cos_sin = (emb.cos(), emb.sin())

    def level(name, h, inj):
        h = h + inj
        i = 0
        while f"{name}.layers.{i}.mlp.down_proj.weight" in t:
            h = _block(t, f"{name}.layers.{i}.", h, cos_sin)
            i += 1
        return h

    y = t[y_key].expand(B, S + prefix, D)
    z = t[z_key].expand(B, S + prefix, D)
    out = []
    for _ in range(steps):
        for _ in range(T):
            for _ in range(n):
                z = level("L_level", z, y + x)
            y = level("H_level" if kind == "hrm" else "L_level", y, z)
        q = y[:, 0] @ t["q_head.weight"].T + t["q_head.bias"]
        out.append((y[:, prefix:] @ t["lm_head.weight"].T, q[:, 0], q[:, 1] if q.shape[1] > 1 else None))
    return out


def trm_steps(model: RecursiveReasoner, inputs, ids, steps: int):
    model.eval()
    y, z = model.initial_state(inputs.shape[0])
    out = []
    with torch.no_grad():
        for _ in range(steps):
            o = model(inputs, ids, y, z)
            y, z = o.y, o.z
            out.append((o.logits, o.q_halt, o.q_continue))
    return out


def _model_of(imported: interop.Imported) -> RecursiveReasoner:
    imported.config.model.forward_dtype = "float32"
    model = RecursiveReasoner(imported.config.model)
    model.load_state_dict(imported.weights)
    return model


def _batch(ids: int = IDS, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, V, (5, S), generator=g), torch.randint(0, ids, (5,), generator=g)


def _max_diff(a, b) -> float:
    return max(float((p - q).abs().max()) for sa, sb in zip(a, b) for p, q in zip(sa, sb) if p is not None
               and q is not None)


# ----------------------------------------------------------------------------------------------
# The numerical contract

@pytest.mark.parametrize("kind,mlp,pos,act", [("trm", False, "rope", False), ("trm", True, "none", False),
                                              ("trm", False, "learned", True), ("hrm", False, "rope", False)])
def test_an_imported_official_model_gives_the_source_models_outputs(tmp_path, kind, mlp, pos, act):
    step = write_official(tmp_path / "ckpt", kind=kind, mlp=mlp, pos=pos, act=act, ids=7)
    imported = interop.read(step, seq_len=S)
    m = imported.config.model
    assert (m.separate_nets, m.grad_scope) == ((True, "one_step") if kind == "hrm" else (False, "last_recursion"))
    assert m.halting == ("qlearn" if kind == "hrm" or act else "bce") and m.forward_dtype == "bfloat16"
    assert (m.mixer, m.num_puzzle_ids) == ("mlp" if mlp else "attention", 7)
    assert m.puzzle_emb_len == (P if kind == "trm" else 1)          # HRM: ceil(puzzle_emb_ndim / hidden_size)
    inputs, ids = _batch(ids=7)
    state = torch.load(step, weights_only=True)
    ref = reference_steps({k.removeprefix("_orig_mod.model.inner."): v for k, v in state.items()}, kind,
                          m.T, m.n, m.puzzle_emb_len, pos, inputs, ids, steps=3)
    got = trm_steps(_model_of(imported), inputs, ids, steps=3)
    assert _max_diff(got, ref) <= 1e-5
    assert float((got[2][0] - got[0][0]).abs().max()) > 1e-3       # the carry matters: steps differ


def test_a_wrong_mapping_would_be_seen(tmp_path):
    """The comparison above can fail: exchanging q and k in the source changes the reference."""
    step = write_official(tmp_path / "ckpt")
    imported = interop.read(step, seq_len=S)
    inputs, ids = _batch()
    t = {k.removeprefix("_orig_mod.model.inner."): v for k, v in torch.load(step, weights_only=True).items()}
    w = t["L_level.layers.0.self_attn.qkv_proj.weight"]
    t["L_level.layers.0.self_attn.qkv_proj.weight"] = torch.cat([w[D:2 * D], w[:D], w[2 * D:]])
    ref = reference_steps(t, "trm", 2, 3, P, "rope", inputs, ids, steps=1)
    assert _max_diff(trm_steps(_model_of(imported), inputs, ids, 1), ref) > 1e-3


@pytest.mark.parametrize("mlp", [False, True])
def test_an_imported_nano_trm_model_gives_the_source_models_outputs(tmp_path, mlp):
    path = write_nano(tmp_path / "last.ckpt", mlp=mlp, ids=3)
    ckpt = torch.load(path, weights_only=False)
    inputs, ids = _batch(ids=3)
    for weights in ("ema", "raw"):
        imported = interop.read(path, weights=weights)
        state = dict(ckpt["state_dict"])
        if weights == "ema":
            state.update(ckpt["callbacks"]["EMACallback"]["shadow"])
        t = {k.replace("lenet.", "L_level."): v for k, v in state.items()}
        t["embed_tokens.embedding_weight"] = t.pop("input_embedding.embedding_weight")
        ref = reference_steps(t, "trm", 2, 3, P, "none" if mlp else "rope", inputs, ids, steps=3,
                              y_key="z_H_init", z_key="z_L_init")
        got = trm_steps(_model_of(imported), inputs, ids, steps=3)
        assert _max_diff(got, ref) <= 1e-5, weights
    assert imported.config.model.halting == "bce" and imported.config.model.forward_dtype == "float32"


@pytest.mark.parametrize("variant", ["trm-att", "trm-mlp", "hrm"])
def test_export_to_the_official_layout_and_back_is_bit_identical(tmp_path, variant, capsys):
    from trm.config import ModelConfig
    from trm.solve import Solver
    kw = {"trm-att": {}, "trm-mlp": {"mixer": "mlp", "pos_encoding": "none"},
          "hrm": {"separate_nets": True, "grad_scope": "one_step", "halting": "qlearn", "puzzle_emb_len": 1}}[variant]
    cfg_model = ModelConfig(hidden_size=D, num_heads=H, num_layers=2, T=2, n=2, N_sup=3, vocab_size=V, seq_len=S,
                            num_puzzle_ids=4, puzzle_emb_dim=D, puzzle_emb_len=kw.pop("puzzle_emb_len", P),
                            forward_dtype="float32", **kw)
    torch.manual_seed(0)
    model = RecursiveReasoner(cfg_model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)          # no zero head: every output depends on every tensor
        model.puzzle_emb.weight.normal_()
    from trm.config import Config
    cfg = Config(model=cfg_model)
    Solver(model, cfg, {"task": "sudoku", "grid_shape": [4, 4]}, torch.device("cpu")).save_pretrained(tmp_path / "m")
    code, out, err = run_cli(capsys, "export", str(tmp_path / "m"), "--out", str(tmp_path / "official"), "--step", "7")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "official")) == ["all_config.yaml", "step_7"]
    state = torch.load(tmp_path / "official" / "step_7", weights_only=True)
    assert all(k.startswith("_orig_mod.model.inner.") for k in state)
    raw = yaml.safe_load((tmp_path / "official" / "all_config.yaml").read_text())
    assert raw["arch"]["name"].split("@")[0].endswith("hrm" if variant == "hrm" else "trm")
    code, out, err = run_cli(capsys, "import", str(tmp_path / "official"), "--out", str(tmp_path / "back"),
                             "--seq-len", str(S))
    assert code == 0, err
    from trm.solve import load
    back = load(tmp_path / "back", dtype="float32")
    for k, v in model.state_dict().items():
        assert torch.equal(back.model.state_dict()[k], v), k
    inputs, ids = _batch(ids=4)
    a, b = trm_steps(model, inputs, ids, 3), trm_steps(back.model, inputs, ids, 3)
    assert all(torch.equal(p, q) for sa, sb in zip(a, b) for p, q in zip(sa, sb))


def test_an_official_checkpoint_round_trips_through_trm(tmp_path, capsys):
    """official -> trm import -> trm export --format official: the same tensors under the same names."""
    step = write_official(tmp_path / "src", kind="hrm")
    assert run_cli(capsys, "import", str(step), "--out", str(tmp_path / "m"), "--seq-len", str(S))[0] == 0
    assert run_cli(capsys, "export", str(tmp_path / "m"), "--out", str(tmp_path / "again"), "--step", "1000")[0] == 0
    a, b = torch.load(step, weights_only=True), torch.load(tmp_path / "again" / "step_1000", weights_only=True)
    assert sorted(a) == sorted(b)
    for k in a:    # the initial states come back in the model's bf16, as the official code creates them
        assert a[k].dtype == b[k].dtype or k.endswith("_init"), k
        assert torch.equal(a[k].float(), b[k].float()) if not k.endswith("_init") else \
            torch.equal(a[k].bfloat16(), b[k]), k


# ----------------------------------------------------------------------------------------------
# Evaluation and solving from the CLI, on a real dataset

def test_trm_eval_and_solve_take_an_official_checkpoint_directly(sudoku4_dir, tmp_path, capsys):
    step = write_official(tmp_path / "ckpt", mlp=True, pos="none")
    code, out, err = run_cli(capsys, "eval", str(step), "--data", str(sudoku4_dir), "--max-examples", "20")
    assert code == 0, err
    metrics = json.loads(out)
    assert 0.0 <= metrics["exact"] <= 1.0 and len(metrics["exact_by_step"]) == 3
    code, out, err = run_cli(capsys, "solve", "sudoku", "1...|....|....|...2", "--checkpoint", str(tmp_path / "ckpt"))
    assert code in (0, 3), err                 # random weights: a grid is printed (3: it breaks a rule)
    assert "Traceback" not in err and len(out.strip().splitlines()) >= 4


def test_trm_eval_takes_a_nano_trm_checkpoint_and_import_writes_an_export(sudoku4_dir, tmp_path, capsys):
    path = write_nano(tmp_path / "nano" / "last.ckpt")
    code, out, err = run_cli(capsys, "eval", str(path), "--data", str(sudoku4_dir), "--max-examples", "10")
    assert code == 0, err
    assert "EMA weights" in err
    code, out, err = run_cli(capsys, "solve", "sudoku", "1...|....|....|...2", "--checkpoint", str(path))
    assert code in (0, 3) and "Traceback" not in err and len(out.strip().splitlines()) >= 4, err
    code, out, err = run_cli(capsys, "import", str(tmp_path / "nano"), "--out", str(tmp_path / "m"),
                             "--data", str(sudoku4_dir))
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "m")) == ["config.json", "identifiers.json", "model.safetensors"]
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["source"]["format"] == "nano-trm" and saved["data"]["task"] == "sudoku"


# ----------------------------------------------------------------------------------------------
# Puzzle identifiers

def _arc_like_names(n: int) -> list[str]:
    return ["<blank>"] + [f"task{i:03d}|||t{i % 8}|||0123456789" for i in range(n - 1)]


def _with_identifiers(data_dir: Path, names: list[str], out: Path, test_ids: list[int] | None = None) -> Path:
    """A copy of ``data_dir`` whose identifiers.json names ``names`` (and whose test puzzles use ``test_ids``)."""
    import shutil
    shutil.copytree(data_dir, out)
    (out / "identifiers.json").write_text(json.dumps(names))
    for split in ("train", "test"):
        meta = json.loads((out / split / "dataset.json").read_text())
        meta["num_puzzle_identifiers"] = len(names)
        (out / split / "dataset.json").write_text(json.dumps(meta))
    if test_ids is not None:
        from trm.data.format import file_checksums
        ids_file = next((out / "test").glob("*__puzzle_identifiers.npy"))
        ids = np.load(ids_file)
        np.save(ids_file, np.asarray([test_ids[i % len(test_ids)] for i in range(len(ids))], dtype=ids.dtype))
        meta = json.loads((out / "test" / "dataset.json").read_text())
        meta["extra"]["checksums"] = file_checksums(out / "test", meta["sets"])
        (out / "test" / "dataset.json").write_text(json.dumps(meta))
    return out


def test_puzzle_rows_are_matched_by_name_and_a_foreign_dataset_is_refused(sudoku4_dir, tmp_path, capsys):
    names = _arc_like_names(6)
    data = _with_identifiers(sudoku4_dir, names, tmp_path / "data", test_ids=[1, 2, 3, 4, 5])
    step = write_official(tmp_path / "ckpt", mlp=True, pos="none", ids=6)
    code, out, err = run_cli(capsys, "import", str(step), "--out", str(tmp_path / "m"), "--data", str(data))
    assert code == 0, err
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "m"), "--data", str(data), "--max-examples", "20")
    assert code == 0, err
    in_order = json.loads(out)
    # The same puzzles under other ids: the rows follow the names, so the results are the same.
    perm = [0, 3, 5, 1, 2, 4]
    shuffled = [names[i] for i in perm]
    where = {name: i for i, name in enumerate(shuffled)}
    data2 = _with_identifiers(sudoku4_dir, shuffled, tmp_path / "data2",
                              test_ids=[where[names[i]] for i in (1, 2, 3, 4, 5)])
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "m"), "--data", str(data2), "--max-examples", "20")
    assert code == 0, err
    assert "matched by name" in err
    assert json.loads(out)["exact_by_step"] == in_order["exact_by_step"]
    assert json.loads(out)["accuracy"] == in_order["accuracy"]
    # Names the model has no row for: refused, in one line.
    data3 = _with_identifiers(sudoku4_dir, ["<blank>"] + [f"other{i}" for i in range(5)], tmp_path / "data3",
                              test_ids=[1, 2])
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "m"), "--data", str(data3))
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no row in the model's puzzle table" in errors[0] and "Traceback" not in err
    # Without names (on-the-fly import) only the count can be checked: another count is refused.
    code, out, err = run_cli(capsys, "eval", str(step), "--data", str(data3), "--max-examples", "4")
    assert code == 0, err
    data4 = _with_identifiers(sudoku4_dir, _arc_like_names(9), tmp_path / "data4", test_ids=[1])
    code, out, err = run_cli(capsys, "eval", str(step), "--data", str(data4))
    assert code == 2 and "names 9 puzzle identifiers, the model's puzzle table has 6 rows" in err


def test_import_refuses_identifiers_of_another_count(sudoku4_dir, tmp_path, capsys):
    step = write_official(tmp_path / "ckpt", mlp=True, pos="none", ids=6)
    code, out, err = run_cli(capsys, "import", str(step), "--out", str(tmp_path / "m"), "--data", str(sudoku4_dir))
    assert code == 2 and "names 1 puzzle identifiers, the checkpoint's puzzle table has 6 rows" in err
    assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------------------------
# Bad input: one clear line, nothing written

def _import_error(capsys, tmp_path, source, *extra) -> str:
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, "import", str(source), "--out", str(out_dir), "--seq-len", str(S), *extra)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out_dir.exists()
    return err


def _edit(step: Path, fn) -> Path:
    state = torch.load(step, weights_only=True)
    fn(state)
    torch.save(state, step)
    return step


def test_malformed_checkpoints_are_one_clear_line_and_write_nothing(tmp_path, capsys):
    pre = "_orig_mod.model.inner."
    step = write_official(tmp_path / "a")
    _edit(step, lambda s: s.update({pre + "L_level.layers.0.extra.weight": torch.zeros(2)}))
    assert "L_level.layers.0.extra.weight" in _import_error(capsys, tmp_path, step)

    step = write_official(tmp_path / "b")
    _edit(step, lambda s: s.pop(pre + "lm_head.weight"))
    assert "missing ['lm_head.weight']" in _import_error(capsys, tmp_path, step)

    step = write_official(tmp_path / "c")
    _edit(step, lambda s: s.update({pre + "L_level.layers.1.self_attn.o_proj.weight": torch.zeros(D, D + 1)}))
    err = _import_error(capsys, tmp_path, step)
    assert "L_level.layers.1.self_attn.o_proj.weight has shape (32, 33)" in err

    step = write_official(tmp_path / "d")
    _edit(step, lambda s: s.update({pre + "lm_head.weight": torch.zeros(V, D, dtype=torch.int64)}))
    assert "not floating point" in _import_error(capsys, tmp_path, step)

    step = write_official(tmp_path / "e")
    raw = yaml.safe_load((tmp_path / "e" / "all_config.yaml").read_text())
    raw["arch"]["name"] = "recursive_reasoning.trm_singlez@TinyRecursiveReasoningModel_ACTV1"
    (tmp_path / "e" / "all_config.yaml").write_text(yaml.safe_dump(raw))
    assert "does not map onto trm" in _import_error(capsys, tmp_path, step)

    step = write_official(tmp_path / "f")
    (tmp_path / "f" / "all_config.yaml").unlink()
    assert "no all_config.yaml beside it" in _import_error(capsys, tmp_path, step)

    step = write_official(tmp_path / "g")
    (tmp_path / "g" / "all_config.yaml").write_text("arch: [unclosed")
    assert "not a readable YAML file" in _import_error(capsys, tmp_path, step)

    junk = tmp_path / "h" / "step_5"
    junk.parent.mkdir()
    junk.write_bytes(os.urandom(4096))
    assert "not a checkpoint" in _import_error(capsys, tmp_path, junk)

    truncated = write_official(tmp_path / "i")
    truncated.write_bytes(truncated.read_bytes()[:2000])
    assert "corrupt or truncated" in _import_error(capsys, tmp_path, truncated)

    hrm = write_official(tmp_path / "j", kind="hrm")
    raw = yaml.safe_load((tmp_path / "j" / "all_config.yaml").read_text())
    raw["arch"]["H_layers"] = 3
    (tmp_path / "j" / "all_config.yaml").write_text(yaml.safe_dump(raw))
    assert "H_layers=3 and L_layers=2 differ" in _import_error(capsys, tmp_path, hrm)

    (tmp_path / "k").mkdir()
    assert "holds no checkpoint trm reads" in _import_error(capsys, tmp_path, tmp_path / "k")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/trm-should-never-exist",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil" / "last.ckpt"
    path.parent.mkdir()
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _RunsCode()}}, path)
    err = _import_error(capsys, tmp_path, path)
    assert "refused to load" in err and "system" in err and "weights_only" not in err
    assert not Path("/tmp/trm-should-never-exist").exists()


def test_nano_trm_variants_without_a_trm_counterpart_are_refused(tmp_path, capsys):
    path = write_nano(tmp_path / "a" / "last.ckpt", use_conv_swiglu=True)
    assert "use_conv_swiglu=True" in _import_error(capsys, tmp_path, path)
    path = write_nano(tmp_path / "b" / "last.ckpt", pos_emb_type="2d")
    assert "2-D rotary" in _import_error(capsys, tmp_path, path)


def test_a_mismatched_dataset_is_refused(sudoku4_dir, tmp_path, capsys):
    step = write_official(tmp_path / "ckpt", mlp=True, pos="none")
    _edit(step, lambda s: s.update({"_orig_mod.model.inner.embed_tokens.embedding_weight": torch.zeros(V + 1, D),
                                    "_orig_mod.model.inner.lm_head.weight": torch.zeros(V + 1, D)}))
    code, out, err = run_cli(capsys, "eval", str(step), "--data", str(sudoku4_dir))
    assert code == 2 and "vocabulary of 7 tokens, but" in err
    assert err.startswith("error:") and len(err.splitlines()) == 1
    step = write_official(tmp_path / "ckpt2", pos="learned")      # learned positions record the length: 16
    raw = json.loads((sudoku4_dir / "test" / "dataset.json").read_text())
    assert raw["seq_len"] == S
    err = _import_error(capsys, tmp_path, step, "--seq-len", "81")
    assert "sequences of 16 tokens, --seq-len has 81" in err


def test_rotary_attention_without_a_length_asks_for_the_dataset(tmp_path, capsys):
    step = write_official(tmp_path / "ckpt")
    code, out, err = run_cli(capsys, "import", str(step), "--out", str(tmp_path / "m"))
    assert code == 2 and "give the dataset with --data DIR" in err and not (tmp_path / "m").exists()
    with pytest.raises(CheckpointError, match="sequence length"):
        interop.read(step)


def test_arc_rows_are_matched_across_the_two_naming_schemes():
    """trm's ARC names before 2026-12-02 (identity as t0, 9-digit colour maps, its own transform numbers)
    and the official names of the same versions select the same rows."""
    from trm.config import Config, ModelConfig
    from trm.solve import Solver
    from trm.data import dihedral
    legacy_t = {official_t: k for k, official_t in enumerate(dihedral.LEGACY_TO_OFFICIAL)}
    official = ["<blank>", "007bbfc7", "007bbfc7|||t4|||0213456789", "00d62c1b|||t6|||0987654321"]
    legacy = ["<blank>", f"00d62c1b|||t{legacy_t[6]}|||987654321", "007bbfc7|||t0|||123456789",
              f"007bbfc7|||t{legacy_t[4]}|||213456789"]
    m = ModelConfig(hidden_size=16, num_heads=2, num_layers=1, vocab_size=12, seq_len=900, num_puzzle_ids=4,
                    puzzle_emb_dim=16, puzzle_emb_len=1)
    model = RecursiveReasoner(m)
    with torch.no_grad():
        model.puzzle_emb.weight.copy_(torch.arange(4.0)[:, None].expand(4, 16))
    solver = Solver(model, Config(model=m), {"task": "arc"}, torch.device("cpu"), identifiers=list(official))
    assert "matched by name" in solver.fit_puzzle_table(legacy)
    assert model.puzzle_emb.weight[:, 0].tolist() == [0.0, 3.0, 1.0, 2.0]
    with pytest.raises(CheckpointError, match="no row"):
        solver.fit_puzzle_table(["<blank>", "007bbfc7|||t1|||0213456789"])


def test_importing_a_trm_model_says_it_is_one(sudoku4_dir, tmp_path, capsys):
    step = write_official(tmp_path / "ckpt", mlp=True, pos="none")
    assert run_cli(capsys, "import", str(step), "--out", str(tmp_path / "m"), "--data", str(sudoku4_dir))[0] == 0
    code, out, err = run_cli(capsys, "import", str(tmp_path / "m"), "--out", str(tmp_path / "m2"))
    assert code == 2 and "a trm run or export already" in err and not (tmp_path / "m2").exists()
    # An existing directory that is not a trm export is not replaced without --force.
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, "import", str(step), "--out", str(tmp_path / "busy"), "--data", str(sudoku4_dir))
    assert code == 2 and "is not a trm export" in err
    assert sorted(os.listdir(tmp_path / "busy")) == ["notes.txt"]


@pytest.mark.parametrize("change,message", [({"latents": "z"}, "no official model file computes"),
                                            ({"separate_nets": True}, "separate networks export as the official HRM")])
def test_export_refuses_what_no_official_model_file_computes(tmp_path, capsys, change, message):
    from trm.config import Config, ModelConfig
    from trm.solve import Solver
    m = ModelConfig(hidden_size=D, num_heads=H, num_layers=1, T=2, n=2, N_sup=2, vocab_size=V, seq_len=S,
                    num_puzzle_ids=1, puzzle_emb_dim=D, puzzle_emb_len=P, forward_dtype="float32", **change)
    solver = Solver(RecursiveReasoner(m), Config(model=m), {"task": "sudoku"}, torch.device("cpu"))
    solver.save_pretrained(tmp_path / "m")
    code, out, err = run_cli(capsys, "export", str(tmp_path / "m"), "--out", str(tmp_path / "official"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "official").exists()


def test_import_takes_the_names_from_an_identifiers_file(sudoku4_dir, tmp_path, capsys):
    names = _arc_like_names(6)
    (tmp_path / "names.json").write_text(json.dumps(names))
    step = write_official(tmp_path / "ckpt", mlp=True, pos="none", ids=6)
    code, out, err = run_cli(capsys, "import", str(step), "--out", str(tmp_path / "m"), "--data", str(sudoku4_dir),
                             "--identifiers", str(tmp_path / "names.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "m" / "identifiers.json").read_text()) == names
    assert "puzzle rows 6 (6 names)" in out


def test_written_files_get_the_usual_mode(sudoku4_dir, tmp_path, capsys):
    """An export is readable by others as any file the user writes (safetensors used to leave 0600)."""
    step = write_official(tmp_path / "ckpt", mlp=True, pos="none")
    assert run_cli(capsys, "import", str(step), "--out", str(tmp_path / "m"), "--data", str(sudoku4_dir))[0] == 0
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json", "identifiers.json"):
        assert (tmp_path / "m" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
