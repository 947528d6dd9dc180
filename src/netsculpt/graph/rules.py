"""Channel propagation rules, one per ATen op (or family of ops).

A rule receives the :class:`~netsculpt.graph.channels.Tracer` and the FX node, reads the layouts
of the node's tensor inputs (one layout per dim) and returns the layouts of its output(s),
coupling dims with ``t.unify``. Dims that are not channels (batch, sequence, spatial, anything a
rule cannot follow) get fresh protected atoms.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

import torch

RULES: dict[str, Callable] = {}

ELEMENTWISE = [
    "add",
    "sub",
    "mul",
    "div",
    "true_divide",
    "floor_divide",
    "remainder",
    "fmod",
    "pow",
    "rsub",
    "neg",
    "abs",
    "sign",
    "reciprocal",
    "relu",
    "relu6",
    "gelu",
    "sigmoid",
    "silu",
    "tanh",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "mish",
    "elu",
    "selu",
    "celu",
    "leaky_relu",
    "softplus",
    "logsigmoid",
    "prelu",
    "glu_",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "sqrt",
    "rsqrt",
    "sin",
    "cos",
    "erf",
    "erfinv",
    "clamp",
    "clamp_min",
    "clamp_max",
    "clip",
    "threshold",
    "dropout",
    "alpha_dropout",
    "feature_alpha_dropout",
    "bernoulli",
    "clone",
    "contiguous",
    "alias",
    "detach",
    "lift_fresh_copy",
    "_to_copy",
    "to",
    "type_as",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "logical_and",
    "logical_or",
    "logical_not",
    "logical_xor",
    "bitwise_and",
    "bitwise_or",
    "bitwise_not",
    "bitwise_xor",
    "where",
    "masked_fill",
    "maximum",
    "minimum",
    "fill",
    "zero",
    "copy",
    "softmax",
    "log_softmax",
    "_softmax",
    "_log_softmax",
    "square",
    "round",
    "floor",
    "ceil",
    "trunc",
    "frac",
    "isnan",
    "isinf",
    "nan_to_num",
    "zeros_like",
    "ones_like",
    "full_like",
    "empty_like",
    "rand_like",
    "randn_like",
    "lerp",
    "addcmul",
    "addcdiv",
    "tril",
    "triu",
    "native_dropout_backward",
    "expand_as",
    "__and__",
    "__or__",
    "__xor__",
    "__invert__",
]


def rule(*names: str):
    def deco(fn):
        for n in names:
            RULES[n] = fn
        return fn

    return deco


def op_name(node: torch.fx.Node) -> str:
    """'conv2d' for aten.conv2d.default, 'add' for aten.add_.Tensor, 'getitem' for getitem."""
    target = node.target
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "_overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))
    if name.endswith("_") and not name.startswith("_") and name[:-1] in _INPLACE_OK:
        name = name[:-1]
    return name


_INPLACE_OK = set(ELEMENTWISE) | {"index_put", "unsqueeze", "squeeze", "transpose", "t"}


def _each_output(t, node, shaped):
    """Apply ``shaped`` to the node's value, or to each value of a tuple output."""
    val = t.val(node)
    if isinstance(val, (tuple, list)):
        return [shaped(v) for v in val]
    return shaped(val)


def _first_output(t, node, out):
    """``out`` for the (first) output; the extra outputs of ops like native_layer_norm are
    statistics nothing is coupled through."""
    val = t.val(node)
    if isinstance(val, (tuple, list)):
        return [out] + [t.opaque_value(v) for v in val[1:]]
    return out


# -- elementwise -----------------------------------------------------------------------------
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


# -- layers ------------------------------------------------------------------------------------
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


@rule(
    "conv1d",
    "conv2d",
    "conv3d",
    "convolution",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)
