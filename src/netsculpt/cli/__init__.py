"""The ``netsculpt`` command. Each sub-command lives in its own module in this package and
defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from netsculpt.errors import NetsculptError


def _commands() -> list:
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME"):
            mods.append(mod)
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsculpt",
        description="Change the structure of trained networks: prune, cut, merge, grow.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(_keras_or(args._run)(args) or 0)
    except NetsculptError as e:
        print(f"netsculpt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _keras_or(run):
    """A command whose MODEL is a ``.keras`` file runs through :mod:`netsculpt.cli._keras`."""
    from netsculpt.cli import _keras

    return lambda args: _keras.run(args) if _keras.wants(args) else run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
