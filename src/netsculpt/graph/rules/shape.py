"""Shape ops: reshape / view, permute, expand, repeat, cat / stack, slice / split, select, pad,
and ops that move positions along a dim (roll, flip, sort, cumsum, diff)."""

from __future__ import annotations

import torch

from netsculpt.graph.rules._base import op_name, rule


@rule(
    "view",
    "reshape",
    "_unsafe_view",
    "flatten",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "view_as",
    "reshape_as",
    "_reshape_alias",
    "view_copy",
)
def reshape(t, node):
    x = node.args[0]
    return t.reshape(t.L(x), t.shape(x), t.shape(node), node)


@rule("permute", "transpose", "t", "swapaxes", "swapdims", "movedim", "numpy_T", "mT", "adjoint")
def permute(t, node):
    x = node.args[0]
    lx = list(t.L(x))
    n = len(lx)
    name = op_name(node)
    if name == "permute":
        perm = [d % n for d in node.args[1]]
    elif name in ("transpose", "swapaxes", "swapdims"):
        perm = list(range(n))
        a, b = node.args[1] % n, node.args[2] % n
        perm[a], perm[b] = perm[b], perm[a]
    elif name in ("t", "numpy_T", "mT", "adjoint"):
        perm = (
            list(range(n))[::-1]
            if name in ("t", "numpy_T")
            else list(range(n - 2))
            + [
                n - 1,
                n - 2,
            ]
        )
    else:  # movedim
        src, dst = node.args[1], node.args[2]
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        perm = [None] * n
        for s, d in zip(src, dst):
            perm[d % n] = s % n
        rest = iter(i for i in range(n) if i not in {s % n for s in src})
        perm = [p if p is not None else next(rest) for p in perm]
    return [lx[p] for p in perm]


@rule("expand", "broadcast_to")
def expand(t, node):
    x = node.args[0]
    lx, sx = t.L(x), t.shape(x)
    out_shape = t.shape(node)
    off = len(out_shape) - len(sx)
    out = []
    for od, s in enumerate(out_shape):
        d = od - off
        if d >= 0 and sx[d] == s:
            out.append(lx[d])
        else:
            # the target size is a constant in the code: it cannot follow a pruned dim
            out.append(t.fresh(s, "expanded to a fixed size"))
    return out


@rule("repeat", "tile", "repeat_interleave")
def repeat(t, node):
    x = node.args[0]
    t.protect_node(x, f"{op_name(node)} repeats channels")
    return t.opaque(node)


@rule("cat", "concat", "concatenate")
def cat(t, node):
    xs = [x for x in node.args[0] if isinstance(x, torch.fx.Node)]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    out_shape = t.shape(node)
    n = len(out_shape)
    dim %= n
    xs = [x for x in xs if len(t.shape(x)) == n and t.shape(x)[dim] > 0]
    out = []
    for d in range(n):
        if d == dim:
            lay = ()
            for x in xs:
                lay = tuple(lay) + tuple(t.L(x)[d])
            out.append(lay)
        else:
            first = t.L(xs[0])[d]
            for x in xs[1:]:
                t.unify(first, t.L(x)[d], node)
            out.append(first)
    return out


@rule("stack")
def stack(t, node):
    xs = [x for x in node.args[0] if isinstance(x, torch.fx.Node)]
    dim = node.args[1] if len(node.args) > 1 else 0
    out_shape = t.shape(node)
    dim %= len(out_shape)
    first = list(t.L(xs[0]))
    for x in xs[1:]:
        for a, b in zip(first, t.L(x)):
            t.unify(a, b, node)
    first.insert(dim, t.fresh(out_shape[dim], "stacked"))
    return first


@rule("slice")
def slice_(t, node):
    x = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else 0
    lx, sx = list(t.L(x)), t.shape(x)
    dim %= len(sx)
    start = node.args[2] if len(node.args) > 2 else 0
    end = node.args[3] if len(node.args) > 3 else sx[dim]
    step = node.args[4] if len(node.args) > 4 else 1
    start, end = _clamp_range(start, end, sx[dim])
    if step != 1:
        t.protect(lx[dim], "strided slice")
        lx[dim] = t.fresh(t.shape(node)[dim], "strided slice")
        return lx
    for bound in (start, end):
        t.record_bound(node, lx[dim], bound)
    lx[dim] = t.sub_layout(lx[dim], start, end, node)
    return lx


