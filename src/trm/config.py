"""Configuration: dataclasses whose defaults are the paper's values, YAML presets, key=value overrides.

A preset is a YAML file in ``trm/presets/`` (or any path) with the sections ``model``, ``data``,
``train``, ``eval`` and ``run``; it may name a ``base`` preset that it extends. Overrides on the command
line look like ``model.n=4 train.lr=3e-4``; unknown keys and ill-typed values raise ConfigError.

A field with a fixed set of values is typed ``Literal[...]``: the type is the list of choices
(:func:`choices`), checked when a value is set and again by :func:`validate`. Loading applies
:func:`normalise` (the one place where settings are adjusted to each other), then :func:`validate`,
which only checks.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from trm.errors import ConfigError


@dataclass
class ModelConfig:
    """The recursive reasoner (spec sections 3-4). TRM defaults; HRM and ablations are options."""

    hidden_size: int = 512
    num_heads: int = 8
    expansion: float = 4.0            # SwiGLU inner = round(expansion * d * 2/3) up to a multiple of 256
    num_layers: int = 2               # blocks in the network f
    # mlp: the sequence-mixing SwiGLU ("mlp_t") in place of self-attention
    mixer: Literal["attention", "mlp"] = "attention"
    # rope | learned | none; the MLP mixer needs none (rope is turned into none: see normalise)
    pos_encoding: Literal["rope", "learned", "none"] = "rope"
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    T: int = 3                        # deep recursion: T latent recursions, T-1 without gradients
    n: int = 6                        # latent recursion: n updates of z, then one of y
    N_sup: int = 16                   # maximum supervision steps (halt_max_steps)
    puzzle_emb_len: int = 16          # prefix positions; the first holds the puzzle embedding
    puzzle_emb_dim: int = 512         # 0 disables the puzzle embedding (the prefix stays, all zeros)
    # last_recursion (TRM) | one_step (HRM: last z and y update only)
    grad_scope: Literal["last_recursion", "one_step"] = "last_recursion"
    # bce (TRM: halt head only) | qlearn (HRM ACT with continue target)
    halting: Literal["bce", "qlearn"] = "bce"
    halt_exploration_prob: float = 0.1
    # per_step (public code: redrawn every step) | per_slot
    halt_exploration: Literal["per_step", "per_slot"] = "per_step"
    separate_nets: bool = False       # one network for z and another for y (HRM: L and H)
    # yz (TRM) | z (a single latent) | multi_z (one z per recursion)
    latents: Literal["yz", "z", "multi_z"] = "yz"
    # recursive | direct (no recursion: y = f(x), the 8-layer baseline)
    recursion: Literal["recursive", "direct"] = "recursive"
    # compute precision, weights stay fp32; auto: bf16 where it is faster (trm.runtime)
    forward_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    zero_init_residual: bool = False  # deviation: zero-init SwiGLU down / attention out projections
    # Filled from the dataset when 0:
    vocab_size: int = 0
    seq_len: int = 0
    num_puzzle_ids: int = 0


@dataclass
class DataConfig:
    """The dataset: where it is, how to build it if it is missing, which sets to use."""

    path: str = ""                    # dataset directory (train/, test/, identifiers.json)
    build: dict[str, Any] = field(default_factory=dict)  # builder arguments: built into `path` if it is missing
    train_set: str = "all"
    test_set: str = "all"


@dataclass
class TrainConfig:
    """Optimisation, schedule, EMA, logging and checkpoints (spec section 5)."""

    global_batch_size: int = 768
    epochs: int = 50000
    eval_interval: int = 5000         # in epochs (10 evaluations per paper run)
    max_steps: int | None = None      # null: the epoch formula (spec section 5); N >= 1 overrides it
    max_minutes: float = 0.0          # >0: stop (checkpoint, evaluate) after this wall time
    # adam_atan2 (public code) | adamw (paper text)
    optimizer: Literal["adam_atan2", "adamw"] = "adam_atan2"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1.0
    lr_warmup_steps: int = 2000
    # cosine | linear | constant (cosine with lr_min_ratio 1.0 = constant)
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    lr_min_ratio: float = 1.0
    puzzle_emb_lr: float = 1e-4
    puzzle_emb_weight_decay: float = 1.0
    loss: Literal["stablemax", "softmax"] = "stablemax"  # stablemax (float64) | softmax
    halt_loss_weight: float = 0.5
    ema: bool = True
    ema_rate: float = 0.999
    ema_warmup: bool = False          # deviation: rate min(ema_rate, (1+t)/(10+t))
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda | cuda:N | mps
    compile: bool = False
    checkpoint_every: int = 0         # steps; 0 = at each evaluation and at the end
    log_every: int = 10
    nan_policy: Literal["stop", "skip"] = "stop"  # stop | skip (drop the step, keep going)
    wandb: bool = False


@dataclass
class EvalConfig:
    """Evaluation during and after training."""

    # fixed (all N_sup steps, as the paper) | adaptive (halt head)
    halting: Literal["fixed", "adaptive"] = "fixed"
    batch_size: int = 0               # 0 = train.global_batch_size
    max_examples: int = 0             # 0 = the whole test split
    report_puzzles: int = 4           # solved puzzles drawn into the report


@dataclass
class RunConfig:
    """Where the run directory goes."""

    out_dir: str = "runs"
    name: str = ""                    # default: preset name + time


@dataclass
class Config:
    """A whole run: one dataclass per section, and the preset it came from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    preset: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (what ``config.json`` and checkpoints hold)."""
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


SECTIONS = tuple(f.name for f in fields(Config) if f.name != "preset")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """A dataclass's field name -> resolved type (``from __future__ import annotations`` leaves strings)."""
    return typing.get_type_hints(cls)


