"""Configuration: Literal-typed choices, a pure validate, normalisation on load, the public set_value."""

from __future__ import annotations

import copy
import typing

import pytest

from trm.config import (Config, ModelConfig, apply_overrides, choices, config_from_dict, load_config, normalise,
                        set_value, validate)
from trm.errors import ConfigError


def test_choices_come_from_the_literal_types():
    assert choices("model.mixer") == ("attention", "mlp")
    assert choices("model.pos_encoding") == ("rope", "learned", "none")
    assert choices("eval.halting") == ("fixed", "adaptive")
    assert choices("train.lr") == ()                       # a free-valued field
    assert typing.get_args(typing.get_type_hints(ModelConfig)["mixer"]) == ("attention", "mlp")
    with pytest.raises(ConfigError, match="unknown key 'model.nope'"):
        choices("model.nope")


def test_a_bad_choice_in_an_override_is_one_clear_message():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.mixer=foo"])
    assert str(e.value) == "model.mixer='foo' is not one of attention, mlp"
    with pytest.raises(ConfigError, match=r"^train.optimizer='sgd' is not one of adam_atan2, adamw$"):
        apply_overrides(Config(), ["train.optimizer=sgd"])


def test_a_bad_choice_in_a_preset_is_one_clear_message(tmp_path):
    (tmp_path / "bad.yaml").write_text("description: a preset with an unknown mixer\nmodel:\n  mixer: foo\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "bad.yaml"))
    assert str(e.value) == "model.mixer='foo' is not one of attention, mlp"
    (tmp_path / "based.yaml").write_text(f"base: {tmp_path / 'bad.yaml'}\neval:\n  halting: adaptive\n")
    with pytest.raises(ConfigError, match="model.mixer='foo' is not one of attention, mlp"):
        load_config(str(tmp_path / "based.yaml"))
    d = Config().to_dict()
    d["eval"]["halting"] = "sometimes"
    with pytest.raises(ConfigError, match=r"^eval.halting='sometimes' is not one of fixed, adaptive$"):
        config_from_dict(d)


def test_validate_checks_choices_set_directly():
    cfg = Config()
    cfg.model.latents = "xyz"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"^model.latents='xyz' is not one of yz, z, multi_z$"):
        validate(cfg)


def test_validate_does_not_mutate():
    cfg = Config()
    cfg.model.mixer = "mlp"                   # with the default rope: normalise would change it
    before = copy.deepcopy(cfg)
    assert validate(cfg) is cfg
    assert cfg.to_dict() == before.to_dict()
    assert cfg.model.pos_encoding == "rope"


def test_the_mlp_mixer_drops_rope_on_load(tmp_path):
    assert load_config(None, ["model.mixer=mlp"]).model.pos_encoding == "none"
    assert load_config(None, ["model.mixer=mlp", "model.pos_encoding=learned"]).model.pos_encoding == "learned"
    assert load_config(None, ["model.mixer=attention"]).model.pos_encoding == "rope"
    (tmp_path / "mlp.yaml").write_text("description: the MLP mixer with the default encoding\nmodel:\n  mixer: mlp\n")
    assert load_config(str(tmp_path / "mlp.yaml")).model.pos_encoding == "none"
    d = Config().to_dict()
    d["model"]["mixer"] = "mlp"
    assert config_from_dict(d).model.pos_encoding == "none"
    cfg = Config()
    cfg.model.mixer = "mlp"
    assert normalise(cfg) is cfg and cfg.model.pos_encoding == "none"


def test_set_value_converts_and_rejects_unknown_keys():
    cfg = Config()
    set_value(cfg, "model.n", "4")
    set_value(cfg, "train.lr", 3e-4)
    set_value(cfg, "train.max_steps", "null")
    set_value(cfg, "model.mixer", "mlp")
    set_value(cfg, "data.build.train_size", "100")
    set_value(cfg, "preset", "mine")
    assert (cfg.model.n, cfg.train.lr, cfg.train.max_steps, cfg.model.mixer) == (4, 3e-4, None, "mlp")
    assert cfg.data.build == {"train_size": 100} and cfg.preset == "mine"
    assert cfg.model.pos_encoding == "rope"   # set_value neither normalises nor validates
    with pytest.raises(ConfigError, match="unknown key 'model.nope'; model has: hidden_size"):
        set_value(cfg, "model.nope", "1")
    with pytest.raises(ConfigError, match="unknown section 'nope' in 'nope.x'"):
        set_value(cfg, "nope.x", "1")
    with pytest.raises(ConfigError, match="unknown key 'model': use section.key"):
        set_value(cfg, "model", "1")
    with pytest.raises(ConfigError, match="model.n: expected int, got 'three'"):
        set_value(cfg, "model.n", "three")
    with pytest.raises(ConfigError, match="model.mixer='conv' is not one of attention, mlp"):
        set_value(cfg, "model.mixer", "conv")
    assert cfg.model.mixer == "mlp"           # a refused value leaves the field as it was