def _clamp_range(start, end, n):
    start = 0 if start is None else start
    end = n if end is None else end
    if start < 0:
        start += n
    if end < 0:
        end += n
    return max(0, min(start, n)), max(0, min(end, n))


@rule("split", "split_with_sizes", "chunk", "unsafe_split", "tensor_split", "unbind")
def split(t, node):
    x = node.args[0]
    lx, sx = list(t.L(x)), t.shape(x)
    name = op_name(node)
    vals = t.val(node)
    if name == "unbind":
        dim = node.args[1] if len(node.args) > 1 else 0
    else:
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    dim %= len(sx)
    if name == "unbind":  # every piece is one index of the dim, which goes
        t.protect(lx[dim], "unbind")
        return [lx[:dim] + lx[dim + 1 :] for _ in vals]
    outs, start = [], 0
    for v in vals:
        size = v.shape[dim]
        out = list(lx)
        out[dim] = t.sub_layout(lx[dim], start, start + size, node)
        start += size
        outs.append(out)
    sizes = {v.shape[dim] for v in vals}
    if name == "chunk" or (name in ("split", "unsafe_split") and len(sizes) == 1):
        # the cut points follow the input size at run time: pieces must shrink alike
        for out in outs[1:]:
            t.unify(outs[0][dim], out[dim], node)
    return outs


@rule("select")
def select(t, node):
    x, dim = node.args[0], node.args[1]
    lx = list(t.L(x))
    dim %= len(lx)
    t.protect(lx[dim], "select picks one index")
    return lx[:dim] + lx[dim + 1 :]


@rule(
    "pad",
    "constant_pad_nd",
    "reflection_pad1d",
    "reflection_pad2d",
    "replication_pad1d",
    "replication_pad2d",
    "reflection_pad3d",
    "replication_pad3d",
)
def pad(t, node):
    x = node.args[0]
    lx, sx = list(t.L(x)), t.shape(x)
    out_shape = t.shape(node)
    out = []
    for d, (a, b) in enumerate(zip(sx, out_shape)):
        if a == b and not _padded(node, d, len(sx)):
            out.append(lx[d])
        else:
            t.protect(lx[d], "padded dim")
            out.append(t.fresh(b, "padded dim"))
    return out


def _padded(node, d, n):
    p = node.args[1] if len(node.args) > 1 else []
    k = n - 1 - d  # pads are given from the last dim backwards, two per dim
    return len(p) > 2 * k and (p[2 * k] != 0 or p[2 * k + 1] != 0)


@rule("roll", "flip", "cumsum", "cumprod", "sort", "topk", "argsort", "kthvalue", "cummax")
def along_dim(t, node):
    x = node.args[0]
    lx = list(t.L(x))
    name = op_name(node)
    if name in ("roll", "flip"):
        dims = node.args[2] if name == "roll" and len(node.args) > 2 else node.args[1]
    else:
        dims = node.args[1] if len(node.args) > 1 else -1
        if name == "topk":
            dims = node.args[2] if len(node.args) > 2 else -1
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    out = list(lx)
    for d in dims:
        t.protect(lx[d], f"{name} mixes positions")
        out[d] = t.fresh(t.shape(x)[d] if name != "topk" else node.args[1], f"{name}")
    val = t.val(node)
    if isinstance(val, (tuple, list)):
        return [out for _ in val]
    return out


@rule("diff")
def diff(t, node):
    # differences along one dim (HF uses it on position_ids to detect packed sequences)
    x = node.args[0]
    lx, sx = list(t.L(x)), t.shape(x)
    dim = (node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", -1)) % len(sx)
    t.protect(lx[dim], "diff mixes positions")
    out = list(lx)
    out[dim] = t.fresh(t.shape(node)[dim], "diff")
    return out