@functools.cache
def _section_types() -> dict[str, dict[str, Any]]:
    """Section name -> its field types."""
    top = _field_types(Config)
    return {s: _field_types(top[s]) for s in SECTIONS}


def _literal_values(typ: Any) -> tuple[str, ...] | None:
    """The values of a ``Literal[...]`` type, or None for any other type."""
    return tuple(typing.get_args(typ)) if typing.get_origin(typ) is Literal else None


def choices(key: str) -> tuple[str, ...]:
    """The allowed values of a choice field such as ``"model.mixer"``; ``()`` for a free-valued field."""
    section, _, name = key.partition(".")
    types_ = _section_types().get(section, {})
    if name not in types_:
        raise ConfigError(f"unknown key {key!r}")
    return _literal_values(types_[name]) or ()


def _choice_fields() -> list[tuple[str, tuple[str, ...]]]:
    """Every ``(section.key, allowed values)`` of the Literal-typed fields, in declaration order."""
    out: list[tuple[str, tuple[str, ...]]] = []
    for section, types_ in _section_types().items():
        for name, typ in types_.items():
            allowed = _literal_values(typ)
            if allowed is not None:
                out.append((f"{section}.{name}", allowed))
    return out


# ----------------------------------------------------------------------------------------------
# Presets

def preset_dir() -> Path:
    """The directory of the built-in presets (``trm/presets/``)."""
    return Path(str(resources.files("trm") / "presets"))


PRESET_GROUPS = ("cpu", "paper", "ablations")   # trm/presets/<group>/NAME.yaml; names are unique across groups


def preset_files() -> dict[str, Path]:
    """Preset name -> its file, over the groups (cpu: minutes on a laptop; paper; ablations)."""
    return {p.stem: p for group in PRESET_GROUPS for p in sorted((preset_dir() / group).glob("*.yaml"))}


