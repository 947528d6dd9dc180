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


class _Verbosity(argparse.Action):
    """``-q`` / ``-v``: sets the level of :mod:`netsculpt.core.progress` when parsed."""

    def __init__(self, option_strings, dest, level: int = 1, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.level = level

    def __call__(self, parser, namespace, values, option_string=None):
        from netsculpt.core import progress

        progress.set_level(self.level)


def _verbosity_flags(parser: argparse.ArgumentParser) -> None:
    """``-q`` and ``-v`` (on the top-level parser and on every command that has no own)."""
    taken = parser._option_string_actions
    flags = (
        (("-q", "--quiet"), 0, "no progress output"),
        (("-v", "--verbose"), 2, "progress of every step, and the bars of transformers"),
    )
    for names, level, text in flags:
        free = [n for n in names if n not in taken]
        if free:
            parser.add_argument(*free, action=_Verbosity, dest="_verbosity", level=level, help=text)


def build_parser() -> argparse.ArgumentParser:
    from netsculpt.core import progress

    progress.quiet_libraries()  # transformers / huggingface_hub bars stay off unless -v
    parser = argparse.ArgumentParser(
        prog="netsculpt",
        description="Change the structure of trained networks: prune, cut, merge, grow.",
    )
    _verbosity_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        _verbosity_flags(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except NetsculptError as e:
        print(f"netsculpt {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
