"""trm.runtime: the precision rule (with measurements injected, nothing timed), device resolution, and
that every entry point resolves ``forward_dtype: auto`` and says what it chose."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml

from trm import runtime
from trm.config import load_config
from trm.errors import ConfigError
from trm.runtime import Calibration, precision_rule


def cal(fp32_s: float, bf16_s: float) -> Calibration:
    return Calibration((256, 128, 512), fp32_s, bf16_s)


NATIVE = cal(4e-4, 1e-4)        # bf16 4x faster (AMX / AVX512-BF16)
EMULATED = cal(3e-4, 1.2e-2)    # bf16 40x slower (AVX2 only)
EVEN = cal(1e-4, 0.9e-4)        # bf16 barely faster: not worth the precision


def test_auto_on_cpu_follows_the_measurement():
    p = precision_rule("cpu", "auto", calibration=NATIVE)
    assert p.dtype == "bfloat16" and "4.0x faster" in p.reason
    p = precision_rule("cpu", "auto", calibration=EMULATED)
    assert p.dtype == "float32" and "40x slower" in p.reason and not p.emulated_bf16
    assert precision_rule("cpu", "auto", calibration=EVEN).dtype == "float32"
    assert precision_rule("mps", "auto", calibration=NATIVE).dtype == "bfloat16"
    assert precision_rule("cpu", "auto", calibration=None).dtype == "float32"


def test_threshold_is_the_documented_speedup():
    t = runtime.BF16_MIN_SPEEDUP
    assert precision_rule("cpu", "auto", calibration=cal(t * 1e-3, 1e-3)).dtype == "bfloat16"
    assert precision_rule("cpu", "auto", calibration=cal(0.99 * t * 1e-3, 1e-3)).dtype == "float32"


def test_auto_on_cuda_follows_bf16_support():
    assert precision_rule("cuda", "auto", cuda_bf16=True).dtype == "bfloat16"
    assert precision_rule("cuda", "auto", cuda_bf16=False).dtype == "float32"


def test_explicit_choice_is_obeyed_and_emulated_bf16_flagged():
    p = precision_rule("cpu", "bfloat16", calibration=EMULATED)
    assert p.dtype == "bfloat16" and p.emulated_bf16 and "40x slower" in p.reason
    p = precision_rule("cpu", "bfloat16", calibration=NATIVE)
    assert p.dtype == "bfloat16" and not p.emulated_bf16
    assert precision_rule("cpu", "float32", calibration=NATIVE).dtype == "float32"
    assert precision_rule("cuda", "float32", cuda_bf16=True).dtype == "float32"
    with pytest.raises(ConfigError, match="forward_dtype"):
        precision_rule("cpu", "float16")


def test_forcing_emulated_bf16_warns_once(monkeypatch):
    monkeypatch.setattr(runtime, "calibrate", lambda device, shape: EMULATED)
    monkeypatch.setattr(runtime, "_WARNED", set())
    with pytest.warns(UserWarning, match="40x slower"):
        assert runtime.resolve_precision("bfloat16", "cpu").dtype == "bfloat16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime.resolve_precision("bfloat16", "cpu")          # the second time: silent
    assert runtime.resolve_precision("auto", "cpu").dtype == "float32"


def test_evaluation_keeps_the_training_precision_unless_it_is_emulated(monkeypatch):
    from trm.runtime import resolve_trained_precision as trained
    monkeypatch.setattr(runtime, "calibrate", lambda device, shape: EMULATED)
    p = trained("bfloat16", "trained", "cpu")
    assert p.dtype == "float32" and "trained in bf16, measured 40x slower" in p.reason
    assert trained("float32", "trained", "cpu").dtype == "float32"
    assert trained("bfloat16", "bfloat16", "cpu").dtype == "bfloat16"      # forced: obeyed
    monkeypatch.setattr(runtime, "calibrate", lambda device, shape: NATIVE)
    assert trained("bfloat16", "trained", "cpu").dtype == "bfloat16"
    assert trained("float32", "trained", "cpu").dtype == "float32"           # even where bf16 is faster
    assert trained("float32", "auto", "cpu").dtype == "bfloat16"


def test_calibration_is_real_and_cached():
    a = runtime.calibrate(torch.device("cpu"), (64, 32, 64))
    assert a.float32_s > 0 and a.bfloat16_s > 0
    assert runtime.calibrate(torch.device("cpu"), (64, 32, 64)) is a


def test_resolve_device():
    assert runtime.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        runtime.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            runtime.resolve_device("cuda:0")


def test_every_preset_defaults_to_auto():
    from trm.config import list_presets
    for name in list_presets():
        assert load_config(name).model.forward_dtype == "auto", name


def test_model_resolves_auto_like_the_runtime():
    from trm.model.recursive import RecursiveReasoner
    cfg = load_config(None, ["model.hidden_size=32", "model.num_heads=2", "model.vocab_size=6",
                             "model.seq_len=16", "model.puzzle_emb_len=2", "model.puzzle_emb_dim=32"]).model
    assert cfg.forward_dtype == "auto"
    model = RecursiveReasoner(cfg)
    want = runtime.resolve_precision("auto", "cpu", hidden_size=32, seq_len=16).torch_dtype
    assert model.dtype == want
    y, _ = model.initial_state(2, "cpu")
    assert y.dtype == want


def test_train_saves_the_resolved_precision_and_prints_it(sudoku4_dir, tmp_path, capsys):
    from conftest import run_cli
    code, out, _ = run_cli(capsys, "train", "sudoku-cpu", f"data.path={sudoku4_dir}", "model.hidden_size=32",
                           "model.puzzle_emb_dim=32", "train.max_steps=2", "train.max_minutes=0",
                           "eval.max_examples=8", "eval.report_puzzles=0", f"run.out_dir={tmp_path}",
                           "run.name=r", "--quiet")
    assert code == 0
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    chosen = saved["model"]["forward_dtype"]
    assert chosen in ("bfloat16", "float32")
    assert f"precision: {chosen} (auto: bf16 measured" in out
    # eval of the run: its precision is printed (stderr) and reported (JSON)
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "r"), "--max-examples", "8", "--dtype", "float32")
    assert code == 0 and "precision: float32 (asked for" in err and '"precision": "float32"' in out


def test_info_reports_the_choice(capsys):
    from conftest import run_cli
    code, out, _ = run_cli(capsys, "info", "sudoku-cpu")
    import json
    info = json.loads(out)
    assert code == 0 and info["runtime"]["precision"] in ("bfloat16", "float32")
    assert info["runtime"]["why"].startswith("auto: bf16 measured")