def conv(t, node):
    name = op_name(node)
    x, w = node.args[0], node.args[1]
    b = node.args[2] if len(node.args) > 2 else None
    if name == "convolution":
        transposed, groups = bool(node.args[6]), node.args[8]
    else:
        transposed = name.startswith("conv_transpose")
        gi = 6 if transposed else 6
        groups = node.args[gi] if len(node.args) > gi else 1
    lx, lw = t.L(x), t.L(w)
    out_shape = t.shape(node)
    cin, cout = t.shape(x)[1], out_shape[1]
    if transposed:  # weight is (Cin, Cout/groups, k...)
        t.role(w, 0, "in")
        t.role(w, 1, "out")
        t.unify(lx[1], lw[0], node)
        g_in, _ = t.factor(lx[1], cin // groups, node) if groups > 1 else ((), ())
        out_c = t.product(g_in, lw[1]) if groups > 1 else lw[1]
    else:  # weight is (Cout, Cin/groups, k...)
        t.role(w, 0, "out")
        t.role(w, 1, "in")
        out_c = lw[0]
        if groups == 1:
            t.unify(lx[1], lw[1], node)
        else:
            # channels are laid out as (groups, per-group); depthwise is per-group == 1
            g_in, per_in = t.factor(lx[1], cin // groups, node)
            g_out, per_out = t.factor(lw[0], cout // groups, node)
            t.unify(g_in, g_out, node)
            if cin // groups > 1:
                t.unify(per_in, lw[1], node)
            if cin // groups > 1:
                # a grouped conv keeps its group count and narrows every group alike;
                # depthwise convs (one channel per group) lose whole groups instead
                t.protect(g_in, "group count of a grouped conv")
    t.record_conv(node, lx[1], g_in if groups > 1 else None)
    if b is not None:
        t.role(b, 0, "out")
        t.unify(t.L(b)[0], out_c, node)
    out = [lx[0], out_c] + [t.fresh(s, "spatial") for s in out_shape[2:]]
    kernel = _prod(t.shape(w)[2:])
    t.macs(node, numel_of=x if transposed else node, factors=[(w, 1)], const=kernel)
    return out


def _prod(xs) -> int:
    p = 1
    for s in xs:
        p *= int(s)
    return p


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


@rule("embedding")
def embedding(t, node):
    w, idx = node.args[0], node.args[1]
    lw = t.L(w)
    t.role(w, 1, "out")
    t.protect(lw[0], "embedding rows (vocabulary)")
    return list(t.L(idx)) + [lw[1]]


# -- matrix products ---------------------------------------------------------------------------
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


# -- reductions and pooling --------------------------------------------------------------------
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


@rule(
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "max_pool1d_with_indices",
    "max_pool2d_with_indices",
    "max_pool3d_with_indices",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "upsample_nearest1d",
    "upsample_nearest2d",
    "upsample_bilinear2d",
    "upsample_bicubic2d",
    "upsample_linear1d",
    "_upsample_nearest_exact2d",
    "_adaptive_avg_pool2d",
    "lp_pool2d",
    "interpolate",
)
def pool(t, node):
    x = node.args[0]
    lx = t.L(x)
    nd = len(t.shape(x))
    # leading (N, C) or (C,) dims keep their channels; the trailing spatial dims are new
    spatial = {"1d": 1, "2d": 2, "3d": 3}
    k = next((v for s, v in spatial.items() if s in op_name(node)), 2)

    def shaped(val):
        shp = tuple(val.shape)
        return list(lx[: nd - k]) + [t.fresh(s, "spatial") for s in shp[nd - k :]]

    return _each_output(t, node, shaped)


# -- shape ops ---------------------------------------------------------------------------------
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
    outs, start = [], 0
    for v in vals:
        if name == "unbind":
            t.protect(lx[dim], "unbind")
            outs.append(lx[:dim] + lx[dim + 1 :])
            continue
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


@rule("channel_shuffle", "native_channel_shuffle")
def channel_shuffle(t, node):
    x, groups = node.args[0], node.args[1]
    lx = list(t.L(x))
    c = t.shape(x)[1]
    outer, inner = t.factor(lx[1], c // groups, node)
    t.protect(outer, "channel_shuffle groups")
    lx[1] = t.product(inner, outer)
    return lx


@rule("pixel_shuffle", "pixel_unshuffle")
def pixel_shuffle(t, node):
    t.protect_node(node.args[0], "pixel shuffle moves channels into space")
    return t.opaque(node)


# -- factories and non-tensor ops --------------------------------------------------------------
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


def aten_name_pattern() -> re.Pattern:
    return re.compile(r"aten\.(\w+)")
