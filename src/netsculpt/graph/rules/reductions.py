"""Reductions over dims (mean, sum, max, norm, ...): the kept dims keep their layouts."""

from __future__ import annotations

from netsculpt.graph.rules._base import _each_output, op_name, rule


@rule(
    "mean",
    "sum",
    "amax",
    "amin",
    "var",
    "std",
    "prod",
    "linalg_vector_norm",
    "norm",
    "logsumexp",
    "max",
    "min",
    "argmax",
    "argmin",
    "any",
    "all",
    "var_mean",
    "std_mean",
    "count_nonzero",
    "nansum",
    "nanmean",
)
def reduction(t, node):
    x = node.args[0]
    lx, sx = t.L(x), t.shape(x)
    dims = None
    for a in list(node.args[1:]) + [node.kwargs.get("dim")]:
        if isinstance(a, int) and not isinstance(a, bool):
            dims = [a]
            break
        if isinstance(a, (list, tuple)) and all(isinstance(i, int) for i in a):
            dims = list(a)
            break
    if op_name(node) in ("linalg_vector_norm", "norm") and len(node.args) > 2:
        d = node.args[2]
        dims = [d] if isinstance(d, int) else (list(d) if d is not None else None)
    if dims is None or dims == []:
        dims = list(range(len(sx)))
    dims = {d % len(sx) for d in dims} if sx else set()
    keep = [lx[d] for d in range(len(sx)) if d not in dims]

    def shaped(val):
        if val is None or not hasattr(val, "shape"):
            return None
        if len(val.shape) == len(keep):
            return list(keep)
        if len(val.shape) == len(sx):  # keepdim
            return [lx[d] if d not in dims else t.fresh(1, "reduced") for d in range(len(sx))]
        return t.opaque_value(val)

    return _each_output(t, node, shaped)
