"""Op configs: frozen dataclasses whose numeric fields are checked in one place.

A field declares its rule with ``option(default, check, doc)``; :func:`validate` (called by
every config's ``__post_init__`` through :class:`OpConfig`) runs the rules and raises one
line that names the op, the field and the value. NaN and infinities are refused everywhere.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class C(OpConfig):
...     amount: float | None = option(None, fraction())
>>> C(amount=float("nan"))
Traceback (most recent call last):
...
netsculpt.core.errors.InputError: amount must be in (0, 1) (a number), got nan
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from netsculpt.core.errors import InputError

Check = Callable[[str, Any], None]


def option(default: Any = None, check: Check | None = None, doc: str = "", **kw: Any) -> Any:
    """A config field with a validation rule and a help line (used by the CLI and docs)."""
    meta = {"check": check, "doc": doc}
    if callable(default) and kw.pop("factory", False):
        return dataclasses.field(default_factory=default, metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def _number(name: str, v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(f"{name} must be {what}, got {v!r}")
    if not math.isfinite(v):
        raise InputError(f"{name} must be {what}, got {v}")
    return float(v)


def fraction(lo_closed: bool = False, hi_closed: bool = False) -> Check:
    """A number in (0, 1) (the bounds included when asked)."""
    lo, hi = "[" if lo_closed else "(", "]" if hi_closed else ")"
    span = f"{lo}0, 1{hi}"

    def check(name: str, v: Any) -> None:
        if v is None:
            return
        x = _number(name, v, f"in {span} (a number)")
        if not ((x >= 0 if lo_closed else x > 0) and (x <= 1 if hi_closed else x < 1)):
            raise InputError(f"{name} must be in {span}, got {v}")

    return check


def budget() -> Check:
    """A budget: a fraction of the original in (0, 1], or an absolute count > 1."""

    def check(name: str, v: Any) -> None:
        if v is None:
            return
        x = _number(name, v, "a fraction in (0, 1] or a count > 1")
        if x <= 0:
            raise InputError(f"{name} must be > 0 (a fraction ≤ 1 or an absolute count), got {v}")

    return check


def non_negative() -> Check:
    def check(name: str, v: Any) -> None:
        if v is not None and _number(name, v, "a number ≥ 0") < 0:
            raise InputError(f"{name} must be a number ≥ 0, got {v}")

    return check


def finite() -> Check:
    """Any finite number (NaN and infinities refused)."""

    def check(name: str, v: Any) -> None:
        if v is not None:
            _number(name, v, "a finite number")

    return check


def positive() -> Check:
    def check(name: str, v: Any) -> None:
        if v is not None and _number(name, v, "a number > 0") <= 0:
            raise InputError(f"{name} must be a number > 0, got {v}")

    return check


def integer(minimum: int = 1) -> Check:
    """An integer ≥ ``minimum`` (2.5 and True are refused)."""

    def check(name: str, v: Any) -> None:
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                raise InputError(f"{name} must be an integer, got {v!r} (write {int(v)})")
            raise InputError(f"{name} must be an integer ≥ {minimum}, got {v!r}")
        if v < minimum:
            raise InputError(f"{name} must be an integer ≥ {minimum}, got {v}")

    return check


def one_of(*choices: Any) -> Check:
    def check(name: str, v: Any) -> None:
        if v is not None and v not in choices:
            raise InputError(f"{name} must be one of {', '.join(map(str, choices))}, got {v!r}")

    check.choices = choices  # read by the CLI: the flag's choices
    return check


def between(lo: float, hi: float) -> Check:
    def check(name: str, v: Any) -> None:
        if v is not None and not lo <= _number(name, v, f"a number in [{lo:g}, {hi:g}]") <= hi:
            raise InputError(f"{name} must be a number in [{lo:g}, {hi:g}], got {v}")

    return check


@dataclasses.dataclass(frozen=True)
class OpConfig:
    """Base of every op's config: fields are validated when the config is made."""

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Any:
        return dataclasses.replace(self, **changes)


def validate(cfg: Any) -> None:
    for f in dataclasses.fields(cfg):
        check = f.metadata.get("check")
        if check is not None:
            check(f.name, getattr(cfg, f.name))


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: help line}`` of a config class."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if callable(v) and not isinstance(v, type):
        return getattr(v, "__qualname__", repr(v))
    return v
