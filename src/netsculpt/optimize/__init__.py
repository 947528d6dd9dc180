"""optimize: reach a latency / MACs / params budget by a NetAdapt-style search over width
reductions, block removals and exact folds (docs/optimize.md).

``ns.optimize(model, example_inputs, data=..., target={"latency": 0.5}, max_drop=0.01)``; the
op registry's entry is :mod:`netsculpt.optimize.op`. This package sits above ``engine`` and
``heal``: it runs the other ops' planners through one session and heals between steps.

Importing this package makes it the ``optimize`` attribute of ``netsculpt``, hiding the verb of
the same name; the module is therefore callable and ``ns.optimize(...)`` works either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "optimize":
        from netsculpt.engine.verbs import verb

        fn = verb("optimize")
        globals()["optimize"] = fn
        return fn
    raise AttributeError(f"module 'netsculpt.optimize' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from netsculpt.engine.verbs import call

        return call("optimize", *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
