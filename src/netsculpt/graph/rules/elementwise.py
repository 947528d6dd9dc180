"""Elementwise and broadcast ops: every operand dim that is not broadcast is the output dim."""

from __future__ import annotations

from netsculpt.graph.rules._base import ELEMENTWISE, rule


@rule(*ELEMENTWISE)
def elementwise(t, node):
    out_shape = t.shape(node)
    if out_shape is None:
        return t.opaque(node)
    out = [None] * len(out_shape)
    for arg in t.tensor_args(node):
        shp = t.shape(arg)
        lays = t.L(arg)
        off = len(out_shape) - len(shp)
        if off < 0:
            return t.opaque(node)
        for d, size in enumerate(shp):
            od = d + off
            if size != out_shape[od] or size == 1:
                continue
            if out[od] is None:
                out[od] = lays[d]
            else:
                t.unify(out[od], lays[d], node)
    return [lay if lay is not None else t.fresh(s, "broadcast") for lay, s in zip(out, out_shape)]
