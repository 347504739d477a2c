"""The ``trm`` command: one module per subcommand (``data``, ``train``, ``eval``, ``solve``, ``info``, ``report``,
and ``bench``, ``ablate`` where installed), each with ``add_parser(sub)`` and ``run(args)``.

Every user-facing failure ends with one line ``error: ...`` and exit status 2 (1 for an unexpected bug).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

COMMAND_MODULES = ("trm.cli.data", "trm.cli.train", "trm.cli.eval", "trm.cli.solve", "trm.cli.info", "trm.cli.interop",
                   "trm.cli.report", "trm.bench", "trm.ablate")
COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trm", description="Tiny Recursive Models: data, training, "
                                     "evaluation and inference")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:        # an optional subcommand whose module is not installed
            if e.name != module:
                raise
            continue
        before = set(sub.choices)
        mod.add_parser(sub)
        for name in set(sub.choices) - before:
            COMMANDS[name] = mod.run
    return parser


def main(argv: list[str] | None = None) -> None:
    from trm.errors import TRMError
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # key=value overrides after a flag (`trm train PRESET --quiet a=b`)
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        COMMANDS[args.command](args)
    except TRMError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (OSError, UnicodeDecodeError) as e:      # a file that cannot be read or written
        filename = getattr(e, "filename", None)
        where = f"{filename}: " if filename else ""
        print(f"error: {where}{getattr(e, 'strerror', None) or e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
