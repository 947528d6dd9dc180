"""Data-dependent indexing: index, gather, index_select, index_put / scatter, embedding,
one_hot."""

from __future__ import annotations

import torch

from netsculpt.graph.rules._base import op_name, rule


@rule("index", "_unsafe_index")
def index(t, node):
    x, indices = node.args[0], node.args[1]
    lx = list(t.L(x))
    used = [i for i, ix in enumerate(indices) if ix is not None]
    for i in used:
        t.protect(lx[i], "indexed by data")
    for ix in indices:
        if isinstance(ix, torch.fx.Node):
            t.protect_node(ix, "index tensor")
    out_shape = t.shape(node)
    if not used:
        return lx
    first, last = used[0], used[-1]
    n_idx = len(out_shape) - (len(lx) - len(used))
    if used == list(range(first, last + 1)):
        return (
            lx[:first]
            + [t.fresh(s, "indexed") for s in out_shape[first : first + n_idx]]
            + lx[last + 1 :]
        )
    rest = [lay for i, lay in enumerate(lx) if i not in used]
    return [t.fresh(s, "indexed") for s in out_shape[:n_idx]] + rest


@rule("gather", "take_along_dim")
def gather(t, node):
    x, dim, idx = node.args[0], node.args[1], node.args[2]
    lx, li = list(t.L(x)), list(t.L(idx))
    dim %= len(lx)
    t.protect(lx[dim], "gathered by data")
    out = []
    for d, (s_out, s_x) in enumerate(zip(t.shape(node), t.shape(x))):
        if d != dim and s_out == s_x:
            t.unify(lx[d], li[d], node)
            out.append(lx[d])
        else:
            out.append(li[d])
    return out


@rule("index_select")
def index_select(t, node):
    x, dim = node.args[0], node.args[1]
    lx = list(t.L(x))
    dim %= len(lx)
    t.protect(lx[dim], "index_select by data")
    lx[dim] = t.fresh(t.shape(node)[dim], "indexed")
    return lx


@rule(
    "index_put",
    "index_copy",
    "index_fill",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "masked_scatter",
    "slice_scatter",
    "select_scatter",
)
def index_put(t, node):
    x = node.args[0]
    for a in node.args[1:]:
        for n in a if isinstance(a, (list, tuple)) else [a]:
            if isinstance(n, torch.fx.Node):
                t.protect_node(n, f"{op_name(node)} operand")
    t.protect_node(x, f"{op_name(node)} target")
    return list(t.L(x))


@rule("embedding")
def embedding(t, node):
    w, idx = node.args[0], node.args[1]
    lw = t.L(w)
    t.role(w, 1, "out")
    t.protect(lw[0], "embedding rows (vocabulary)")
    return list(t.L(idx)) + [lw[1]]


@rule("one_hot")
def one_hot(t, node):
    # one_hot(indices, num_classes): a new last dim of classes, indexed by data
    idx = node.args[0]
    t.protect_node(idx, "one_hot indices")
    return list(t.L(idx)) + [t.fresh(t.shape(node)[-1], "one_hot classes")]
