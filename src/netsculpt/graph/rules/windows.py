"""Sliding windows: ``Tensor.unfold`` (windows along one dim), ``im2col`` / ``col2im``
(``nn.Unfold`` / ``nn.Fold``: channel ``c`` becomes the block ``c·k·k … c·k·k + k·k - 1``)."""

from __future__ import annotations

from netsculpt.graph.rules._base import _prod, rule


@rule("unfold")
def unfold(t, node):
    # x.unfold(dim, size, step): dim becomes the window count, a new last dim the window
    x, dim = node.args[0], node.args[1]
    lx, out_shape = list(t.L(x)), t.shape(node)
    dim %= max(len(lx), 1)
    if lx:
        t.protect(lx[dim], "sliding windows (Tensor.unfold)")
        lx[dim] = t.fresh(out_shape[dim], "window count")
    return lx + [t.fresh(out_shape[-1], "window positions")]


def _batched(t, x) -> bool:
    return len(t.shape(x)) == 4


@rule("im2col")
def im2col(t, node):
    # (N, C, H, W) -> (N, C·k·k, L), kernel positions inner
    x, kernel = node.args[0], node.args[1]
    lx, kk = t.L(x), _prod(kernel)
    lead = [lx[0]] if _batched(t, x) else []
    c = lx[1] if lead else lx[0]
    blocks = t.product(c, t.fresh(kk, "kernel positions of nn.Unfold"))
    return lead + [blocks, t.fresh(t.shape(node)[-1], "sliding positions")]


@rule("col2im")
def col2im(t, node):
    # (N, C·k·k, L) -> (N, C, H, W): each channel's k·k block is summed back into place
    x, kernel = node.args[0], node.args[2]
    lx, kk = t.L(x), _prod(kernel)
    batched = len(t.shape(x)) == 3
    lead = [lx[0]] if batched else []
    c, inner = t.factor(lx[1] if batched else lx[0], kk, node)
    t.protect(inner, "kernel positions of nn.Fold")
    spatial = [t.fresh(s, "spatial") for s in t.shape(node)[-2:]]
    return lead + [c] + spatial
