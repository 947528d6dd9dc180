"""Heal a model after surgery: fine-tune on the task, distil from the original, or both.

Example::

    import copy, netsculpt as ns
    original = copy.deepcopy(model)
    ns.prune(model, x, amount=0.5)
    report = ns.heal(model, train_loader, teacher=original, epochs=3)

Importing this package makes it the ``heal`` attribute of ``netsculpt``, hiding the function
of the same name; the module is therefore callable and ``ns.heal(...)`` works either way.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from netsculpt.heal.loop import heal

__all__ = ["heal"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return heal(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
