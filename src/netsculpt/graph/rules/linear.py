"""Linear layers and matrix products: linear, matmul / mm / bmm, addmm, einsum, attention."""

from __future__ import annotations

import torch

from netsculpt.graph.rules._base import rule


@rule("linear")
def linear(t, node):
    x, w = node.args[0], node.args[1]
    b = node.args[2] if len(node.args) > 2 else None
    lx, lw = t.L(x), t.L(w)
    t.role(w, 0, "out")
    t.role(w, 1, "in")
    t.unify(lx[-1], lw[1], node)
    out = list(lx[:-1]) + [lw[0]]
    if b is not None:
        t.role(b, 0, "out")
        t.unify(t.L(b)[0], lw[0], node)
    t.macs(node, numel_of=node, factors=[(w, 1)])
    return out


def _matmul(t, node, a, b, out_shape=None):
    la, lb = list(t.L(a)), list(t.L(b))
    sa, sb = t.shape(a), t.shape(b)
    if len(sa) == 1:
        la, sa = [t.fresh(1, "vector")] + la, (1,) + tuple(sa)
    if len(sb) == 1:
        lb, sb = lb + [t.fresh(1, "vector")], tuple(sb) + (1,)
    t.unify(la[-1], lb[-2], node)
    if t.is_param(a):
        t.role(a, len(sa) - 1, "in")
        t.role(a, len(sa) - 2, "out")
    if t.is_param(b):
        t.role(b, len(sb) - 2, "in")
        t.role(b, len(sb) - 1, "out")
    out_shape = t.shape(node)
    nb = len(out_shape) - 2
    batch = []
    for i in range(nb):
        da, db = i - nb + len(sa) - 2, i - nb + len(sb) - 2
        size = out_shape[i]
        lay = None
        for lays, shp, d in ((la, sa, da), (lb, sb, db)):
            if d >= 0 and shp[d] == size and size != 1:
                if lay is None:
                    lay = lays[d]
                else:
                    t.unify(lay, lays[d], node)
        if lay is None:
            lay = t.fresh(size, "broadcast")
        t.flag(lay, "mmbatch")
        batch.append(lay)
    rows = [la[-2]] if len(t.shape(a)) > 1 else []
    cols = [lb[-1]] if len(t.shape(b)) > 1 else []
    t.macs(node, numel_of=node, factors=[(a, len(t.shape(a)) - 1)])
    return batch + rows + cols


@rule("matmul", "mm", "bmm")
def matmul(t, node):
    return _matmul(t, node, node.args[0], node.args[1])


@rule("addmm", "baddbmm", "addbmm")
def addmm(t, node):
    out = _matmul(t, node, node.args[1], node.args[2])
    bias = node.args[0]
    if isinstance(bias, torch.fx.Node):
        shp = t.shape(bias)
        lb = t.L(bias)
        if t.is_param(bias):
            t.role(bias, len(shp) - 1, "out")
        off = len(out) - len(shp)
        for d, s in enumerate(shp):
            if s != 1:
                t.unify(lb[d], out[d + off], node)
    return out


@rule("einsum")
def einsum(t, node):
    eq, operands = node.args[0], node.args[1]
    lhs, rhs = eq.replace(" ", "").split("->")
    letters: dict[str, object] = {}
    for spec, x in zip(lhs.split(","), operands):
        if "." in spec:
            return t.opaque(node)
        for ch, lay, size in zip(spec, t.L(x), t.shape(x)):
            if size == 1:
                continue
            if ch in letters:
                t.unify(letters[ch], lay, node)
            else:
                letters[ch] = lay
    return [letters.get(ch) or t.fresh(s, "einsum") for ch, s in zip(rhs, t.shape(node))]


@rule(
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_flash_attention",
)
def sdpa(t, node):
    q, k, v = node.args[:3]
    lq, lk, lv = t.L(q), t.L(k), t.L(v)
    sq, sk, sv = t.shape(q), t.shape(k), t.shape(v)
    nb = len(sq) - 2
    for i in range(nb):
        for lay, shp in ((lk, sk), (lv, sv)):
            if shp[i] == sq[i] and sq[i] != 1:
                t.unify(lq[i], lay[i], node)
        if nb >= 1 and i == nb - 1:
            t.flag(lq[i], "head")
    t.unify(lk[-2], lv[-2], node)
    t.unify(lq[-1], lk[-1], node)
    # the softmax scale is 1/sqrt(head_dim): head_dim is not pruned through attention
    t.protect(lq[-1], "attention head_dim (sets the softmax scale)")
    t.protect(lv[-1], "attention head_dim")
    mask = node.kwargs.get("attn_mask", node.args[3] if len(node.args) > 3 else None)
    if isinstance(mask, torch.fx.Node):
        t.protect_node(mask, "attention mask")
    out = list(lq[:-1]) + [lv[-1]]
    t.macs(node, numel_of=q, factors=[(k, len(sk) - 2)])
    t.macs(node, numel_of=node, factors=[(k, len(sk) - 2)])
    if isinstance(t.val(node), (tuple, list)):
        return [out] + [t.opaque_value(x) for x in t.val(node)[1:]]
    return out
