"""netsculpt: change the structure of trained neural networks and get a working model back.

The four verbs edit the model in place and return a :class:`Report`::

    import netsculpt as ns
    report = ns.prune(model, example_inputs, amount=0.5, importance="l2")
    ns.save(model, "out/")

Imports are lazy so that ``import netsculpt`` stays light (no torchvision, transformers,
matplotlib or onnx until a feature needs them).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# verbs made from the op registry (netsculpt.engine.registry): name -> op name
_VERBS = {"prune", "cut", "grow", "merge", "analyze", "optimize"}
# public name -> module that defines it
_EXPORTS = {
    "apply": "netsculpt.engine.verbs",
    "Plan": "netsculpt.core.plan",
    "Action": "netsculpt.core.plan",
    "merge_models": "netsculpt.ops.merge_models",
    "heal": "netsculpt.heal",
    "evaluate": "netsculpt.measure.evaluate",
    "measure": "netsculpt.measure",
    "run": "netsculpt.recipes",
    "save": "netsculpt.io",
    "load": "netsculpt.io",
    "export": "netsculpt.io",
    "make_permanent": "netsculpt.surgery.masks",
    "capture": "netsculpt.graph",
    "build_graph": "netsculpt.graph",
    "Report": "netsculpt.report",
    "NetsculptError": "netsculpt.core.errors",
}

__all__ = sorted(set(_EXPORTS) | _VERBS)


def __getattr__(name: str) -> Any:
    if name in _VERBS:
        from netsculpt.engine.verbs import verb

        fn = verb(name)
        globals()[name] = fn
        return fn
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'netsculpt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
