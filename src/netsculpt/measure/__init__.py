"""Measure a model: parameters, MACs, CPU latency, saved size.

>>> import torch
>>> from netsculpt.measure import measure
>>> measure(torch.nn.Linear(4, 3), torch.zeros(1, 4), latency=False).macs
12

``netsculpt.measure`` is also callable (``ns.measure(model, x)``), because importing this package
makes it the ``measure`` attribute of ``netsculpt`` and hides the function of the same name.
``evaluate`` lives in ``netsculpt.measure.evaluate`` and is deliberately not imported here.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from netsculpt.measure.latency import latency_ms
from netsculpt.measure.macs import count_macs, macs_from_graph, macs_from_program
from netsculpt.measure.params import count_params, saved_size_bytes
from netsculpt.measure.summary import Measurement, measure

__all__ = [
    "Measurement",
    "count_macs",
    "count_params",
    "latency_ms",
    "macs_from_graph",
    "macs_from_program",
    "measure",
    "saved_size_bytes",
]


class _CallableModule(types.ModuleType):
    """Lets ``netsculpt.measure(model, x)`` work once the submodule shadows the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Measurement:
        return measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
