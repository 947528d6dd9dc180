"""Factories and non-tensor ops: new tensors, run-time assertions, getitem on tuple outputs."""

from __future__ import annotations

from netsculpt.graph.rules._base import rule

FACTORIES = [
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "randn",
    "rand",
    "randint",
    "randperm",
    "linspace",
    "logspace",
    "eye",
    "scalar_tensor",
    "new_zeros",
    "new_ones",
    "new_full",
    "new_empty",
    "tensor",
    "full_like_constant",
    "_local_scalar_dense",
    "item",
    "sym_size",
    "sym_numel",
    "sym_stride",
    "sym_constrain_range_for_size",
    "sym_constrain_range",
    "empty_strided",
    "new_empty_strided",
    "lift_fresh",
]


@rule(*FACTORIES)
def factory(t, node):
    # a tensor argument (x.new_zeros(...)) only lends dtype and device: it is not coupled
    v = t.val(node)
    if isinstance(v, (tuple, list)):
        return [t.opaque_value(x) for x in v]
    return t.opaque_value(v)


@rule("meshgrid")
def meshgrid(t, node):
    # coordinate grids (of arange constants, mostly): shape only, nothing to couple
    for a in node.args[0] if isinstance(node.args[0], (list, tuple)) else []:
        t.protect_node(a, "meshgrid coordinates")
    return [t.opaque_value(v) for v in t.val(node)]


@rule("_assert_tensor_metadata", "_assert_scalar", "_assert_async")
def assertion(t, node):
    # a run-time check on a tensor's dtype/device/shape: no output, couples nothing
    return None


@rule("getitem")
def getitem(t, node):
    src, i = node.args
    lays = t.layouts.get(src.name)
    if lays is None or not isinstance(lays, list) or i >= len(lays):
        return t.opaque(node)
    return lays[i]
