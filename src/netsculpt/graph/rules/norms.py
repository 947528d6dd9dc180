"""Batch, instance, layer, RMS and group norms: the affine parameters follow the channels."""

from __future__ import annotations

import torch

from netsculpt.graph.rules._base import _first_output, op_name, rule


@rule(
    "batch_norm",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit",
    "native_batch_norm",
    "instance_norm",
)
def batch_norm(t, node):
    x = node.args[0]
    lx = t.L(x)
    for p in node.args[1:5]:
        if isinstance(p, torch.fx.Node):
            t.role(p, 0, "norm")
            t.unify(t.L(p)[0], lx[1], node)
    out = list(lx)
    return _first_output(t, node, out)


@rule("layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm")
def layer_norm(t, node):
    x, shape = node.args[0], node.args[1]
    lx = t.L(x)
    k = len(shape)
    t.record_attr(node, "normalized_shape", [lx[len(lx) - k + i] for i in range(k)])
    for p in node.args[2:4]:
        if isinstance(p, torch.fx.Node):
            t.role(p, 0, "norm")
            lp = t.L(p)
            for i in range(k):
                t.unify(lp[i], lx[len(lx) - k + i], node)
    out = list(lx)
    return _first_output(t, node, out)


@rule("group_norm", "native_group_norm")
def group_norm(t, node):
    x = node.args[0]
    lx = t.L(x)
    if op_name(node) == "group_norm":
        groups, params = node.args[1], node.args[2:4]
    else:
        groups, params = node.args[6], node.args[1:3]
    c = t.shape(x)[1]
    outer, inner = t.factor(lx[1], c // groups, node)
    t.protect(outer, "GroupNorm groups (num_groups is fixed)")
    for p in params:
        if isinstance(p, torch.fx.Node):
            t.role(p, 0, "norm")
            t.unify(t.L(p)[0], lx[1], node)
    out = list(lx)
    return _first_output(t, node, out)
