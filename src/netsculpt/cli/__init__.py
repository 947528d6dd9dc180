"""The ``netsculpt`` command. Each sub-command lives in its own module in this package and
defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.

No traceback reaches the terminal: a :class:`~netsculpt.core.errors.NetsculptError` (bad input) is
one line on stderr and exit status 2; so is an OS refusal to write (disk full, permission);
anything else is a bug in netsculpt, reported in one line with exit status 1. ``--debug`` (or
``NETSCULPT_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import re
import sys
import traceback

from netsculpt.core.errors import NetsculptError


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


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too (the usage itself is one ``--help`` away)."""

    def error(self, message: str):  # type: ignore[override]
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from netsculpt.core import progress

    progress.quiet_libraries()  # transformers / huggingface_hub bars stay off unless -v
    parser = _Parser(
        prog="netsculpt",
        description="Change the structure of trained networks: prune, cut, merge, grow.",
    )
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--version", action="version", version=_version(), help="print the version")
    _verbosity_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        # also accepted after the command; SUPPRESS keeps the global flag's value otherwise
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        _verbosity_flags(p)
        p.set_defaults(_run=mod.run, _flags=tuple(p._option_string_actions))
    return parser


_DEBUG_HELP = "on an error, also print the traceback (or set NETSCULPT_DEBUG=1)"
# OS errors that say something about the machine or the paths given, not about netsculpt
_ENVIRONMENT = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}


def _version() -> str:
    import torch

    from netsculpt import __version__

    return f"netsculpt {__version__} (torch {torch.__version__})"


# Python-API wording in error messages -> the flags a CLI user types
_FLAGS = ("data", "importance", "criterion", "ignore", "where", "blocks", "threshold", "seed")
_TERMS = (
    (re.compile(r"pass data=\.\.\.(?: \(or example inputs\))?"), "give --data NAME"),
    (re.compile(r"ignore=\[\.\.\.\]"), "--ignore NAME"),
    (
        re.compile(r"ignore=\[([^\]]*)\]"),
        lambda m: "--ignore " + " ".join(n.strip(" '\"") for n in m.group(1).split(",")),
    ),
)


def cli_terms(message: str, flags: set[str] | None = None) -> str:
    """``message`` with the Python keyword arguments it names said as CLI flags.

    >>> cli_terms("importance 'taylor' needs calibration data: pass data=...")
    "importance 'taylor' needs calibration data: give --data NAME"
    >>> cli_terms("pass ignore=['fc'] to keep it")
    'pass --ignore fc to keep it'
    """
    for pattern, repl in _TERMS:
        message = pattern.sub(repl, message)
    known = {f"--{n}" for n in _FLAGS} | (flags or set())

    def flag(m: re.Match) -> str:
        name = "--" + m.group(1).rstrip("_").replace("_", "-")
        if name not in known:
            return m.group(0)
        value = next((g for g in m.groups()[1:] if g is not None), "")
        return name + (" " + value if value else "")

    value = r"(?:'([^']*)'|\"([^\"]*)\"|([\w.]+))?"
    message = re.sub(r"(?<![\w-])([a-z][a-z_]*)=" + value, flag, message)
    return re.sub(r"(--[\w-]+)(?:, \1)+(?![\w-])", r"\1", message)  # "data=, --data"


def _one_line(exc: BaseException, flags: set[str] | None = None) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return cli_terms("; ".join(lines), flags) or type(exc).__name__


def _debug(args: argparse.Namespace) -> bool:
    env = os.environ.get("NETSCULPT_DEBUG", "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv``; returns the exit status (argparse exits 2 by itself)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = set(getattr(args, "_flags", ()))
    prefix = f"netsculpt {args.command}: error:"
    try:
        return int(_keras_or(args._run)(args) or 0)
    except KeyboardInterrupt:
        print(f"netsculpt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the one place every error is turned into a line
        if _debug(args):
            traceback.print_exc()
        if isinstance(e, NetsculptError):
            print(f"{prefix} {_one_line(e, flags)}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.errno in _ENVIRONMENT:
            print(f"{prefix} {_one_line(e, flags)}", file=sys.stderr)
            return 2
        if isinstance(e, MemoryError):
            print(f"{prefix} out of memory (MemoryError)", file=sys.stderr)
            return 1
        print(
            f"{prefix} internal error {type(e).__name__}: {_one_line(e)[:300]} (a bug in "
            "netsculpt; run again with --debug or NETSCULPT_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
        return 1


def _keras_or(run):
    """A command whose MODEL is a ``.keras`` file runs through :mod:`netsculpt.cli._keras`."""
    from netsculpt.cli import _keras

    return lambda args: _keras.run(args) if _keras.wants(args) else run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
