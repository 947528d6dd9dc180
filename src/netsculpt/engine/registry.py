"""The registry of ops: ``name -> OpSpec`` drives the verbs of ``netsculpt``, the recipe schema,
the CLI's option checks and the contract suite's rows.

An op module (``netsculpt.ops.<name>``) defines:

- ``CONFIGS``: its frozen config classes (the first is the default);
- ``run(session, config) -> Report``: make the plan, have the session apply it, report;
- optionally ``choose(overrides) -> config class`` (which config the keywords describe) and
  ``replay(session, plan) -> Plan`` (fill in what a saved plan leaves out, e.g. masks).

Adding an op is one file in ``ops/`` plus one line in :data:`OP_MODULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from netsculpt.core.errors import InputError

# name -> module defining the op (imported on first use: ``import netsculpt`` stays light)
OP_MODULES: dict[str, str] = {
    "prune": "netsculpt.ops.prune",
    "cut": "netsculpt.ops.cut",
    "merge": "netsculpt.ops.merge",
    "grow": "netsculpt.ops.grow",
    "analyze": "netsculpt.ops.analyze",
    "optimize": "netsculpt.optimize.op",  # above ops: a search that runs the other ops' planners
}


@dataclass(frozen=True)
class OpSpec:
    name: str
    module: ModuleType

    @property
    def configs(self) -> tuple[type, ...]:
        return tuple(self.module.CONFIGS)

    @property
    def summary(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0]

    def fields(self) -> dict[str, dataclasses.Field]:
        """Every settable field of every config of the op, by name."""
        out: dict[str, dataclasses.Field] = {}
        for cls in self.configs:
            for f in dataclasses.fields(cls):
                out.setdefault(f.name, f)
        return out

    def config(self, config: Any = None, overrides: dict[str, Any] | None = None) -> Any:
        """The frozen config for a call: ``config`` (an instance, or a dict) with ``overrides``
        applied; unknown keywords are one-line errors naming the op and its fields."""
        overrides = dict(overrides or {})
        if isinstance(config, dict):
            config, overrides = None, {**config, **overrides}
        if config is not None and not isinstance(config, self.configs):
            names = " or ".join(c.__name__ for c in self.configs)
            raise InputError(f"{self.name}: config= must be a {names}, got {type(config).__name__}")
        choose = getattr(self.module, "choose", None)
        if config is None:
            cls = choose(overrides) if choose else self.configs[0]
            overrides = {k: v for k, v in overrides.items() if k not in _CHOOSERS}
            base = None
        else:
            cls, base = type(config), config
        prepare = getattr(self.module, "prepare", None)
        if prepare is not None:
            overrides = prepare(cls, overrides)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in overrides if k not in names]
        if unknown:
            other = [
                c.__name__
                for c in self.configs
                if unknown[0] in {f.name for f in dataclasses.fields(c)}
            ]
            hint = f" ({unknown[0]} belongs to {other[0]})" if other else ""
            raise InputError(
                f"{self.name}: unknown option {unknown[0]!r}{hint}; options are "
                f"{', '.join(sorted(names))}"
            )
        if base is None:
            return cls(**overrides)
        return dataclasses.replace(base, **overrides)


# keywords that choose a config class and are not fields themselves
_CHOOSERS = {"structured"}


def get(name: str) -> OpSpec:
    if name not in OP_MODULES:
        raise InputError(f"unknown op {name!r}: one of {', '.join(OP_MODULES)}")
    return OpSpec(name, importlib.import_module(OP_MODULES[name]))


def names() -> list[str]:
    return list(OP_MODULES)