def preset_path(name: str) -> Path | None:
    """The file of the built-in preset ``name`` (None when there is none)."""
    return preset_files().get(name)


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description (the YAML's ``description``), grouped as PRESET_GROUPS."""
    out: dict[str, str] = {}
    for name, p in preset_files().items():
        raw = yaml.safe_load(p.read_text()) or {}
        out[name] = raw.get("description", "")
    return out


def _load_yaml(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A preset's sections, with its ``base`` chain merged in (a section's keys override the base's)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and not path.is_file():
        raise ConfigError(f"{path}: no such file (a preset name or the path of a .yaml file)")
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        found = preset_path(name_or_path)
        if found is None:
            raise ConfigError(f"unknown preset {name_or_path!r}; known: {', '.join(list_presets())} "
                              "(or give a path to a .yaml file)")
        path = found
    if str(path) in seen:
        raise ConfigError(f"preset {path} extends itself")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = raw.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: base must name a preset, got {base!r}")
    raw.pop("description", None)
    if base:
        merged = _load_yaml(base, seen + (str(path),))
        for k, v in raw.items():
            if isinstance(v, dict) and isinstance(merged.get(k), dict):
                merged[k] = {**merged[k], **v}
            else:
                merged[k] = v
        return merged
    return raw


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the dataclass field's type, or raise ConfigError.

    A ``Literal`` type takes a string among its values; any other is an error naming the choices.
    """
    origin = typing.get_origin(typ)
    allowed = _literal_values(typ)
    if allowed is not None:
        v = _coerce(value, str, key)
        if v not in allowed:
            raise ConfigError(f"{key}={v!r} is not one of {', '.join(allowed)}")
        return v
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")):
            return None
        return _coerce(value, [a for a in typing.get_args(typ) if a is not type(None)][0], key)
    if isinstance(value, str) and typ is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{key}: cannot parse {value!r}") from None
    try:
        if typ is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if typ is int:
            if isinstance(value, bool) or not float(value).is_integer():
                raise TypeError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if typ is str:
            if value is None or isinstance(value, (list, dict, tuple)):
                raise TypeError
            return str(value)
        if origin is tuple:
            args = typing.get_args(typ)
            if not isinstance(value, (list, tuple)) or len(value) != len(args):
                raise TypeError
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        if typ is dict or origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
    except (TypeError, ValueError, OverflowError):
        name = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"{key}: expected {name}, got {value!r}") from None
    return value


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set ``section.key`` (or ``preset``) on ``cfg`` in place, converted to the field's type.

    ``value`` is a YAML/CLI string or an already parsed value; ``data.build.<name>`` sets one builder
    argument. Unknown keys and ill-typed values raise ConfigError. Neither normalises nor validates:
    call :func:`normalise` and :func:`validate` after the last one (the loading functions do).
    """
    parts = key.split(".")
    if len(parts) == 1 and parts[0] == "preset":
        cfg.preset = str(value)
        return
    if len(parts) < 2:
        raise ConfigError(f"unknown key {key!r}: use section.key, e.g. model.n=4 "
                          f"(sections: {', '.join(SECTIONS)})")
    section_name, name = parts[0], ".".join(parts[1:])
    section = getattr(cfg, section_name) if section_name in SECTIONS else None
    if section is None:
        raise ConfigError(f"unknown section {section_name!r} in {key!r}")
    hints = _section_types()[section_name]
    top, _, sub = name.partition(".")
    if "." in name and top in hints and (hints[top] is dict or typing.get_origin(hints[top]) is dict):
        d = dict(getattr(section, top))       # data.build.train_size=100
        try:
            d[sub] = yaml.safe_load(value) if isinstance(value, str) else value
        except yaml.YAMLError:
            raise ConfigError(f"{key}: cannot parse {value!r}") from None
        setattr(section, top, d)
        return
    if name not in hints:
        known = ", ".join(hints)
        raise ConfigError(f"unknown key {key!r}; {section_name} has: {known}")
    setattr(section, name, _coerce(value, hints[name], key))


def normalise(cfg: Config) -> Config:
    """Adjust settings to each other, in place; the one place where a loaded config is changed.

    The MLP mixer is position-aware by construction (spec: no position encoding), so with
    ``model.mixer=mlp`` the default ``pos_encoding=rope`` becomes ``none``.
    """
    m = cfg.model
    if m.mixer == "mlp" and m.pos_encoding == "rope":
        m.pos_encoding = "none"
    return cfg


def validate(cfg: Config) -> Config:
    """Check choices and impossible values; raise ConfigError with one clear message.

    Pure: ``cfg`` is never changed (see :func:`normalise`); it is returned for chaining.
    """
    for key, allowed in _choice_fields():
        sec, name = key.split(".")
        v = getattr(getattr(cfg, sec), name)
        if v not in allowed:
            raise ConfigError(f"{key}={v!r} is not one of {', '.join(allowed)}")
    m, t = cfg.model, cfg.train
    positive = {"model.hidden_size": m.hidden_size, "model.num_heads": m.num_heads,
                "model.num_layers": m.num_layers, "model.T": m.T, "model.N_sup": m.N_sup,
                "train.global_batch_size": t.global_batch_size, "train.lr_warmup_steps + 1": t.lr_warmup_steps + 1}
    for k, v in positive.items():
        if v < 1:
            raise ConfigError(f"{k} must be >= 1, got {v}")
    if m.n < 0 or m.puzzle_emb_len < 0 or m.puzzle_emb_dim < 0:
        raise ConfigError("model.n, model.puzzle_emb_len and model.puzzle_emb_dim must be >= 0")
    if m.mixer == "attention" and m.hidden_size % m.num_heads:
        raise ConfigError(f"model.hidden_size {m.hidden_size} is not divisible by num_heads {m.num_heads}")
    if m.puzzle_emb_dim > m.puzzle_emb_len * m.hidden_size:
        fit = m.puzzle_emb_len * m.hidden_size
        raise ConfigError(f"model.puzzle_emb_dim={m.puzzle_emb_dim} does not fit in model.puzzle_emb_len="
                          f"{m.puzzle_emb_len} prefix positions of model.hidden_size={m.hidden_size}: set "
                          f"model.puzzle_emb_dim={fit} (or less), or more prefix positions")
    if not 0.0 <= m.halt_exploration_prob <= 1.0:
        raise ConfigError("model.halt_exploration_prob must be in [0, 1]")
    if not 0.0 <= t.ema_rate < 1.0:
        raise ConfigError("train.ema_rate must be in [0, 1)")
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: Config) -> None:
    """Impossible numbers: negative counts, non-positive scales, rates outside their interval, NaN or inf."""
    m, t, e = cfg.model, cfg.train, cfg.eval
    inf = float("inf")
    at_least_0 = [("model.vocab_size", m.vocab_size), ("model.seq_len", m.seq_len),
                  ("model.num_puzzle_ids", m.num_puzzle_ids), ("train.epochs", t.epochs),
                  ("train.eval_interval", t.eval_interval),
                  ("train.max_minutes", t.max_minutes), ("train.weight_decay", t.weight_decay),
                  ("train.puzzle_emb_lr", t.puzzle_emb_lr),
                  ("train.puzzle_emb_weight_decay", t.puzzle_emb_weight_decay),
                  ("train.halt_loss_weight", t.halt_loss_weight), ("train.seed", t.seed),
                  ("train.checkpoint_every", t.checkpoint_every), ("eval.batch_size", e.batch_size),
                  ("eval.max_examples", e.max_examples), ("eval.report_puzzles", e.report_puzzles)]
    above_0 = [("model.expansion", m.expansion), ("model.rope_theta", m.rope_theta),
               ("model.rms_norm_eps", m.rms_norm_eps), ("train.lr", t.lr)]
    for key, v in at_least_0:
        if not 0 <= v < inf:           # False for NaN too
            raise ConfigError(f"{key} must be >= 0 and finite, got {v}")
    for key, v in above_0:
        if not 0 < v < inf:
            raise ConfigError(f"{key} must be > 0 and finite, got {v}")
    if t.max_steps is not None and not t.max_steps >= 1:
        raise ConfigError(f"train.max_steps must be >= 1, got {t.max_steps} (null: the epoch formula)")
    if not t.log_every >= 1:
        raise ConfigError(f"train.log_every must be >= 1, got {t.log_every}")
    if not 0 <= t.lr_min_ratio <= 1:
        raise ConfigError(f"train.lr_min_ratio must be in [0, 1], got {t.lr_min_ratio}")
    if not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"train.betas must both be in [0, 1), got {list(t.betas)}")
    if not (t.device in ("auto", "cpu", "cuda", "mps") or (t.device.startswith("cuda:") and t.device[5:].isdigit())):
        raise ConfigError(f"train.device={t.device!r}: expected auto, cpu, cuda, cuda:N or mps")
    if not cfg.data.train_set or not cfg.data.test_set:
        raise ConfigError("data.train_set and data.test_set must name a set (usually 'all')")


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> Config:
    """Build a Config from a preset name or YAML path plus ``key=value`` overrides."""
    cfg = Config()
    if preset:
        raw = _load_yaml(preset)
        cfg.preset = Path(preset).stem if preset.endswith((".yaml", ".yml")) else preset
        _set_sections(cfg, {k: v for k, v in raw.items() if k != "preset"}, f"preset {preset}: ")
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` strings to ``cfg`` (in place), then normalise and validate it."""
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like key=value (e.g. train.lr=3e-4)")
        k, v = ov.split("=", 1)
        set_value(cfg, k.strip(), v.strip())
    return validate(normalise(cfg))


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config saved with ``to_dict`` (checkpoints, config.json); unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigError(f"a saved config must be a mapping of sections, got {type(d).__name__}")
    cfg = Config()
    if d.get("preset") is not None:
        cfg.preset = _coerce(d["preset"], str, "preset")
    _set_sections(cfg, {k: v for k, v in d.items() if k != "preset"}, "saved config: ")
    return validate(normalise(cfg))


def _set_sections(cfg: Config, sections: dict[str, Any], where: str) -> None:
    """``{section: {key: value}}`` into ``cfg``; an unknown section or a non-mapping is a ConfigError."""
    for section, values in sections.items():
        if section not in SECTIONS:
            raise ConfigError(f"{where}unknown section {section!r} (sections: {', '.join(SECTIONS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}section {section!r} must be a mapping")
        for k, v in values.items():
            set_value(cfg, f"{section}.{k}", v)
