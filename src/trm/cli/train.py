"""``trm train [PRESET] [key=value ...] [--resume]``: train (or resume) a run through the pipeline."""

from __future__ import annotations

from pathlib import Path

DEFAULT_PRESET = "sudoku-cpu"


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train from a preset or YAML with key=value overrides")
    t.add_argument("preset", nargs="?", default=None, help=f"preset name or YAML path (default {DEFAULT_PRESET})")
    t.add_argument("overrides", nargs="*", help="key=value, e.g. model.n=4 train.lr=3e-4")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir (or run.name)")
    t.add_argument("--run-dir", default=None, help="run directory (default run.out_dir/run.name)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> None:
    from trm.config import load_config
    from trm.pipeline import train
    preset, overrides = args.preset, list(args.overrides)
    if preset and "=" in preset:         # `trm train key=value` with the default preset
        overrides.insert(0, preset)
        preset = None
    from trm.config import SECTIONS
    if preset and preset.split(".")[0] in SECTIONS and not preset.endswith((".yaml", ".yml")):
        from trm.errors import ConfigError
        raise ConfigError(f"{preset!r} looks like an override without a value: write {preset}=VALUE")
    run_dir = args.run_dir
    saved = Path(run_dir) / "config.yaml" if run_dir else None
    if args.resume and not preset and saved is not None and saved.is_file():
        import yaml

        from trm.config import apply_overrides, config_from_dict
        try:
            raw = yaml.safe_load(saved.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            from trm.errors import ConfigError
            raise ConfigError(f"{saved}: not a valid config ({str(e).splitlines()[0]})") from None
        cfg = apply_overrides(config_from_dict(raw), overrides)
    else:
        cfg = load_config(preset or DEFAULT_PRESET, overrides)
    if args.resume and not run_dir and not cfg.run.name:
        from trm.errors import ConfigError
        raise ConfigError("--resume needs the run: pass --run-dir DIR or run.name=NAME")
    train(cfg, resume=args.resume, run_dir=run_dir, progress=not args.quiet)
