"""The one selection hook: what an op may not touch (``ignore=``), in every op alike.

``ignore`` accepts module names, glob patterns (fnmatch), module objects, a mix of these, or a
``filter_fn(module, name) -> bool`` that returns True for the modules to leave alone (as in
torchao's ``quantize_``). :func:`ignored_names` turns any of these into module names and
patterns; :func:`is_ignored` answers for one module path.

>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
>>> ignored_names(m, lambda mod, name: isinstance(mod, nn.ReLU))
['1']
>>> is_ignored("layer1.0.conv1", ["layer1*"])
True
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from netsculpt.core.errors import InputError

Ignore = str | nn.Module | Iterable[Any] | Callable[[nn.Module, str], bool] | None


def ignored_names(model: nn.Module, ignore: Ignore, where: str = "ignore") -> list[str]:
    """Module names / patterns for ``ignore`` (see the module docstring); one-line errors."""
    if ignore is None:
        return []
    names = {id(m): n for n, m in model.named_modules()}
    if callable(ignore) and not isinstance(ignore, nn.Module):
        try:
            return [n for n, m in model.named_modules() if n and ignore(m, n)]
        except Exception as e:
            msg = f"{where}: the filter function failed ({type(e).__name__}: {e})"
            raise InputError(msg) from None
    items = [ignore] if isinstance(ignore, (str, nn.Module)) else list(ignore)
    out: list[str] = []
    for item in items:
        if isinstance(item, nn.Module):
            if id(item) not in names:
                raise InputError(f"{where} lists a module that is not part of this model")
            out.append(names[id(item)])
        elif isinstance(item, str):
            out.append(item)
        else:
            raise InputError(
                f"{where} takes module names, patterns, modules or a filter_fn(module, name), "
                f"got {type(item).__name__}"
            )
    return out


def is_ignored(path: str, patterns: Iterable[str]) -> bool:
    """True when ``path`` is, is inside, or matches one of ``patterns``."""
    return any(path == p or path.startswith(p + ".") or fnmatch.fnmatch(path, p) for p in patterns)
