"""Channel propagation rules, one per ATen op (or family of ops).

A rule receives the :class:`~netsculpt.graph.channels.Tracer` and the FX node, reads the layouts
of the node's tensor inputs (one layout per dim) and returns the layouts of its output(s),
coupling dims with ``t.unify``. Dims that are not channels (batch, sequence, spatial, anything a
rule cannot follow) get fresh protected atoms.

The rules live in one module per op family; importing this package registers all of them into
:data:`RULES`, keyed by the name :func:`op_name` gives a node.
"""

from __future__ import annotations

# importing a family module registers its rules
from netsculpt.graph.rules import (  # noqa: F401
    conv,
    elementwise,
    factories,
    indexing,
    linear,
    norms,
    reductions,
    rnn,
    shape,
    windows,
)
from netsculpt.graph.rules._base import ELEMENTWISE, RULES, aten_name_pattern, op_name, rule
from netsculpt.graph.rules.factories import FACTORIES

__all__ = ["ELEMENTWISE", "FACTORIES", "RULES", "aten_name_pattern", "op_name", "rule"]
